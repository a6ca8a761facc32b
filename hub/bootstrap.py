"""Bring a database up to date before the hub serves from it."""

from __future__ import annotations

import logging

from auth import keys
from hub import domains
from hub.core import db
from hub.core.settings import Settings
from hub.migrate import migrate

log = logging.getLogger(__name__)


async def prepare_database(url: str, settings: Settings) -> None:
    """Apply pending migrations, let every installed domain load its reference data (each
    does nothing when it has not changed), and make the first token signing key on a new
    database."""
    conn = await db.connect(url, settings)
    try:
        applied = await migrate(conn)
        for migration in applied:
            log.info("bootstrap.migrated file=%s", migration.file_name)
        for domain in domains.installed().values():
            if domain.reference_data is not None:
                await domain.reference_data(conn)
        await keys.ensure_one(conn)
    finally:
        await conn.close()
