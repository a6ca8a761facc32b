"""The audit log: every read of a citizen's personal data, for the city to export.

A read is logged before its data leaves: a resolver that shows personal fields awaits
`read` first, so if the log cannot be written the read fails and nothing is shown that
the log does not hold. Reads made together in one request (a list of 100 bills, each
showing its payer) are one INSERT:

    @strawberry.field
    async def payer(self, info: Info) -> Payer:
        await audit.read(
            info, action="payer.read", subject_type="tax_bill",
            subjects=[self.number], fields=["name"],
        )
        return Payer(name=self.payer_name)

Outside GraphQL (a printed receipt, a command), `record` writes the rows itself.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TextIO

import asyncpg
from strawberry.dataloader import DataLoader

from hub.core.caller import Caller
from hub.core.context import Info

# Times are read and written in Korea's time, the city's: it has no daylight saving.
KST = timezone(timedelta(hours=9), "KST")
COLUMNS = (
    "id", "at", "client_id", "user_id", "client_ip", "action", "subject_type", "subject", "fields",
    "operation", "request_id",
)  # fmt: skip
REQUEST_ID_MAX = 200  # the header comes from the client: keep what a log line needs
PRUNE_BATCH = 10_000  # rows per DELETE, well within the pool's statement time limit


@dataclass(frozen=True)
class AuditEntry:
    """One row to write: who read which fields of whose data, from where, in what request."""

    client_id: str | None
    user_id: str | None
    client_ip: str | None
    action: str
    subject_type: str
    subject: str
    fields: tuple[str, ...]
    operation: str | None
    request_id: str | None = None


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    caller: Caller,
    *,
    action: str,
    subject_type: str,
    subjects: Sequence[str],
    fields: Sequence[str],
    operation: str | None,
    client_ip: str | None = None,
    request_id: str | None = None,
) -> None:
    """Log that `caller` was shown `fields` of each of `subjects`: one row each, one INSERT."""
    await _insert(
        conn,
        [
            AuditEntry(
                caller.client_id,
                caller.user_id,
                client_ip,
                action,
                subject_type,
                subject,
                tuple(fields),
                operation,
                request_id,
            )
            for subject in subjects
        ],
    )


def audit_loader(pool: asyncpg.Pool) -> DataLoader[AuditEntry, None]:
    """A `Context.loader` factory: the entries loaded in one tick are one INSERT.

    Not cached: a WebSocket keeps its context for every operation on it, and each of
    those reads is logged again. The same entry twice in one batch is written once."""

    async def write(entries: Sequence[AuditEntry]) -> list[None]:
        await _insert(pool, list(dict.fromkeys(entries)))
        return [None] * len(entries)

    return DataLoader(load_fn=write, cache=False)


async def read(
    info: Info,
    *,
    action: str,
    subject_type: str,
    subjects: Sequence[str],
    fields: Sequence[str],
) -> None:
    """Log this request's read of `subjects`, batched with its other reads; returns once
    the rows are written, and raises if they could not be."""
    context = info.context
    name = info.operation.name
    client = context.connection.client
    request_id = context.connection.headers.get("x-request-id")
    entries = [
        AuditEntry(
            context.caller.client_id,
            context.caller.user_id,
            client.host if client else None,
            action,
            subject_type,
            subject,
            tuple(fields),
            name.value if name else None,
            request_id[:REQUEST_ID_MAX] if request_id else None,
        )
        for subject in subjects
    ]
    await context.loader(audit_loader).load_many(entries)


async def _insert(conn: asyncpg.Connection | asyncpg.Pool, entries: list[AuditEntry]) -> None:
    """Many rows in one statement. The JSON goes as text, so a connection without the
    pool's jsonb codec takes it the same way."""
    if not entries:
        return
    await conn.execute(
        "INSERT INTO audit_log (client_id, user_id, client_ip, action, subject_type, subject,"
        " fields, operation, request_id) SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS e("
        "client_id text, user_id uuid, client_ip text, action text, subject_type text,"
        " subject text, fields text[], operation text, request_id text)",
        json.dumps([asdict(entry) for entry in entries], ensure_ascii=False),
    )


async def export(
    pool: asyncpg.Pool,
    since: datetime,
    until: datetime | None,
    format: Literal["csv", "jsonl"],
    out: TextIO,
) -> int:
    """Write the rows logged from `since` until before `until` (None: up to now) to `out`,
    oldest first, read through a cursor so a year of log never sits in memory. Returns
    how many rows were written."""
    if format == "csv":
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
    count = 0
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        rows = conn.cursor(
            f"SELECT {', '.join(COLUMNS)} FROM audit_log"
            " WHERE at >= $1 AND ($2::timestamptz IS NULL OR at < $2) ORDER BY at, id",
            since,
            until,
            prefetch=1000,
        )
        async for row in rows:
            fields = _exported(row)
            if format == "csv":
                writer.writerow(
                    " ".join(value) if isinstance(value, list) else value
                    for value in fields.values()
                )
            else:
                out.write(json.dumps(fields, ensure_ascii=False) + "\n")
            count += 1
    return count


def _exported(row: asyncpg.Record) -> dict[str, Any]:
    fields = dict(row)
    fields["at"] = row["at"].astimezone(KST).isoformat()
    fields["user_id"] = str(row["user_id"]) if row["user_id"] else None
    fields["fields"] = list(row["fields"])
    return fields


async def prune(pool: asyncpg.Pool, before: datetime) -> int:
    """Delete the rows logged before `before`, a batch at a time; returns how many.
    PostgreSQL refuses (InvalidParameterValueError) to delete rows younger than two
    years (migrations/0008_auth_audit.sql says why)."""
    total = 0
    while True:
        deleted: int = await pool.fetchval("SELECT audit_prune($1, $2)", before, PRUNE_BATCH)
        total += deleted
        if deleted < PRUNE_BATCH:
            return total
