"""Apply the numbered SQL files of `migrations/` in order, each once, each in a transaction.

Every applied file is recorded with a SHA-256 of its content; a file changed after it was
applied is refused, because the database would no longer match what the file says. Runs
are serialised with a PostgreSQL advisory lock, so two hub replicas starting at once
never apply a file twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg

log = logging.getLogger(__name__)

# "ieum" in ASCII: the key of our session-level advisory lock.
LOCK_KEY = 0x6965756D
FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

TABLE = """
CREATE TABLE IF NOT EXISTS ieum_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL
)
"""


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree; the message says how."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Status:
    migration: Migration
    applied_at: datetime | None

    @property
    def pending(self) -> bool:
        return self.applied_at is None


def load(directory: Traversable | None = None) -> list[Migration]:
    """The migration files in version order; refuse odd names and duplicate versions."""
    directory = directory or files("migrations")
    found: dict[int, Migration] = {}
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_name.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"{entry.name} and {found[version].file_name} share version {version}"
            )
        found[version] = Migration(version, match["name"], entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def status(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[Status]:
    """Each migration on disk with when it was applied (None: pending). Also checks them."""
    migrations = load() if migrations is None else migrations
    applied = await _applied(conn)
    _check(migrations, applied)
    return [
        Status(m, applied[m.version]["applied_at"] if m.version in applied else None)
        for m in migrations
    ]


async def migrate(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply the pending migrations; return those this call applied."""
    migrations = load() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(TABLE)
        applied = await _applied(conn)
        _check(migrations, applied)
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            await _apply(conn, migration)
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    started = time.perf_counter()
    async with conn.transaction():
        try:
            await conn.execute(migration.sql)
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"{migration.file_name} failed: {exc}") from exc
        duration_ms = round((time.perf_counter() - started) * 1000)
        await conn.execute(
            "INSERT INTO ieum_migrations (version, name, checksum, duration_ms)"
            " VALUES ($1, $2, $3, $4)",
            migration.version,
            migration.name,
            migration.checksum,
            duration_ms,
        )
    log.info("migrate.applied file=%s duration_ms=%d", migration.file_name, duration_ms)


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('ieum_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM ieum_migrations")
    return {row["version"]: row for row in rows}


def _check(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> None:
    on_disk = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        migration = on_disk.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{row['name']}.sql applied, "
                "but this code has no such file: the database is newer than this hub"
            )
        if migration.checksum != row["checksum"]:
            raise MigrationError(
                f"{migration.file_name} was changed after it was applied "
                f"(checksum {row['checksum'][:12]}… in the database, "
                f"{migration.checksum[:12]}… on disk). Put the change in a new migration."
            )
