"""PostgreSQL connections: one place that sets them up the same way everywhere."""

from __future__ import annotations

import json

import asyncpg

from hub.core.settings import Settings

# asyncpg prepares every statement. After five runs PostgreSQL may switch to a generic
# plan, which cannot see how many cells an area array holds or how narrow a time range is,
# and picks a plan ten times slower for the sensor aggregates. A startup setting (not SET)
# so the pool's RESET ALL between uses keeps it.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


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


async def create_pool(url: str, settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_timeout_seconds,
        init=init_connection,
        reset=keep_session,
        server_settings=SERVER_SETTINGS,
    )
    assert pool is not None
    return pool
