"""The audit log on a real PostgreSQL: reads logged before they are answered, one INSERT
per request's batch, append-only, exported by period, pruned after two years."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import asyncpg
import pytest
import strawberry
from starlette.requests import HTTPConnection

from auth import audit
from hub.core import db
from hub.core.caller import Caller
from hub.core.context import Context, Info
from hub.core.settings import Settings

pytestmark = pytest.mark.db

IEUM = str(Path(sys.executable).parent / "ieum")
TERMINAL = Caller(client_id="terminal-7", user_id=str(uuid.uuid4()))


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


async def insert_at(pool: asyncpg.Pool, at: datetime, subject: str) -> None:
    """A row logged at a chosen time (inserting is what the log allows)."""
    await pool.execute(
        "INSERT INTO audit_log (at, client_id, action, subject_type, subject, fields)"
        " VALUES ($1, 'terminal-7', 'payer.read', 'tax_bill', $2, '{name}')",
        at,
        subject,
    )


Format = Literal["csv", "jsonl"]


async def exported(
    pool: asyncpg.Pool, since: datetime, until: datetime | None, format: Format
) -> list[dict[str, object]]:
    out = io.StringIO()
    count = await audit.export(pool, since, until, format, out)
    out.seek(0)
    rows: list[dict[str, object]] = (
        list(csv.DictReader(out))
        if format == "csv"
        else [json.loads(line) for line in out.read().splitlines()]
    )
    assert count == len(rows)
    return rows


# Recording and exporting


async def test_record_writes_one_row_per_subject(pool: asyncpg.Pool) -> None:
    subjects = [f"0{n:018d}" for n in range(3)]
    await audit.record(
        pool,
        TERMINAL,
        action="payer.read",
        subject_type="tax_bill",
        subjects=subjects,
        fields=["name", "address"],
        operation="ieum receipts print",
        client_ip="203.0.113.7",
        request_id="req-1",
    )
    rows = await pool.fetch(
        "SELECT *, xmin::text AS tx FROM audit_log WHERE subject = ANY($1) ORDER BY subject",
        subjects,
    )
    assert [row["subject"] for row in rows] == subjects
    assert {row["tx"] for row in rows} == {rows[0]["tx"]}  # one statement
    row = rows[0]
    assert (row["client_id"], str(row["user_id"])) == ("terminal-7", TERMINAL.user_id)
    assert (row["action"], row["subject_type"]) == ("payer.read", "tax_bill")
    assert row["fields"] == ["name", "address"]
    assert (row["operation"], row["request_id"]) == ("ieum receipts print", "req-1")
    assert row["client_ip"] == "203.0.113.7"


@pytest.mark.parametrize("format", ["csv", "jsonl"])
async def test_export_holds_the_rows_of_the_period(pool: asyncpg.Pool, format: Format) -> None:
    kst = audit.KST
    subject = f"period-{format}"
    for at in (
        datetime(2025, 10, 31, 23, 59, 59, tzinfo=kst),  # before
        datetime(2025, 11, 1, tzinfo=kst),  # the first instant: in
        datetime(2025, 11, 15, 12, tzinfo=UTC),  # in
        datetime(2025, 12, 1, tzinfo=kst),  # `until` is excluded
    ):
        await insert_at(pool, at, subject)
    since, until = datetime(2025, 11, 1, tzinfo=kst), datetime(2025, 12, 1, tzinfo=kst)
    rows = [r for r in await exported(pool, since, until, format) if r["subject"] == subject]
    assert [row["at"] for row in rows] == [
        "2025-11-01T00:00:00+09:00",
        "2025-11-15T21:00:00+09:00",
    ]
    first = rows[0]
    assert list(first) == list(audit.COLUMNS)
    assert first["client_id"] == "terminal-7"
    assert first["fields"] == ("name" if format == "csv" else ["name"])
    assert first["user_id"] in ("", None)  # no citizen behind this read
    open_ended = await exported(pool, since, None, format)
    assert sum(r["subject"] == subject for r in open_ended) == 3


async def test_export_of_a_quiet_period_is_only_the_header(pool: asyncpg.Pool) -> None:
    out = io.StringIO()
    since = datetime(2001, 1, 1, tzinfo=UTC)
    assert await audit.export(pool, since, since + timedelta(days=1), "csv", out) == 0
    assert out.getvalue().strip() == ",".join(audit.COLUMNS)


# Reads in GraphQL: logged before the answer, one INSERT per batch


@strawberry.type
class Bill:
    number: str

    @strawberry.field
    async def payer(self, info: Info) -> str | None:
        await audit.read(
            info, action="payer.read", subject_type="tax_bill", subjects=[self.number],
            fields=["name"],
        )  # fmt: skip
        return f"납부자 {self.number}"


@strawberry.type
class Query:
    @strawberry.field
    def bills(self, prefix: str, count: int) -> list[Bill]:
        return [Bill(number=f"{prefix}{n:04d}") for n in range(count)]


SCHEMA = strawberry.Schema(query=Query)


def context(pool: asyncpg.Pool, request_id: str) -> Context:
    scope = {
        "type": "http",
        "headers": [(b"x-request-id", request_id.encode())],
        "client": ("198.51.100.20", 50123),
    }
    return Context(connection=HTTPConnection(scope), db=pool, caller=TERMINAL)


async def test_a_list_of_bills_is_logged_with_one_insert(pool: asyncpg.Pool) -> None:
    query = 'query DeskBills { bills(prefix: "desk", count: 100) { number payer } }'
    shared = context(pool, "req-desk")
    result = await SCHEMA.execute(query, context_value=shared)
    assert result.errors is None
    assert result.data and len(result.data["bills"]) == 100
    rows = await pool.fetch(
        "SELECT subject, operation, request_id, client_id, client_ip, xmin::text AS tx"
        " FROM audit_log WHERE subject LIKE 'desk%'"
    )
    assert sorted(row["subject"] for row in rows) == [f"desk{n:04d}" for n in range(100)]
    assert {(r["operation"], r["request_id"], r["client_id"], r["client_ip"]) for r in rows} == {
        ("DeskBills", "req-desk", "terminal-7", "198.51.100.20")
    }
    assert len({row["tx"] for row in rows}) == 1

    # A WebSocket keeps one context for all its operations: each one is logged again.
    assert (await SCHEMA.execute(query, context_value=shared)).errors is None
    again = await pool.fetch("SELECT xmin::text AS tx FROM audit_log WHERE subject LIKE 'desk%'")
    assert len(again) == 200
    assert len({row["tx"] for row in again}) == 2


async def test_a_read_that_cannot_be_logged_is_not_answered(migrated_url: str) -> None:
    """A hub pointed at a read-only server (a replica) shows no personal data."""
    read_only = await asyncpg.create_pool(
        migrated_url,
        min_size=1,
        max_size=1,
        server_settings={"default_transaction_read_only": "on"},
    )
    try:
        query = '{ bills(prefix: "lost", count: 3) { number payer } }'
        result = await SCHEMA.execute(query, context_value=context(read_only, "req-lost"))
    finally:
        await read_only.close()
    assert result.data == {"bills": [{"number": f"lost{n:04d}", "payer": None} for n in range(3)]}
    assert result.errors and len(result.errors) == 3
    assert "read-only transaction" in str(result.errors[0])


# Append-only, and pruned only when old


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET subject = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_the_log_cannot_be_changed(pool: asyncpg.Pool, statement: str) -> None:
    before = await pool.fetchval("SELECT count(*) FROM audit_log")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute(statement)
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == before


async def test_prune_deletes_old_rows_in_batches(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    before = now - timedelta(days=800)
    await pool.execute(
        "INSERT INTO audit_log (at, action, subject_type, subject, fields)"
        " SELECT $1::timestamptz - n * interval '1 second', 'payer.read', 'tax_bill', 'old',"
        " '{name}' FROM generate_series(1, $2) AS n",
        before,
        audit.PRUNE_BATCH + 5,
    )
    await insert_at(pool, before + timedelta(seconds=1), "kept")
    old = await pool.fetchval("SELECT count(*) FROM audit_log WHERE at < $1", before)
    assert old >= audit.PRUNE_BATCH + 5

    assert await audit.prune(pool, before) == old
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE at < $1", before) == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE subject = 'kept'") == 1


async def test_prune_keeps_two_years(pool: asyncpg.Pool) -> None:
    young = datetime.now(UTC) - timedelta(days=700)
    await insert_at(pool, young - timedelta(days=1), "young")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="two years"):
        await audit.prune(pool, young)
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE subject = 'young'") == 1


async def test_only_prune_may_delete(pool: asyncpg.Pool) -> None:
    """The permission prune takes lasts its own DELETE, not the rest of the transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT audit_prune(now() - interval '3 years')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM audit_log")


