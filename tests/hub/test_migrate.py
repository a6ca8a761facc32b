"""The migrations runner against a real PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from hub.migrate import MigrationError, load, migrate, status
from tests.conftest import fresh_database

pytestmark = pytest.mark.db


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


@pytest.fixture
async def conn(pg_server_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with fresh_database(pg_server_url, "migrate") as url:
        connection = await asyncpg.connect(url)
        yield connection
        await connection.close()


async def test_project_migrations_apply_to_an_empty_database(conn: asyncpg.Connection) -> None:
    applied = await migrate(conn)
    assert [m.file_name for m in applied] == [m.file_name for m in load()]
    assert await conn.fetchval("SELECT to_regclass('districts') IS NOT NULL")
    assert await migrate(conn) == []


async def test_rerun_applies_only_new_files(conn: asyncpg.Connection, tmp_path: Path) -> None:
    folder = write(tmp_path, {"0001_a.sql": "CREATE TABLE a (id int);"})
    assert [m.name for m in await migrate(conn, load(folder))] == ["a"]
    write(folder, {"0002_b.sql": "CREATE TABLE b (id int);"})
    assert [m.name for m in await migrate(conn, load(folder))] == ["b"]
    assert await migrate(conn, load(folder)) == []
    rows = await conn.fetch("SELECT version, name FROM ieum_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(1, "a"), (2, "b")]


async def test_status_lists_applied_and_pending(conn: asyncpg.Connection, tmp_path: Path) -> None:
    folder = write(tmp_path, {"0001_a.sql": "CREATE TABLE a (id int);"})
    await migrate(conn, load(folder))
    write(folder, {"0002_b.sql": "CREATE TABLE b (id int);"})
    report = await status(conn, load(folder))
    assert [(s.migration.name, s.pending) for s in report] == [("a", False), ("b", True)]
    assert await conn.fetchval("SELECT to_regclass('b')") is None  # status changed nothing


async def test_changed_file_is_refused(conn: asyncpg.Connection, tmp_path: Path) -> None:
    folder = write(tmp_path, {"0001_a.sql": "CREATE TABLE a (id int);"})
    await migrate(conn, load(folder))
    write(folder, {"0001_a.sql": "CREATE TABLE a (id bigint);"})
    with pytest.raises(MigrationError, match=r"0001_a\.sql was changed after it was applied"):
        await migrate(conn, load(folder))


async def test_database_newer_than_code_is_refused(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    folder = write(tmp_path, {"0001_a.sql": "CREATE TABLE a (id int);"})
    await migrate(conn, load(folder))
    (folder / "0001_a.sql").unlink()
    with pytest.raises(MigrationError, match="newer than this hub"):
        await migrate(conn, load(folder))


async def test_failing_migration_rolls_back_and_names_the_file(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    folder = write(
        tmp_path,
        {"0001_a.sql": "CREATE TABLE a (id int);", "0002_bad.sql": "CREATE TABLE c (id int); x;"},
    )
    with pytest.raises(MigrationError, match=r"0002_bad\.sql failed"):
        await migrate(conn, load(folder))
    assert await conn.fetchval("SELECT to_regclass('c')") is None
    assert await conn.fetchval("SELECT count(*) FROM ieum_migrations") == 1


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_a.sql": ""}, "named NNNN_name.sql"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "share version 1"),
    ],
)
def test_bad_file_names_are_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        load(write(tmp_path, files))


async def test_concurrent_runs_apply_each_file_once(pg_server_url: str, tmp_path: Path) -> None:
    # Slow migrations widen the window in which two unserialised runs would both apply them;
    # a second CREATE TABLE of the same name would then fail.
    folder = write(
        tmp_path,
        {
            "0001_slow.sql": "SELECT pg_sleep(0.3); CREATE TABLE slow (id int);",
            "0002_slower.sql": "SELECT pg_sleep(0.3); CREATE TABLE slower (id int);",
        },
    )
    async with fresh_database(pg_server_url, "migrate_concurrent") as url:
        first, second = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            results = await asyncio.gather(
                migrate(first, load(folder)), migrate(second, load(folder))
            )
            applied = sorted(m.name for result in results for m in result)
            assert applied == ["slow", "slower"]
            assert await first.fetchval("SELECT count(*) FROM ieum_migrations") == 2
        finally:
            await first.close()
            await second.close()
