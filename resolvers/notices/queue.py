"""The delivery queue in PostgreSQL: claim what is due, settle what was tried.

A round claims up to `batch` due deliveries with FOR UPDATE SKIP LOCKED and leases them
(moves `next_attempt_at` a lease ahead) in one short transaction, so several workers share
the queue and a worker that dies leaves its deliveries due again when the lease ends: at
least once, with the same event id. A citizen's deliveries through an app go one at a
time in acceptance order: a delivery is claimable only while no earlier one of the same
citizen and app is still pending (one held for quiet hours does not count, so an urgent
notice overtakes it). A delivery whose choice was withdrawn is not sent.

Settling a failure schedules the next attempt (doubling, with jitter, up to a longest
wait) until the retry window since release has passed; then the delivery is dead-lettered
(`failed`, with the last reason) for the app's operator to see and redrive. Agencies'
notices get a report row (delivered or failed) in the same statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from resolvers.notices.store import CHANNEL


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery to send now, with what its webhook body needs."""

    delivery_id: int
    event_id: uuid.UUID
    notice_id: uuid.UUID
    client_id: str
    user_id: uuid.UUID
    type_code: str
    attempts: int
    agency: str
    agency_notice_id: str | None
    params: dict[str, Any]
    title_ko: str
    title_en: str
    body_ko: str
    body_en: str
    urgent: bool
    payment_url: str | None
    accepted_at: datetime
    payment: dict[str, Any] | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    ok: bool
    error: str = ""
    final: bool = False  # a failure no retry can mend (the notice expired)


@dataclass(frozen=True, slots=True)
class Retry:
    """The retry schedule: first wait, longest wait, and how long before giving up."""

    first: timedelta
    longest: timedelta
    window: timedelta


_CLAIM = """
WITH due AS (
    SELECT d.delivery_id FROM notice_deliveries d
     WHERE d.status = 'pending' AND d.next_attempt_at <= now()
       AND NOT EXISTS (
           SELECT 1 FROM notice_deliveries e
            WHERE e.client_id = d.client_id AND e.user_id = d.user_id
              AND e.status = 'pending' AND e.delivery_id < d.delivery_id
              AND e.release_at <= now())
       AND d.client_id <> ALL($3::text[])
     ORDER BY d.next_attempt_at, d.delivery_id
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE notice_deliveries d
       SET attempts = d.attempts + 1, next_attempt_at = now() + $2::interval
      FROM due WHERE d.delivery_id = due.delivery_id
    RETURNING d.*
)
SELECT l.delivery_id, l.event_id, l.notice_id, l.client_id, l.user_id, l.type_code,
       l.attempts, n.agency, n.agency_notice_id, n.params, n.title_ko, n.title_en,
       n.body_ko, n.body_en, n.urgent, n.payment_url, n.accepted_at, n.payment, n.expires_at,
       EXISTS (SELECT 1 FROM notice_choices c
                WHERE c.user_id = l.user_id AND c.client_id = l.client_id
                  AND c.type_code = l.type_code AND c.withdrawn_at IS NULL) AS chosen
  FROM leased l JOIN notices n USING (notice_id)
 ORDER BY l.delivery_id
"""

_SETTLE = """
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::bool[], $3::text[], $7::bool[])
                   AS r(delivery_id, ok, error, final)
), settled AS (
    UPDATE notice_deliveries d SET
        status = CASE WHEN r.ok THEN 'delivered'
                      WHEN r.final OR now() - d.release_at >= $4::interval THEN 'failed'
                      ELSE 'pending' END,
        delivered_at = CASE WHEN r.ok THEN now() END,
        failed_at = CASE WHEN NOT r.ok AND (r.final OR now() - d.release_at >= $4::interval)
                         THEN now() END,
        last_error = CASE WHEN r.ok THEN NULL ELSE r.error END,
        next_attempt_at = CASE WHEN r.ok THEN d.next_attempt_at ELSE now()
            + least($5::interval * power(2, greatest(d.attempts - 1, 0)), $6::interval)
            * (0.8 + random() * 0.4) END
      FROM r WHERE d.delivery_id = r.delivery_id AND d.status = 'pending'
    RETURNING d.notice_id, d.event_id, d.status, d.last_error
)
INSERT INTO notice_reports (notice_id, event_id, kind, detail, occurred_at)
SELECT s.notice_id, s.event_id, s.status, coalesce(s.last_error, ''), now()
  FROM settled s JOIN notices n USING (notice_id)
 WHERE n.source = 'agency' AND s.status IN ('delivered', 'failed')
    ON CONFLICT (event_id, kind) DO NOTHING
"""


