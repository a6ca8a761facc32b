"""Train bookings as the hub keeps them: one row per booking, moved through its states by
guarded updates (`WHERE status = …`), so two processes finishing the same booking move it
once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
OPEN = ("holding", "held", "paying", "refunding")


@dataclass(frozen=True)
class Booking:
    booking_id: uuid.UUID
    client_id: str
    user_id: uuid.UUID
    idempotency_key: str
    request: dict[str, Any]
    operator: str
    train_no: str
    grade: str
    run_date: date
    dep_station: str
    arr_station: str
    departs_at: datetime
    arrives_at: datetime
    seat_class: str
    passengers: int
    status: str
    pnr: str | None
    seats: list[dict[str, str]]
    amount: int | None
    pay_by: datetime | None
    payment_id: uuid.UUID | None
    order_id: str | None
    sale_no: str | None
    cancel_fee: int
    refunded_amount: int
    failure_code: str | None
    failure: str | None
    created_at: datetime
    updated_at: datetime
    delay_minutes: int = 0  # the train's expected delay, as the operator last said
    train_cancelled_at: datetime | None = None  # when the train was seen cancelled
    changed_at: datetime | None = None  # when a delay or cancellation was last seen

    @classmethod
    def of(cls, row: asyncpg.Record) -> Booking:
        return cls(**dict(row))  # jsonb arrives decoded (hub.core.db's codec)


@dataclass(frozen=True)
class NewBooking:
    client_id: str
    user_id: uuid.UUID
    idempotency_key: str
    request: dict[str, Any]
    operator: str
    train_no: str
    grade: str
    run_date: date
    dep_station: str
    arr_station: str
    departs_at: datetime
    arrives_at: datetime
    seat_class: str
    passengers: int


async def open_booking(conn: Conn, new: NewBooking) -> tuple[Booking, bool]:
    """Store a booking as `holding` before the hold is sent; (the booking, True if new).
    The same client and key return the booking they made first, whatever was asked."""
    row = await conn.fetchrow(
        """
        INSERT INTO mobility_bookings (
            booking_id, client_id, user_id, idempotency_key, request, operator, train_no,
            grade, run_date, dep_station, arr_station, departs_at, arrives_at, seat_class,
            passengers, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'holding')
        ON CONFLICT (client_id, idempotency_key) DO NOTHING
        RETURNING *
        """,
        uuid.uuid4(),
        new.client_id,
        new.user_id,
        new.idempotency_key,
        new.request,
        new.operator,
        new.train_no,
        new.grade,
        new.run_date,
        new.dep_station,
        new.arr_station,
        new.departs_at,
        new.arrives_at,
        new.seat_class,
        new.passengers,
    )
    if row is not None:
        return Booking.of(row), True
    existing = await conn.fetchrow(
        "SELECT * FROM mobility_bookings WHERE client_id = $1 AND idempotency_key = $2",
        new.client_id,
        new.idempotency_key,
    )
    assert existing is not None
    return Booking.of(existing), False


async def by_id(conn: Conn, booking_id: uuid.UUID) -> Booking | None:
    row = await conn.fetchrow("SELECT * FROM mobility_bookings WHERE booking_id = $1", booking_id)
    return Booking.of(row) if row else None


async def by_payment(conn: Conn, payment_id: uuid.UUID) -> Booking | None:
    row = await conn.fetchrow("SELECT * FROM mobility_bookings WHERE payment_id = $1", payment_id)
    return Booking.of(row) if row else None


async def of_citizen(
    conn: Conn,
    client_id: str,
    user_id: uuid.UUID,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Booking]:
    """A citizen's bookings made through one app, newest first; `after` a booking's
    (created_at, booking_id): only older ones (keyset paging, the id breaks ties)."""
    rows = await conn.fetch(
        """
        SELECT * FROM mobility_bookings
        WHERE client_id = $1 AND user_id = $2
          AND ($3::timestamptz IS NULL OR (created_at, booking_id) < ($3, $4::uuid))
        ORDER BY created_at DESC, booking_id DESC
        LIMIT $5
        """,
        client_id,
        user_id,
        *(after or (None, None)),
        limit,
    )
    return [Booking.of(row) for row in rows]


async def unfinished(conn: Conn, stale_before: datetime, limit: int = 200) -> list[Booking]:
    """Bookings a request left mid-way: holds and confirms unanswered since `stale_before`,
    every held booking (its hold may have lapsed), refunds under way."""
    rows = await conn.fetch(
        """
        SELECT * FROM mobility_bookings
        WHERE status IN ('held', 'refunding')
           OR (status IN ('holding', 'paying') AND updated_at < $1)
        ORDER BY updated_at
        LIMIT $2
        """,
        stale_before,
        limit,
    )
    return [Booking.of(row) for row in rows]


async def ticketed_departing(
    conn: Conn,
    now: datetime,
    until: datetime,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 500,
) -> list[Booking]:
    """Ticketed bookings whose train leaves before `until` and has not arrived by `now`
    (a late train is still followed after its scheduled departure), by departure; a page
    after `after` (departs_at, booking_id)."""
    start = after or (now - timedelta(days=2), uuid.UUID(int=0))
    rows = await conn.fetch(
        """
        SELECT * FROM mobility_bookings
        WHERE status = 'ticketed' AND departs_at < $2 AND arrives_at > $1
          AND (departs_at, booking_id) > ($3, $4)
        ORDER BY departs_at, booking_id
        LIMIT $5
        """,
        now,
        until,
        *start,
        limit,
    )
    return [Booking.of(row) for row in rows]


@dataclass(frozen=True)
class TrainChange:
    """A booked train's delay or cancellation as the hub last saw it (notices polls it)."""

    booking_id: uuid.UUID
    user_id: uuid.UUID
    client_id: str
    train_no: str
    grade: str
    run_date: date
    dep_station: str
    arr_station: str
    departs_at: datetime
    delay_minutes: int
    cancelled: bool
    changed_at: datetime


