"""The ingest worker's one PostgreSQL connection: wait for the database, never die of it.

A worker that exits when PostgreSQL restarts needs a person to start it again; one that
hangs on a silent network holds its partitions forever. So every way a connection can
fail (refused, dropped, reset, timed out, shut down by an administrator) is an outage:
the connection is dropped, the worker waits with backoff and connects again, and the
state is on /metrics. Nothing is lost meanwhile: the batch was not committed, so its
offsets were not stored and it is written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

import asyncpg

from hub.core import db
from hub.core.settings import Settings
from resolvers.sensors import monitoring

log = logging.getLogger(__name__)

# What a lost or unreachable database raises: asyncpg's InterfaceError family includes
# ConnectionDoesNotExistError (a connection closed under a query), OSError covers refused
# and reset connections, TimeoutError our own limits, PostgresError a server shutting down.
OUTAGE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
FIRST_WAIT = 0.5
LONGEST_WAIT = 15.0


class Backoff:
    """Doubling waits with jitter, so many workers do not knock in step."""

    def __init__(self, first: float = FIRST_WAIT, longest: float = LONGEST_WAIT) -> None:
        self.first, self.longest, self.next = first, longest, first

    def wait(self) -> float:
        current = self.next
        self.next = min(self.longest, self.next * 2)
        return current * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)

    def reset(self) -> None:
        self.next = self.first


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when the worker is told to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class IngestDatabase:
    """The worker's connection, with its state on /metrics."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        prepare: Callable[[asyncpg.Connection], Awaitable[None]],
    ) -> None:
        self.url = url
        self.settings = settings
        self.prepare = prepare
        self.conn: asyncpg.Connection | None = None
        self.backoff = Backoff()
        self.waiting_since: float | None = None

    async def connection(self, stop: asyncio.Event) -> asyncpg.Connection | None:
        """The open connection, or a new one once the database answers; None if the
        worker is told to stop first."""
        while self.conn is None or self.conn.is_closed():
            try:
                async with asyncio.timeout(self.settings.db_timeout_seconds * 2):
                    conn = await db.connect(self.url, self.settings)
                    try:
                        await self.prepare(conn)
                    except BaseException:
                        conn.terminate()
                        raise
            except OUTAGE as exc:
                self._waiting(exc)
                if stop.is_set():
                    return None
                await sleep_unless(stop, self.backoff.wait())
                continue
            self.conn = conn
            self._connected()
        return self.conn

    def lost(self, exc: BaseException) -> None:
        """Drop the connection after a failure: its state is unknown (a statement may
        still run, a cancelled query leaves it unusable), a new one is certain."""
        if self.conn is not None:
            self.conn.terminate()
        self.conn = None
        self._waiting(exc)

    async def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            try:
                async with asyncio.timeout(self.settings.db_timeout_seconds):
                    await self.conn.close()
            except OUTAGE:
                self.conn.terminate()
        self.conn = None

    def _waiting(self, exc: BaseException) -> None:
        if self.waiting_since is None:
            self.waiting_since = time.time()
            log.error("ingest.database.unavailable error=%r; waiting for it", exc)
            monitoring.INGEST_DB_CONNECTED.set(0)
            monitoring.INGEST_DB_STATE_SINCE.set(self.waiting_since)
        else:
            log.debug("ingest.database.still_unavailable error=%r", exc)

    def _connected(self) -> None:
        self.backoff.reset()
        now = time.time()
        if self.waiting_since is not None:
            log.warning("ingest.database.back after_seconds=%.1f", now - self.waiting_since)
        self.waiting_since = None
        monitoring.INGEST_DB_CONNECTED.set(1)
        monitoring.INGEST_DB_STATE_SINCE.set(now)
