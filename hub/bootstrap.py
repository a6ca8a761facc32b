"""Bring a database up to date before the hub serves from it."""

from __future__ import annotations

import logging

from hub import db
from hub.migrate import migrate
from hub.settings import Settings
from resolvers.platform.districts import load_reference_data

log = logging.getLogger(__name__)


async def prepare_database(url: str, settings: Settings) -> None:
    """Apply pending migrations, then load the reference data (districts) if it changed."""
    conn = await db.connect(url, settings)
    try:
        applied = await migrate(conn)
        for migration in applied:
            log.info("bootstrap.migrated file=%s", migration.file_name)
        await load_reference_data(conn)
    finally:
        await conn.close()
