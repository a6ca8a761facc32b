"""The outbox of reports to agencies: a notice delivered, failed or read.

Rows are written in the transaction that changes the delivery (queue.settle,
inbox.acknowledge), then sent by the worker through the agency adapter, a batch per
round: claimed with FOR UPDATE SKIP LOCKED and marked sent in the same transaction once
the agency answered, so a report is sent at least once and never made twice. A failed
send waits (doubling up to an hour) and is tried again, for as long as it takes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

LONGEST_WAIT_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Pending:
    report_id: int
    agency: str
    org_code: str | None  # the agency's 행정표준코드, as its system signs in
    agency_notice_id: str
    event_id: uuid.UUID | None  # None: the notice reached nobody
    client_id: str | None
    kind: str  # delivered, failed or read
    detail: str
    occurred_at: datetime
    attempts: int


_CLAIM = """
SELECT r.report_id, n.agency, a.org_code, n.agency_notice_id, r.event_id, d.client_id, r.kind,
       r.detail, r.occurred_at, r.attempts
  FROM notice_reports r JOIN notices n USING (notice_id)
  JOIN notice_agencies a ON a.agency = n.agency
  LEFT JOIN notice_deliveries d ON d.event_id = r.event_id
 WHERE r.sent_at IS NULL AND r.next_attempt_at <= now()
 ORDER BY r.report_id
 LIMIT $1
   FOR UPDATE OF r SKIP LOCKED
"""

Send = Callable[[Sequence[Pending]], Awaitable[None]]


class AgencyUnavailable(Exception):
    """The agency did not take the reports (refused, down or too slow): try again later."""


async def send_due(conn: asyncpg.Connection, batch: int, send: Send) -> int:
    """Send one batch of due reports with `send` (which raises AgencyUnavailable when the
    agency did not take them); how many went out."""
    async with conn.transaction():
        rows = await conn.fetch(_CLAIM, batch)
        if not rows:
            return 0
        pending = [Pending(**dict(row)) for row in rows]
        ids = [p.report_id for p in pending]
        try:
            await send(pending)
        except AgencyUnavailable as exc:
            await conn.execute(
                "UPDATE notice_reports SET attempts = attempts + 1, last_error = $2,"
                " next_attempt_at = now() + least(power(2, attempts), $3) * interval '1 second'"
                " WHERE report_id = ANY($1::bigint[])",
                ids,
                repr(exc)[:500],
                LONGEST_WAIT_SECONDS,
            )
            return 0
        await conn.execute(
            "UPDATE notice_reports SET sent_at = now(), attempts = attempts + 1,"
            " last_error = NULL WHERE report_id = ANY($1::bigint[])",
            ids,
        )
    return len(pending)


async def unsent(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    found: int = await conn.fetchval("SELECT count(*) FROM notice_reports WHERE sent_at IS NULL")
    return found
