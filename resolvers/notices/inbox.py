"""What a citizen received through an app, their read receipts, and agencies' reports.

The inbox is the app's view of a citizen's notices, webhook or not: every notice released
to that citizen through that app (held ones appear when their quiet hours end; withdrawn
ones never), in the order they were released: the order a follower gets them in.
Acknowledging marks a notice read once and, for an agency's notice, queues a read report
to the agency in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

from resolvers.notices import errors

# A notice's place in the inbox: when it was released to the citizen, then its delivery id.
# Release order, not acceptance order: a notice held for quiet hours comes into the inbox
# (and to its followers) when its morning comes, after the urgent ones accepted since.
Place: TypeAlias = tuple[datetime, int]


@dataclass(frozen=True, slots=True)
class Received:
    delivery_id: int
    event_id: uuid.UUID
    notice_id: uuid.UUID
    type_code: str
    agency: str
    title_ko: str
    title_en: str
    body_ko: str
    body_en: str
    urgent: bool
    payment_url: str | None
    params: dict[str, Any]
    accepted_at: datetime
    status: str
    delivered_at: datetime | None
    read_at: datetime | None
    release_at: datetime

    @property
    def place(self) -> Place:
        return (self.release_at, self.delivery_id)


START: Place = (datetime(1970, 1, 1, tzinfo=UTC), 0)
# How long after its release a notice may still come into sight: its release time is set
# before its transaction commits (a fan-out to many citizens takes seconds), so a follower
# looks back this far for ones it has not sent yet.
LOOKBACK = timedelta(seconds=60)

_RECEIVED = (
    "SELECT d.delivery_id, d.event_id, d.notice_id, d.type_code, n.agency, n.title_ko,"
    " n.title_en, n.body_ko, n.body_en, n.urgent, n.payment_url, n.params, n.accepted_at,"
    " d.status, d.delivered_at, d.read_at, d.release_at"
    " FROM notice_deliveries d JOIN notices n USING (notice_id)"
)
# Released, and not withdrawn: one still pending whose choice the citizen has withdrawn is
# not shown (the worker marks it withdrawn only when it next picks it up, up to an hour
# later for one being retried).
_SHOWN = (
    " WHERE d.user_id = $1 AND d.client_id = $2 AND d.status <> 'withdrawn'"
    " AND d.release_at <= now()"
    " AND (d.status <> 'pending' OR EXISTS (SELECT 1 FROM notice_choices c"
    " WHERE c.user_id = d.user_id AND c.client_id = d.client_id"
    " AND c.type_code = d.type_code AND c.withdrawn_at IS NULL))"
)


async def inbox(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: uuid.UUID,
    client_id: str,
    *,
    before: Place | None = None,
    unread_only: bool = False,
    limit: int = 50,
) -> list[Received]:
    """Newest first (by release); `before` a notice's place: only those released earlier,
    the next page (keyset paging)."""
    rows = await conn.fetch(
        _RECEIVED + _SHOWN + " AND ($3::timestamptz IS NULL"
        " OR (d.release_at, d.delivery_id) < ($3, $4::bigint))"
        " AND (NOT $5 OR d.read_at IS NULL)"
        " ORDER BY d.release_at DESC, d.delivery_id DESC LIMIT $6",
        user_id,
        client_id,
        *(before or (None, None)),
        unread_only,
        limit,
    )
    return [Received(**dict(row)) for row in rows]


async def later(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: uuid.UUID,
    client_id: str,
    after: Place,
    *,
    sent: Sequence[int] = (),
    limit: int = 100,
) -> list[Received]:
    """Those released after `after` (a place), oldest first, but for the delivery ids
    `sent`: what a follower of the inbox has not seen yet."""
    rows = await conn.fetch(
        _RECEIVED + _SHOWN + " AND (d.release_at, d.delivery_id) > ($3, $4::bigint)"
        " AND NOT d.delivery_id = ANY($5::bigint[])"
        " ORDER BY d.release_at, d.delivery_id LIMIT $6",
        user_id,
        client_id,
        *after,
        list(sent),
        limit,
    )
    return [Received(**dict(row)) for row in rows]


async def latest(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, client_id: str
) -> Place:
    """The place of the citizen's newest notice in the inbox through the app (START:
    none yet): where a follower from now starts."""
    row = await conn.fetchrow(
        "SELECT d.release_at, d.delivery_id FROM notice_deliveries d"
        + _SHOWN
        + " ORDER BY d.release_at DESC, d.delivery_id DESC LIMIT 1",
        user_id,
        client_id,
    )
    return START if row is None else (row["release_at"], row["delivery_id"])


class Follower:
    """Follows a citizen's inbox through an app: each notice once, as it is released,
    none at or before the place it started after. A notice whose transaction committed
    after a later one was sent still comes (out of order) if it is within LOOKBACK of the
    newest sent; the ids sent within that span are remembered to send none twice."""

    def __init__(self, after: Place) -> None:
        self.after = after
        self.newest = after
        self.sent: dict[int, datetime] = {}

    async def next(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        user_id: uuid.UUID,
        client_id: str,
        limit: int = 100,
    ) -> list[Received]:
        """The notices released since the last call (at most `limit`), oldest first."""
        floor = max(self.after, (self.newest[0] - LOOKBACK, 0))
        found = await later(conn, user_id, client_id, floor, sent=list(self.sent), limit=limit)
        for notice in found:
            self.sent[notice.delivery_id] = notice.release_at
            self.newest = max(self.newest, notice.place)
        horizon = self.newest[0] - LOOKBACK
        self.sent = {d: at for d, at in self.sent.items() if at >= horizon}
        return found


async def acknowledge(
    pool: asyncpg.Pool, user_id: uuid.UUID, client_id: str, notice_id: uuid.UUID
) -> Received:
    """The citizen read the notice in the app: marked once; an agency hears of it."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE notice_deliveries SET read_at = coalesce(read_at, now())"
            " WHERE notice_id = $1 AND user_id = $2 AND client_id = $3 AND status <> 'withdrawn'"
            " RETURNING delivery_id, event_id, notice_id, read_at",
            notice_id,
            user_id,
            client_id,
        )
        if row is None:
            raise errors.NoticeNotFound("no such notice of yours through this app")
        await conn.execute(
            "INSERT INTO notice_reports (notice_id, event_id, kind, occurred_at)"
            " SELECT n.notice_id, $2, 'read', $3 FROM notices n"
            " WHERE n.notice_id = $1 AND n.source = 'agency'"
            " ON CONFLICT (event_id, kind) DO NOTHING",
            row["notice_id"],
            row["event_id"],
            row["read_at"],
        )
        found = await conn.fetchrow(_RECEIVED + " WHERE d.delivery_id = $1", row["delivery_id"])
    return Received(**dict(found))


