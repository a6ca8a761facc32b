"""The delivery worker: notices to apps' webhooks, signed, at least once, in order per
citizen.

Each lane loops: claim a batch (queue.claim), log in the audit log that each app is being
shown its citizen's notice, send the batch concurrently (one request per delivery, at most
`app_concurrency` in flight per app, keep-alive connections), and settle the outcomes in
one statement. Lanes sleep until a publish or a redrive wakes them (NOTIFY), the next
retry is due, or a second passes. The webhook body is
`{"type": "notice.received", "timestamp": …, "data": {…}}`; a 2xx answer is delivered,
anything else (status, timeout, refused connection) is a failed attempt with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson

from auth import audit
from hub.core import db
from hub.core.settings import Settings
from resolvers.notices import queue, signing, webhooks
from resolvers.notices.settings import NoticesSettings
from resolvers.notices.store import CHANNEL

log = logging.getLogger(__name__)

CRASHED = 70  # exit code of a crash drill
POLL_SECONDS = 1.0
NO_WEBHOOK = "the app has no webhook registered"
EXPIRED = "expired before it could be delivered"
EVENT_TYPE = "notice.received"


def body_of(delivery: queue.Claimed) -> bytes:
    """The webhook body of one delivery (the same on every attempt)."""
    return orjson.dumps(
        {
            "type": EVENT_TYPE,
            "timestamp": delivery.accepted_at.isoformat(),
            "data": {
                "eventId": str(delivery.event_id),
                "noticeId": str(delivery.notice_id),
                "citizen": str(delivery.user_id),
                "noticeType": delivery.type_code,
                "agency": delivery.agency,
                "urgent": delivery.urgent,
                "title": {"ko": delivery.title_ko, "en": delivery.title_en},
                "body": {"ko": delivery.body_ko, "en": delivery.body_en},
                "paymentUrl": delivery.payment_url,
                "payment": delivery.payment,
                "expiresAt": delivery.expires_at.isoformat() if delivery.expires_at else None,
                "params": delivery.params,
                "acceptedAt": delivery.accepted_at.isoformat(),
            },
        }
    )


class Deliverer:
    """Sends due deliveries until told to stop; several may run on one database."""

    def __init__(
        self, pool: asyncpg.Pool, section: NoticesSettings, http: httpx.AsyncClient
    ) -> None:
        self.pool = pool
        self.section = section
        self.http = http
        self.retry = queue.Retry(
            first=timedelta(seconds=section.first_retry_seconds),
            longest=timedelta(seconds=section.longest_retry_seconds),
            window=timedelta(hours=section.retry_hours),
        )
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._wake = asyncio.Event()

    async def round(self) -> int:
        """Claim, send and settle one batch; how many deliveries it claimed."""
        async with self.pool.acquire() as conn:
            claimed, withdrawn = await queue.claim(
                conn, self.section.batch, timedelta(seconds=self.section.lease_seconds)
            )
            if not claimed:
                return withdrawn
            self._crash_at("after_claim")
            hooks = await webhooks.of_apps(conn, sorted({d.client_id for d in claimed}))
        await _audited(self.pool, [d for d in claimed if d.client_id in hooks])
        now = datetime.now(UTC)
        outcomes = await asyncio.gather(
            *(self._send(d, hooks.get(d.client_id), now) for d in claimed)
        )
        self._crash_at("after_send")
        async with self.pool.acquire() as conn:
            await queue.settle(conn, outcomes, self.retry)
        return len(claimed) + withdrawn

    async def _send(
        self, delivery: queue.Claimed, hook: webhooks.Webhook | None, now: datetime
    ) -> queue.Outcome:
        if delivery.expires_at is not None and delivery.expires_at <= now:
            return queue.Outcome(delivery.delivery_id, False, EXPIRED, final=True)
        if hook is None:
            return queue.Outcome(delivery.delivery_id, False, NO_WEBHOOK)
        body = body_of(delivery)
        headers = signing.headers(hook.valid_secrets(now), str(delivery.event_id), body)
        limit = self._limits.setdefault(
            delivery.client_id, asyncio.Semaphore(self.section.app_concurrency)
        )
        async with limit:
            try:
                response = await self.http.post(hook.url, content=body, headers=headers)
            except httpx.TimeoutException:
                return queue.Outcome(delivery.delivery_id, False, "timed out")
            except httpx.HTTPError as exc:
                return queue.Outcome(delivery.delivery_id, False, f"{type(exc).__name__}: {exc}")
        if response.is_success:
            return queue.Outcome(delivery.delivery_id, True)
        return queue.Outcome(delivery.delivery_id, False, f"HTTP {response.status_code}")

    def _crash_at(self, point: str) -> None:
        if self.section.crash_point == point:
            log.error("notices.crash_drill point=%s", point)
            os._exit(CRASHED)

    async def run(self, stop: asyncio.Event, database_url: str, settings: Settings) -> None:
        """Deliver until `stop`, in `lanes` concurrent rounds, woken by NOTIFY."""
        listener = _Listener(database_url, settings, self._wake)
        try:
            await asyncio.gather(
                listener.run(stop), *(self._lane(stop) for _ in range(self.section.lanes))
            )
        finally:
            await listener.close()

    async def _lane(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.round() >= self.section.batch
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("notices.delivery_round_failed error=%r", exc)
                busy = False
            if not busy:
                await _first_of(POLL_SECONDS, stop, self._wake)
                self._wake.clear()


async def _audited(pool: asyncpg.Pool, deliveries: Sequence[queue.Claimed]) -> None:
    """Each app is shown its citizen's notice: logged before the request leaves."""
    entries = [
        audit.AuditEntry(
            client_id=d.client_id,
            user_id=str(d.user_id),
            client_ip=None,
            action="notice.deliver",
            subject_type="notice",
            subject=str(d.notice_id),
            fields=("title", "body", "params"),
            operation="webhook",
            request_id=str(d.event_id),
        )
        for d in deliveries
    ]
    if entries:
        await audit.audit_loader(pool).load_many(entries)


class _Listener:
    """LISTEN for new deliveries on a connection of its own (opened again if dropped)."""

    def __init__(self, database_url: str, settings: Settings, wake: asyncio.Event) -> None:
        self.database_url = database_url
        self.settings = settings
        self.wake = wake
        self.conn: asyncpg.Connection | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.conn is None or self.conn.is_closed():
                try:
                    self.conn = await db.connect(self.database_url, self.settings)
                    await self.conn.add_listener(CHANNEL, lambda *_: self.wake.set())
                    self.wake.set()  # anything committed while nobody listened
                except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                    log.warning("notices.listen_failed error=%r", exc)
            await _first_of(5.0, stop)

    async def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            with contextlib.suppress(asyncpg.PostgresError, OSError, TimeoutError):
                await self.conn.close(timeout=self.settings.db_timeout_seconds)
        self.conn = None


async def _first_of(seconds: float, *events: asyncio.Event) -> None:
    """Wait until one of `events` is set, or `seconds` pass."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def http_client(section: NoticesSettings) -> httpx.AsyncClient:
    """One client per worker: keep-alive connections to every app, no redirects followed."""
    return httpx.AsyncClient(
        timeout=section.webhook_timeout_seconds,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=1000),
        follow_redirects=False,
        trust_env=False,
    )