async def changed_since(conn: Conn, after: datetime, limit: int = 500) -> list[TrainChange]:
    """Bookings whose train changed after `after`, oldest change first. A change is stored
    with the time it was seen, so a caller that reads as they arrive reads again a little
    behind its cursor."""
    rows = await conn.fetch(
        """
        SELECT booking_id, user_id, client_id, train_no, grade, run_date, dep_station,
               arr_station, departs_at, delay_minutes,
               train_cancelled_at IS NOT NULL AS cancelled, changed_at
        FROM mobility_bookings
        WHERE changed_at > $1
        ORDER BY changed_at, booking_id
        LIMIT $2
        """,
        after,
        limit,
    )
    return [TrainChange(**dict(row)) for row in rows]


async def move(
    conn: Conn,
    booking_id: uuid.UUID,
    from_status: Sequence[str],
    to_status: str,
    **changes: Any,
) -> Booking | None:
    """Set `to_status` (and `changes`) if the booking is in one of `from_status`; None when
    it is not (another process moved it first)."""
    columns = _settable(changes)
    values = list(changes.values())
    sets = "".join(f", {column} = ${i + 4}" for i, column in enumerate(columns))
    row = await conn.fetchrow(
        f"""
        UPDATE mobility_bookings SET status = $3, updated_at = now(){sets}
        WHERE booking_id = $1 AND status = ANY($2::text[])
        RETURNING *
        """,
        booking_id,
        list(from_status),
        to_status,
        *values,
    )
    return Booking.of(row) if row else None


async def touch(conn: Conn, booking_id: uuid.UUID, **changes: Any) -> Booking | None:
    """Record facts (payment ids …) without changing the status."""
    columns = _settable(changes)
    sets = ", ".join(f"{column} = ${i + 2}" for i, column in enumerate(columns))
    row = await conn.fetchrow(
        f"UPDATE mobility_bookings SET {sets}, updated_at = now() WHERE booking_id = $1"
        " RETURNING *",
        booking_id,
        *changes.values(),
    )
    return Booking.of(row) if row else None


# What a step may set: the column names go into the statement's text, so only these.
_SETTABLE = frozenset({
    "pnr", "seats", "amount", "pay_by", "payment_id", "order_id", "sale_no", "cancel_fee",
    "refunded_amount", "failure_code", "failure", "delay_minutes", "train_cancelled_at",
    "changed_at",
})  # fmt: skip


def _settable(changes: dict[str, Any]) -> list[str]:
    unknown = set(changes) - _SETTABLE
    if unknown:
        raise ValueError(f"not a settable booking column: {', '.join(sorted(unknown))}")
    return list(changes)
