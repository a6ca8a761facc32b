"""The delivery worker: notices to apps' webhooks, signed, at least once, in order per
citizen.

Each lane loops: claim a batch (queue.claim), log in the audit log that each app is being
shown its citizen's notice, and send each app its share of the batch on its own: at most
`app_concurrency` requests in flight per app (keep-alive connections), then that app's
outcomes settled in one statement, as soon as it answered, not when the slowest app of the
batch did. A 2xx answer is delivered; anything else (status, timeout, refused connection)
is a failed attempt with its reason. Lanes sleep until a publish or a redrive wakes them
(NOTIFY), the next retry is due, or a second passes.

An app that hangs cannot hold a lane or anyone's deliveries past a lease: each request
has `webhook_timeout_seconds` from connecting to the answer's last byte (at most a quarter
of the lease); once one of an app's requests timed out, the rest of its share is not sent
but failed (retried later, with backoff); no request starts after half the lease. A round
waits `PATIENCE_SECONDS` for its apps' shares; a share still going then finishes and
settles on its own, and this worker's rounds skip that app until it has.

By default a request carries up to the app's `maxBatch` notices (new apps: 50,
`IEUM_NOTICES_DEFAULT_MAX_BATCH`): `{"type": "notice.batch", "timestamp", "data":
{"notices": [data, …]}}`, each `data` with its own `eventId` (the one to drop repeats by: a
redelivered batch may hold other notices), `webhook-id` derived from the event ids it
holds; one answer settles them all. A batch holds at most one notice per citizen, so
order holds. An app registered with `maxBatch` 1, and a request that holds one notice,
is `{"type": "notice.received", "timestamp", "data"}`, `webhook-id` the delivery's event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
PATIENCE_SECONDS = 1.0  # a round waits this long for its apps; a slower app goes on alone
NO_WEBHOOK = "the app has no webhook registered"
EXPIRED = "expired before it could be delivered"
TIMED_OUT = "timed out"
NOT_SENT = "not sent: an earlier request to the app timed out"
TOO_LATE = "not sent: the app's earlier requests took half the lease"
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

    def __init__(
        self, pool: asyncpg.Pool, section: NoticesSettings, patience: float = PATIENCE_SECONDS
    ) -> None:
        self.pool = pool
        self.section = section
        self.patience = patience  # how long a round waits for its slowest app
        self._clients: dict[str, tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}
        self.retry = queue.Retry(
            first=timedelta(seconds=section.first_retry_seconds),
            longest=timedelta(seconds=section.longest_retry_seconds),
            window=timedelta(hours=section.retry_hours),
        )
        self._wake = asyncio.Event()
        self._slow: dict[str, asyncio.Task[None]] = {}  # apps whose share outlived its round

    async def round(self) -> int:
        """Claim a batch and send each app its share; how many deliveries it claimed. It
        returns when every share is settled, or after `patience` with the slow apps'
        shares still going on their own."""
        lease = timedelta(seconds=self.section.lease_seconds)
        async with self.pool.acquire() as conn:
            claimed, withdrawn = await queue.claim(
                conn, self.section.batch, lease, skip=sorted(self._slow)
            )
            if not claimed:
                return withdrawn
            self._crash_at("after_claim")
            hooks = await webhooks.of_apps(conn, sorted({d.client_id for d in claimed}))
        await _audited(self.pool, [d for d in claimed if d.client_id in hooks])
        now = datetime.now(UTC)
        # No request starts after half the lease: every one ends before the lease does.
        latest = asyncio.get_running_loop().time() + self.section.lease_seconds / 2
        outcomes: list[queue.Outcome] = []
        by_app: dict[str, list[queue.Claimed]] = defaultdict(list)
        for d in claimed:
            if d.expires_at is not None and d.expires_at <= now:
                outcomes.append(queue.Outcome(d.delivery_id, False, EXPIRED, final=True))
            elif d.client_id not in hooks:
                outcomes.append(queue.Outcome(d.delivery_id, False, NO_WEBHOOK))
            else:
                by_app[d.client_id].append(d)
        shares = {
            asyncio.create_task(self._share(hooks[client_id], due, now, latest)): client_id
            for client_id, due in by_app.items()
        }
        if outcomes:
            async with self.pool.acquire() as conn:
                await queue.settle(conn, outcomes, self.retry)
        if shares:
            done, going = await asyncio.wait(shares, timeout=self.patience)
            failed = [exc for task in done if (exc := task.exception()) is not None]
            for task in going:
                self._slow[shares[task]] = task
                task.add_done_callback(functools.partial(self._caught_up, shares[task]))
            if failed:
                raise failed[0]  # a share's failure (the database away) is the round's
        return len(claimed) + withdrawn

    def _caught_up(self, client_id: str, task: asyncio.Task[None]) -> None:
        """A slow app's share is settled: rounds may claim its deliveries again."""
        self._slow.pop(client_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("notices.delivery_share_failed app=%s error=%r", client_id, exc)
        self._wake.set()

    async def _share(
        self, hook: webhooks.Webhook, due: list[queue.Claimed], now: datetime, latest: float
    ) -> None:
        """Send one app its deliveries (in requests of up to its maxBatch), then settle
        them. After a timeout the app is taken to hang: its requests not yet started fail
        without being sent, as do those that would start after `latest`."""
        client, limit = self._client(hook.client_id)
        loop = asyncio.get_running_loop()
        hung = False

        async def one(deliveries: list[queue.Claimed]) -> list[queue.Outcome]:
            nonlocal hung
            async with limit:
                if hung or loop.time() > latest:
                    error = NOT_SENT if hung else TOO_LATE
                    return [queue.Outcome(d.delivery_id, False, error) for d in deliveries]
                sent = await self._send(client, hook, deliveries, now)
            hung = hung or sent[0].error == TIMED_OUT
            return sent

        step = hook.max_batch
        requests = [due[i : i + step] for i in range(0, len(due), step)]
        outcomes = [o for sent in await asyncio.gather(*map(one, requests)) for o in sent]
        self._crash_at("after_send")
        async with self.pool.acquire() as conn:
            await queue.settle(conn, outcomes, self.retry)

    async def _send(
        self,
        client: httpx.AsyncClient,
        hook: webhooks.Webhook,
        deliveries: list[queue.Claimed],
        now: datetime,
    ) -> list[queue.Outcome]:
        """One request carrying `deliveries`; the same outcome for each of them. httpx's
        timeout bounds each read; the whole request is bounded here too, so an app that
        answers a byte at a time cannot stretch it."""
        webhook_id, body = request_of(deliveries)
        headers = signing.headers(hook.valid_secrets(now), webhook_id, body)
        try:
            async with asyncio.timeout(self.section.webhook_timeout_seconds):
                response = await client.post(hook.url, content=body, headers=headers)
            error = "" if response.is_success else f"HTTP {response.status_code}"
        except (httpx.TimeoutException, TimeoutError):
            error = TIMED_OUT
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
        """Let the slow apps' shares finish (each request is bounded by the webhook
        timeout; cut short, their deliveries would wait for their lease to end) and close
        the connections."""
        await asyncio.gather(*self._slow.values(), return_exceptions=True)
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
