"""PostgreSQL connections: one place that sets them up the same way everywhere."""

from __future__ import annotations

import json

import asyncpg

from hub.settings import Settings

# asyncpg prepares every statement. After five runs PostgreSQL may switch to a generic
# plan, which cannot see how many cells an area array holds or how narrow a time range is,
# and picks a plan ten times slower for the sensor aggregates. A startup setting (not SET)
# so the pool's RESET ALL between uses keeps it.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out as Python values, so no caller encodes JSON by hand."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


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
        server_settings=SERVER_SETTINGS,
    )
    assert pool is not None
    return pool