async def claim(
    conn: asyncpg.Connection, batch: int, lease: timedelta, skip: Sequence[str] = ()
) -> tuple[list[Claimed], int]:
    """Lease up to `batch` due deliveries, none of the apps in `skip`; those whose choice
    was withdrawn are closed instead. Returns the deliveries to send and how many were
    withdrawn."""
    async with conn.transaction():
        rows = await conn.fetch(_CLAIM, batch, lease, list(skip))
        withdrawn = [row["delivery_id"] for row in rows if not row["chosen"]]
        if withdrawn:
            await conn.execute(
                "UPDATE notice_deliveries SET status = 'withdrawn', last_error ="
                " 'the citizen withdrew this choice' WHERE delivery_id = ANY($1::bigint[])",
                withdrawn,
            )
    claimed = [
        Claimed(**{k: v for k, v in row.items() if k != "chosen"}) for row in rows if row["chosen"]
    ]
    return claimed, len(withdrawn)


async def settle(conn: asyncpg.Connection, outcomes: Sequence[Outcome], retry: Retry) -> None:
    """Record the attempts' outcomes (one statement for the whole batch)."""
    if not outcomes:
        return
    await conn.execute(
        _SETTLE,
        [o.delivery_id for o in outcomes],
        [o.ok for o in outcomes],
        [o.error[:500] for o in outcomes],
        retry.window,
        retry.first,
        retry.longest,
        [o.final for o in outcomes],
    )


async def next_due(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    """When the earliest pending delivery is due (None: nothing pending)."""
    found: datetime | None = await conn.fetchval(
        "SELECT min(next_attempt_at) FROM notice_deliveries WHERE status = 'pending'"
    )
    return found


@dataclass(frozen=True, slots=True)
class DeadLetter:
    delivery_id: int
    event_id: uuid.UUID
    notice_id: uuid.UUID
    user_id: uuid.UUID
    type_code: str
    title_ko: str
    attempts: int
    last_error: str | None
    release_at: datetime
    failed_at: datetime


async def dead_letters(
    conn: asyncpg.Connection | asyncpg.Pool,
    client_id: str,
    limit: int,
    after: tuple[datetime, int] | None = None,
) -> list[DeadLetter]:
    """The app's deliveries that ran out of retries, oldest first; `after` one's
    (failed_at, delivery_id): only those that failed later (keyset paging)."""
    rows = await conn.fetch(
        "SELECT d.delivery_id, d.event_id, d.notice_id, d.user_id, d.type_code, n.title_ko,"
        " d.attempts, d.last_error, d.release_at, d.failed_at FROM notice_deliveries d"
        " JOIN notices n USING (notice_id)"
        " WHERE d.client_id = $1 AND d.status = 'failed'"
        " AND ($2::timestamptz IS NULL OR (d.failed_at, d.delivery_id) > ($2, $3::bigint))"
        " ORDER BY d.failed_at, d.delivery_id LIMIT $4",
        client_id,
        *(after or (None, None)),
        limit,
    )
    return [DeadLetter(**dict(row)) for row in rows]


async def redrive(
    conn: asyncpg.Connection | asyncpg.Pool, client_id: str, event_ids: Sequence[uuid.UUID] | None
) -> int:
    """Queue the app's dead letters again (None: all of them), with a fresh retry window
    and their event ids unchanged. Safe to repeat; how many were queued."""
    count: int = await conn.fetchval(
        "WITH again AS (UPDATE notice_deliveries SET status = 'pending', attempts = 0,"
        " release_at = now(), next_attempt_at = now(), failed_at = NULL"
        " WHERE client_id = $1 AND status = 'failed'"
        " AND ($2::uuid[] IS NULL OR event_id = ANY($2)) RETURNING 1)"
        " SELECT count(*) FROM again",
        client_id,
        None if event_ids is None else list(event_ids),
    )
    if count:
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return count
