"""The embedded PostgreSQL leaves room for every pool of a hub on this machine."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from hub.core.settings import Settings
from hub.embedded import postgres


async def test_it_allows_the_connections_of_one_process_per_core(tmp_path: Path) -> None:
    server = postgres.start(tmp_path / "postgres", options=postgres.FAST_UNSAFE)
    try:
        conn = await asyncpg.connect(server.url)
        try:
            allowed = int(await conn.fetchval("SHOW max_connections"))
        finally:
            await conn.close()
    finally:
        server.stop()
    settings = Settings.from_env()
    assert allowed == postgres.max_connections()
    per_process = 3 * settings.db_pool_max  # shared, the payment flow's, the waste scans'
    assert allowed >= settings.workers * per_process + 50  # the first one's workers too
