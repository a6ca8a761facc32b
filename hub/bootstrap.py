"""Bring a database up to date before the hub serves from it."""

from __future__ import annotations

import logging

from auth import keys
from hub.core import db
from hub.core.settings import Settings
from hub.migrate import migrate
from resolvers.platform.districts import load_reference_data

log = logging.getLogger(__name__)


async def prepare_database(url: str, settings: Settings) -> None:
    """Apply pending migrations, load the reference data (districts) if it changed, and
    make the first token signing key on a new database."""
    conn = await db.connect(url, settings)
    try:
        applied = await migrate(conn)
        for migration in applied:
            log.info("bootstrap.migrated file=%s", migration.file_name)
        await load_reference_data(conn)
        await keys.ensure_one(conn)
    finally:
        await conn.close()