@dataclass(frozen=True, slots=True)
class Report:
    """How far a notice got: its deliveries by state, and how many were read."""

    notice_id: uuid.UUID
    agency: str
    agency_notice_id: str | None
    type_code: str
    accepted_at: datetime
    recipients: int
    pending: int
    delivered: int
    failed: int
    withdrawn: int
    read: int
    failures: list[str]  # distinct reasons of the failed ones


_REPORT = """
SELECT n.notice_id, n.agency, n.agency_notice_id, n.type_code, n.accepted_at, n.recipients,
       count(*) FILTER (WHERE d.status = 'pending') AS pending,
       count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
       count(*) FILTER (WHERE d.status = 'failed') AS failed,
       count(*) FILTER (WHERE d.status = 'withdrawn') AS withdrawn,
       count(d.read_at) AS read,
       coalesce(array_agg(DISTINCT d.last_error) FILTER (WHERE d.status = 'failed'), '{}')
           AS failures
  FROM notices n LEFT JOIN notice_deliveries d USING (notice_id)
"""


async def reports(
    conn: asyncpg.Connection | asyncpg.Pool,
    agency: str | None,
    *,
    agency_notice_id: str | None = None,
    since: datetime | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Report]:
    """Reports of an agency's notices (None: every agency's), newest first; `after` a
    notice's (accepted_at, notice_id): only older ones (keyset paging)."""
    rows = await conn.fetch(
        _REPORT + " WHERE ($1::text IS NULL OR n.agency = $1)"
        " AND ($2::text IS NULL OR n.agency_notice_id = $2)"
        " AND ($3::timestamptz IS NULL OR n.accepted_at >= $3)"
        " AND ($4::timestamptz IS NULL OR (n.accepted_at, n.notice_id) < ($4, $5::uuid))"
        " GROUP BY n.notice_id ORDER BY n.accepted_at DESC, n.notice_id DESC LIMIT $6",
        agency,
        agency_notice_id,
        since,
        *(after or (None, None)),
        limit,
    )
    return [Report(**dict(row)) for row in rows]