# The commands


def ieum(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IEUM, *args],
        env=os.environ | {"IEUM_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_export_command(pool: asyncpg.Pool, migrated_url: str, tmp_path: Path) -> None:
    # Dates are KST days: 3월 1일 runs from 2월 29일 15:00 UTC to 3월 1일 15:00 UTC.
    await insert_at(pool, datetime(2024, 2, 29, 14, 59, tzinfo=UTC), "cli-before")
    await insert_at(pool, datetime(2024, 2, 29, 15, tzinfo=UTC), "cli-in")
    await insert_at(pool, datetime(2024, 3, 1, 15, tzinfo=UTC), "cli-after")
    output = tmp_path / "audit.jsonl"
    done = ieum(
        migrated_url, "audit", "export", "--since", "2024-03-01", "--until", "2024-03-02",
        "--format", "jsonl", "--output", str(output),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["subject"] for row in rows] == ["cli-in"]
    assert rows[0]["at"] == "2024-03-01T00:00:00+09:00"
    assert "exported 1 rows" in done.stderr

    as_csv = ieum(migrated_url, "audit", "export", "--since", "2024-03-01T15:00Z")
    assert as_csv.returncode == 0, as_csv.stderr
    subjects = [row["subject"] for row in csv.DictReader(io.StringIO(as_csv.stdout))]
    assert "cli-after" in subjects and "cli-in" not in subjects


def test_prune_command(migrated_url: str) -> None:
    last_year = (datetime.now(UTC) - timedelta(days=365)).date().isoformat()
    refused = ieum(migrated_url, "audit", "prune", "--before", last_year)
    assert refused.returncode == 2
    assert "kept two years" in refused.stderr
    long_ago = (datetime.now(UTC) - timedelta(days=800)).date().isoformat()
    pruned = ieum(migrated_url, "audit", "prune", "--before", long_ago)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("deleted ")
    bad = ieum(migrated_url, "audit", "export", "--since", "last week")
    assert bad.returncode == 2 and "not a date or ISO time" in bad.stderr
    assert "audit" in ieum(migrated_url, "--help").stdout
