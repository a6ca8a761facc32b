"""The hub's PostgreSQL pool (hub/core/db.py) against a real server: a connection that goes
back to the pool by itself is not given back twice, and only PostgreSQL being away counts
as an outage."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hub.core import db
from hub.embedded.ports import free_port
from tests.conftest import local_settings

pytestmark = pytest.mark.db


@pytest.fixture
async def pool(pg_server_url: str) -> AsyncIterator[db.Pool]:
    pool = await db.create_pool(pg_server_url, local_settings(db_pool_min=1, db_pool_max=2))
    yield pool
    await pool.close()


async def test_a_connection_closed_as_it_is_released_goes_back_once(pool: db.Pool) -> None:
    """A call cancelled mid-statement has its connection cancel the statement in the
    background; when that fails the connection closes itself, and so goes back to the
    pool, possibly just as the cancelled call releases it. That release must do nothing
    (it raised InternalClientError, an INTERNAL_SERVER_ERROR for a sibling of a failed
    GraphQL root field), and the pool must go on serving with every slot."""
    for _ in range(3):
        conn = await pool.acquire()
        # Runs after the release has checked the connection is out, before it frees it.
        asyncio.get_running_loop().call_soon(conn.terminate)
        await pool.release(conn)
    assert [await pool.fetchval("SELECT $1::int", n) for n in range(3)] == [0, 1, 2]
    both = [await pool.acquire(), await pool.acquire()]
    assert [await conn.fetchval("SELECT 1") for conn in both] == [1, 1]
    for conn in both:
        await pool.release(conn)
    assert pool.get_idle_size() == 2


async def test_cancelled_calls_leave_the_pool_serving(pool: db.Pool) -> None:
    """Calls cancelled at every point of their life (waiting for a slot, connecting,
    preparing, running) end cancelled, nothing else, and each slot is returned."""
    for ticks in range(12):
        calls = [
            asyncio.ensure_future(pool.fetchrow(f"SELECT {ticks} + $1::int AS n, pg_sleep(0)", n))
            for n in range(4)
        ]
        for _ in range(ticks):
            await asyncio.sleep(0)
        for call in calls:
            call.cancel()
        for outcome in await asyncio.gather(*calls, return_exceptions=True):
            assert outcome is None or isinstance(outcome, asyncpg.Record | asyncio.CancelledError)
    assert await pool.fetchval("SELECT 1") == 1
    both = [await pool.acquire(), await pool.acquire()]
    for conn in both:
        await pool.release(conn)


async def test_an_event_loop_fault_while_connecting_is_no_outage(pg_server_url: str) -> None:
    """A socket closed behind the event loop's back leaves its descriptor registered; the
    next socket gets that number and epoll refuses it (FileNotFoundError). Raised in
    asyncpg's connect, it was taken for PostgreSQL being away (503 and an outage logged);
    it is a bug in this process instead."""
    loop = asyncio.get_running_loop()
    stale = socket.socket()
    loop.add_reader(stale.fileno(), lambda: None)
    fd = stale.fileno()
    stale.close()  # without remove_reader: the number is free, the loop still holds it
    try:
        with pytest.raises(FileNotFoundError) as raised:
            await asyncpg.connect(pg_server_url, timeout=5)
    finally:
        loop.remove_reader(fd)
    assert not db.unavailable(raised.value)


async def test_a_refused_connection_is_an_outage() -> None:
    with pytest.raises(OSError) as raised:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    assert db.unavailable(raised.value)
