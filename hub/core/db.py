"""PostgreSQL connections: one place that sets them up the same way everywhere, with time
limits on every wait, and one watch per pool that sees an outage and its end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import asyncpg
import asyncpg.pool
from prometheus_client import Counter

from hub.core import monitoring
from hub.core.settings import Settings

log = logging.getLogger(__name__)

OUTAGES = Counter(
    "ieum_database_outages",
    "Times PostgreSQL stopped answering this process (refused, dropped or timed out).",
    registry=monitoring.REGISTRY,
)
PROBE_SECONDS = 1.0  # during an outage, how often a fresh connection checks whether it ended
# Beyond the server's statement_timeout, how long the client waits before it gives up on
# an answer itself (packets dropped: the server's own limit never reaches us).
CLIENT_GRACE_SECONDS = 1.0

# PostgreSQL settings every connection starts with: what the installed domains' queries
# need (their manifests' `database_settings`, registered as the domains load). Startup
# parameters, not SET, so the pool's RESET ALL keeps them.
SERVER_SETTINGS: dict[str, str] = {}


def register_server_settings(owner: str, wanted: Mapping[str, str]) -> None:
    """Add a domain's connection settings; two domains wanting one setting differently
    cannot share a pool, so that stops the load."""
    for name, value in wanted.items():
        known = SERVER_SETTINGS.setdefault(name, value)
        if known != value:
            raise ValueError(
                f"domain {owner!r} needs PostgreSQL setting {name}={value!r}, but another "
                f"installed domain needs {known!r}"
            )


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python values, so no caller encodes JSON by hand."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def keep_session(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is. asyncpg's default reset (RESET ALL,
    UNLISTEN *, CLOSE ALL, advisory unlock) is one more round trip on every release, about
    a tenth of a short query's cost, for session state no pool user changes: pooled
    connections never SET, LISTEN or take session locks (migrations use their own
    connection). asyncpg still rolls back a transaction left open before calling this."""


async def connect(url: str, settings: Settings) -> asyncpg.Connection:
    conn = await asyncpg.connect(
        url, timeout=settings.db_timeout_seconds, server_settings=SERVER_SETTINGS
    )
    await init_connection(conn)
    return conn


class Outage:
    """Whether PostgreSQL answers, as the requests that use it find out.

    Callers report failures; the first one starts an outage, logged once with its cause
    (not once per request: a refusing server made thousands of tracebacks in seconds), and
    a probe with fresh connections logs once when it ends.
    """

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.timeout = settings.db_timeout_seconds
        self.since: float | None = None  # monotonic start of the current outage
        self._probe: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> None:
        """A call found PostgreSQL unavailable."""
        if self.since is not None:
            return
        self.since = time.monotonic()
        OUTAGES.inc()
        log.error("database.unavailable error=%s", describe(error))
        self._probe = asyncio.get_running_loop().create_task(self._until_back())

    async def _until_back(self) -> None:
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            try:
                conn = await asyncpg.connect(self.url, timeout=self.timeout)
                try:
                    await conn.fetchval("SELECT 1", timeout=self.timeout)
                finally:
                    conn.terminate()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                continue
            assert self.since is not None
            lasted = time.monotonic() - self.since
            log.warning("database.available_again after_seconds=%.1f", lasted)
            self.since = None
            return

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe


class Pool(asyncpg.Pool):
    """asyncpg's pool, where every acquire (and its release) waits at most `acquire_timeout`
    unless the caller says otherwise: asyncpg waits forever by default, so with packets
    dropped a request hung for the whole outage once the pool's connections were stuck."""

    def __init__(self, *args: Any, acquire_timeout: float, outage: Outage, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout
        self.outage = outage

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def release(
        self,
        connection: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (asyncpg's signature)
    ) -> None:
        """Give a connection back once, even if it went back by itself meanwhile.

        asyncpg checks that the connection is still out, then releases it in a task
        shielded from cancellation, which starts one loop iteration later. A call cancelled
        mid-statement has its connection cancel the statement in the background; if that
        fails, the connection closes and so returns to the pool, and when it happened in
        that iteration asyncpg's task found the pool's slot already free and raised
        InternalClientError ("release() called on a free connection holder") into the
        cancelled caller. Here the check and the release run in one step of the task."""
        await asyncio.shield(self._release_once(connection, timeout))

    async def _release_once(self, connection: Any, budget: float | None) -> None:
        if not (
            isinstance(connection, asyncpg.pool.PoolConnectionProxy)
            and connection._holder._pool is self
        ):
            raise asyncpg.InterfaceError(f"{connection!r} is not a connection of this pool")
        if connection._con is None:  # closed meanwhile, so already back in the pool
            return
        self._check_init()
        connection._con._on_release()
        holder = connection._holder
        await holder.release(holder._timeout if budget is None else budget)

    async def close(self) -> None:
        await self.outage.close()
        await super().close()


async def create_pool(
    url: str, settings: Settings, own_settings: Mapping[str, str] | None = None
) -> Pool:
    """A pool whose waits are bounded: connecting and acquiring by IEUM_DB_TIMEOUT_SECONDS,
    each statement by IEUM_DB_STATEMENT_TIMEOUT_SECONDS (on the server, which cancels it,
    and in the client a little later, for when the server's answer cannot reach us).
    `own_settings` override the installed domains' settings, for a domain's pool of its
    own whose statements need others (the pool serves those statements only)."""
    statement = settings.db_statement_timeout_seconds
    pool = Pool(
        url,
        acquire_timeout=settings.db_timeout_seconds,
        outage=Outage(url, settings),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=settings.db_timeout_seconds,
        command_timeout=statement + CLIENT_GRACE_SECONDS,
        init=init_connection,
        reset=keep_session,
        server_settings={
            **SERVER_SETTINGS,
            **(own_settings or {}),
            "statement_timeout": str(int(statement * 1000)),
        },
    )
    await pool
    return pool


# What PostgreSQL being away looks like from asyncpg: refused, dropped, shut down, too
# many clients, or no answer in time (ours or the server's statement_timeout).
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,  # with ConnectionDoesNotExistError: dropped mid-call
    asyncpg.OperatorInterventionError,  # shutting down, starting up, statement_timeout
    asyncpg.InsufficientResourcesError,  # too many connections
)


def unavailable(error: BaseException) -> bool:
    """Whether `error` means PostgreSQL could not be reached or did not answer in time,
    rather than a bug. OS errors and timeouts count only when raised inside asyncpg, so a
    timeout elsewhere is not blamed on the database, and not when the event loop raised
    them itself (see _event_loop_fault)."""
    if isinstance(error, _UNAVAILABLE):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        return "closed" in str(error) or "closing" in str(error)
    if isinstance(error, OSError | TimeoutError):
        return _raised_in_asyncpg(error.__traceback__) and not _event_loop_fault(error)
    return False


def _raised_in_asyncpg(tb: TracebackType | None) -> bool:
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.startswith("asyncpg") or module == __name__:
            return True
        tb = tb.tb_next
    return False


def _event_loop_fault(error: BaseException) -> bool:
    """Whether the error came from the event loop's own bookkeeping (its selector), not
    from the network: epoll refusing a socket (ENOENT) whose descriptor number the loop
    still had registered for one closed behind its back. That is a bug in this process,
    whatever the socket was for, and not PostgreSQL being away."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__") == "selectors"


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip().rstrip(":")
