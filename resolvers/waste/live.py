"""Collections as they are recorded, fanned out to subscribers in this process.

A scan's transaction sends `NOTIFY waste_collections` with the collection (pg_notify,
delivered at commit): subscribers hear only of collections that are stored, from every
hub process on the database, with no broker between and no outbox to wait on — delivery
takes milliseconds, where the bench asks for under a second. One listening connection per
process (opened with the first subscriber, kept until the process stops) fans them out to
bounded queues, one per subscriber, filtered by district.

A subscriber that falls too far behind, or whose feed lost the listening connection
(PostgreSQL restarted), is ended with an error rather than left with a silent gap: it
subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from hub.core import db
from hub.core.errors import UpstreamUnavailable

if TYPE_CHECKING:
    from hub.core.servers import Servers
    from hub.core.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "waste_collections"
QUEUE_LIMIT = 10_000


class Collection(msgspec.Struct, frozen=True, kw_only=True):
    """A bin collected: what the NOTIFY payload carries (well under its 8,000 bytes), as
    the scan's statement builds it (resolvers/waste/scans.py)."""

    scan_id: uuid.UUID
    pickup_id: uuid.UUID
    bin_id: uuid.UUID
    site_id: uuid.UUID
    district_code: str
    collector_id: str
    collected_at: datetime
    weight_kg: Decimal | None
    volume_litres: int | None
    flagged: bool
    outcome: str


_decode = msgspec.json.Decoder(Collection).decode


class LiveFeedEnded(UpstreamUnavailable):
    """The subscription ended without a gap left unsaid: subscribe again."""


class Subscriber:
    def __init__(self, district_code: str) -> None:
        self.district_code = district_code
        self._queue: asyncio.Queue[Collection | None] = asyncio.Queue(QUEUE_LIMIT)
        self._ended: str | None = None

    def offer(self, collection: Collection) -> None:
        if collection.district_code != self.district_code or self._ended:
            return
        try:
            self._queue.put_nowait(collection)
        except asyncio.QueueFull:
            self.end("too far behind: subscribe again")

    def end(self, reason: str) -> None:
        if self._ended is None:
            self._ended = reason
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)

    async def collections(self) -> AsyncIterator[Collection]:
        while True:
            if self._ended is not None and self._queue.empty():
                raise LiveFeedEnded(f"the live feed ended ({self._ended})")
            found = await self._queue.get()
            if found is not None:
                yield found


class LiveCollections:
    """The process's listening connection and its subscribers."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._subscribers: set[Subscriber] = set()

    @asynccontextmanager
    async def subscribe(self, district_code: str) -> AsyncIterator[Subscriber]:
        """A subscriber to the district's collections from now on (listening first, so
        none committed after this returns is missed)."""
        await self._listening()
        subscriber = Subscriber(district_code)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    async def _listening(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                conn = await self._connect()
                await conn.add_listener(CHANNEL, self._heard)
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                raise UpstreamUnavailable(f"the live feed cannot listen: {exc}") from None
            conn.add_termination_listener(self._lost)
            self._conn = conn

    def _heard(self, conn: object, pid: int, channel: str, data: str) -> None:
        if not self._subscribers:
            return
        try:
            collection = _decode(data)
        except msgspec.ValidationError:
            log.warning("waste.live.bad_payload payload=%.200s", data)
            return
        for subscriber in list(self._subscribers):
            subscriber.offer(collection)

    def _lost(self, conn: object) -> None:
        log.warning("waste.live.listener_lost subscribers=%d", len(self._subscribers))
        self._conn = None
        for subscriber in list(self._subscribers):
            subscriber.end("the hub lost its database connection")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        for subscriber in list(self._subscribers):
            subscriber.end("the hub is stopping")
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._lost)
            await conn.close()


@asynccontextmanager
async def listening(settings: Settings, servers: Servers) -> AsyncIterator[LiveCollections]:
    """The process's live collections for its lifespan (connects on first subscriber)."""
    live = LiveCollections(lambda: db.connect(servers.database, settings))
    try:
        yield live
    finally:
        await live.close()
