"""The delivery worker: notices to apps' webhooks, signed, at least once, in order per
citizen.

Each lane loops: claim a batch (queue.claim), log in the audit log that each app is being
shown its citizen's notice, send the batch concurrently (at most `app_concurrency`
requests in flight per app, keep-alive connections) and settle the outcomes in one
statement. Lanes sleep until a publish or a redrive wakes them (NOTIFY), the next retry is
due, or a second passes. A 2xx answer is delivered; anything else (status, timeout,
refused connection) is a failed attempt with its reason.

One notice per request by default: `{"type": "notice.received", "timestamp", "data"}`,
`webhook-id` the delivery's event id. An app registered with `maxBatch` > 1 takes up to
that many per request: `{"type": "notice.batch", "timestamp", "data": {"notices": [data,
…]}}`, each `data` with its own `eventId` (the one to drop repeats by: a redelivered batch
may hold other notices), `webhook-id` derived from the event ids it holds; one answer
settles them all. A batch holds at most one notice per citizen, so order holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

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
EVENT_TYPE, BATCH_TYPE = "notice.received", "notice.batch"
BATCH_IDS = uuid.UUID("3d7f5c1e-8a2b-5c4d-9e6f-0a1b2c3d4e5f")  # namespace of batch ids


def data_of(delivery: queue.Claimed) -> dict[str, Any]:
    """What a webhook says of one delivery (the same on every attempt)."""
    return {
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
    }


def request_of(deliveries: Sequence[queue.Claimed]) -> tuple[str, bytes]:
    """The webhook-id and body of one request carrying `deliveries`."""
    if len(deliveries) == 1:
        (only,) = deliveries
        body = {
            "type": EVENT_TYPE,
            "timestamp": only.accepted_at.isoformat(),
            "data": data_of(only),
        }
        return str(only.event_id), orjson.dumps(body)
    ids = sorted(str(d.event_id) for d in deliveries)
    body = {
        "type": BATCH_TYPE,
        "timestamp": min(d.accepted_at for d in deliveries).isoformat(),
        "data": {"notices": [data_of(d) for d in deliveries]},
    }
    return str(uuid.uuid5(BATCH_IDS, ",".join(ids))), orjson.dumps(body)


class Deliverer:
    """Sends due deliveries until told to stop; several may run on one database."""

    def __init__(self, pool: asyncpg.Pool, section: NoticesSettings) -> None:
        self.pool = pool
        self.section = section
        self._clients: dict[str, tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}
        self.retry = queue.Retry(
            first=timedelta(seconds=section.first_retry_seconds),
            longest=timedelta(seconds=section.longest_retry_seconds),
            window=timedelta(hours=section.retry_hours),
        )
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
        outcomes: list[queue.Outcome] = []
        requests: list[tuple[webhooks.Webhook, list[queue.Claimed]]] = []
        by_app: dict[str, list[queue.Claimed]] = defaultdict(list)
        for d in claimed:
            if d.expires_at is not None and d.expires_at <= now:
                outcomes.append(queue.Outcome(d.delivery_id, False, EXPIRED, final=True))
            elif d.client_id not in hooks:
                outcomes.append(queue.Outcome(d.delivery_id, False, NO_WEBHOOK))
            else:
                by_app[d.client_id].append(d)
        for client_id, due in by_app.items():
            hook = hooks[client_id]
            step = hook.max_batch
            requests += [(hook, due[i : i + step]) for i in range(0, len(due), step)]
        for sent in await asyncio.gather(*(self._send(h, ds, now) for h, ds in requests)):
            outcomes += sent
        self._crash_at("after_send")
        async with self.pool.acquire() as conn:
            await queue.settle(conn, outcomes, self.retry)
        return len(claimed) + withdrawn

    async def _send(
        self, hook: webhooks.Webhook, deliveries: list[queue.Claimed], now: datetime
    ) -> list[queue.Outcome]:
        """One request carrying `deliveries`; the same outcome for each of them."""
        webhook_id, body = request_of(deliveries)
        headers = signing.headers(hook.valid_secrets(now), webhook_id, body)
        client, limit = self._client(hook.client_id)
        async with limit:
            try:
                response = await client.post(hook.url, content=body, headers=headers)
                error = "" if response.is_success else f"HTTP {response.status_code}"
            except httpx.TimeoutException:
                error = "timed out"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        return [queue.Outcome(d.delivery_id, not error, error) for d in deliveries]

    def _client(self, client_id: str) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The app's own client (its keep-alive connections, no redirects followed) and
        the limit of its requests in flight. The rest wait on the semaphore, not in the
        client's pool, whose queue costs grow with its length."""
        found = self._clients.get(client_id)
        if found is None:
            limit = self.section.app_concurrency
            found = self._clients[client_id] = (
                httpx.AsyncClient(
                    timeout=self.section.webhook_timeout_seconds,
                    limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                    follow_redirects=False,
                    trust_env=False,
                ),
                asyncio.Semaphore(limit),
            )
        return found

    async def aclose(self) -> None:
        for client, _ in self._clients.values():
            await client.aclose()
        self._clients.clear()

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
            await self.aclose()

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
