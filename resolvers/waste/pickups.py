"""Pickups of bins and every step of their state machine, in SQL:

    requested → paid → scheduled → collected | missed
    requested | paid | scheduled → cancelled

Each step is a conditional update on the current status, so a step run twice, or after
another process ran it, changes nothing and returns None. A pickup's money lives in the
payments domain (`payment_id`, `top_up_payment_id`); the steps here only record it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from resolvers.waste.registry import Owner

KST = ZoneInfo("Asia/Seoul")  # pickup days are Korean days
OPEN = ("requested", "paid", "scheduled")
ON_ROUTE = ("paid", "scheduled")
STATUSES = (*OPEN, "collected", "missed", "cancelled")


class Pickup(msgspec.Struct, frozen=True, kw_only=True):
    pickup_id: uuid.UUID
    bin_id: uuid.UUID
    site_id: uuid.UUID
    district_code: str
    status: str
    basis: str
    unit_price: int
    quoted_amount: int
    settled_amount: int | None
    payment_id: uuid.UUID | None
    top_up_payment_id: uuid.UUID | None
    pickup_day: date
    requested_by: str
    requested_user: uuid.UUID | None
    requested_at: datetime
    paid_at: datetime | None
    collected_at: datetime | None
    collector_id: str | None
    weight_kg: Decimal | None
    volume_litres: int | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    pickup_order_id: uuid.UUID | None  # the order it was requested and paid with, if any
    refund_id: uuid.UUID | None  # the refund asked for it once cancelled


class NewPickup(msgspec.Struct, frozen=True, kw_only=True):
    pickup_id: uuid.UUID
    bin_id: uuid.UUID
    site_id: uuid.UUID
    district_code: str
    basis: str
    unit_price: int
    quoted_amount: int
    pickup_day: date
    requested_by: str
    requested_user: uuid.UUID | None


def korea_today() -> date:
    return datetime.now(KST).date()


def _pickup(row: asyncpg.Record | None) -> Pickup | None:
    return None if row is None else Pickup(**dict(row))


def _pickups(rows: Sequence[asyncpg.Record]) -> list[Pickup]:
    return [Pickup(**dict(row)) for row in rows]


# Reading


async def by_id(conn: asyncpg.Connection | asyncpg.Pool, pickup_id: uuid.UUID) -> Pickup | None:
    return _pickup(
        await conn.fetchrow("SELECT * FROM waste_pickups WHERE pickup_id = $1", pickup_id)
    )


async def open_for(
    conn: asyncpg.Connection | asyncpg.Pool, bin_id: uuid.UUID, day: date
) -> Pickup | None:
    """The bin's pickup that day that is not over (at most one)."""
    row = await conn.fetchrow(
        "SELECT * FROM waste_pickups WHERE bin_id = $1 AND pickup_day = $2 AND status = ANY($3)",
        bin_id,
        day,
        list(OPEN),
    )
    return _pickup(row)


async def open_from(
    conn: asyncpg.Connection | asyncpg.Pool, bin_id: uuid.UUID, day: date
) -> list[Pickup]:
    """The bin's pickups not over on `day` or later, soonest first."""
    rows = await conn.fetch(
        "SELECT * FROM waste_pickups WHERE bin_id = $1 AND pickup_day >= $2"
        " AND status = ANY($3) ORDER BY pickup_day, requested_at",
        bin_id,
        day,
        list(OPEN),
    )
    return _pickups(rows)


async def owner_of(conn: asyncpg.Connection | asyncpg.Pool, pickup_id: uuid.UUID) -> Owner | None:
    """The business (app and citizen) whose site the pickup is at."""
    row = await conn.fetchrow(
        "SELECT g.owner_client, g.owner_user FROM waste_pickups p"
        " JOIN waste_sites s USING (site_id) JOIN waste_generators g USING (generator_id)"
        " WHERE p.pickup_id = $1",
        pickup_id,
    )
    return None if row is None else Owner(row["owner_client"], row["owner_user"])


async def listing(
    conn: asyncpg.Connection | asyncpg.Pool,
    owner: Owner | None,
    *,
    status: str | None = None,
    day: date | None = None,
    site_id: uuid.UUID | None = None,
    district_code: str | None = None,
    after: tuple[date, datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Pickup]:
    """The owner's pickups (None: everyone's), latest pickup day first, then latest
    requested (the id breaks ties); `after` is the (pickup_day, requested_at, pickup_id)
    of the page before's last."""
    on, at, last = after if after else (None, None, None)
    rows = await conn.fetch(
        "SELECT p.* FROM waste_pickups p JOIN waste_sites s USING (site_id)"
        " JOIN waste_generators g USING (generator_id)"
        " WHERE ($1::text IS NULL OR (g.owner_client = $1 AND g.owner_user IS NOT DISTINCT"
        " FROM $2)) AND ($3::text IS NULL OR p.status = $3)"
        " AND ($4::date IS NULL OR p.pickup_day = $4) AND ($5::uuid IS NULL OR p.site_id = $5)"
        " AND ($6::text IS NULL OR p.district_code = $6)"
        " AND ($8::date IS NULL"
        " OR (p.pickup_day, p.requested_at, p.pickup_id) < ($8, $9::timestamptz, $10::uuid))"
        " ORDER BY p.pickup_day DESC, p.requested_at DESC, p.pickup_id DESC LIMIT $7",
        owner.client_id if owner else None,
        owner.user_id if owner else None,
        status,
        day,
        site_id,
        district_code,
        limit,
        on,
        at,
        last,
    )
    return _pickups(rows)


async def pickups_for_day(
    conn: asyncpg.Connection | asyncpg.Pool,
    districts: Sequence[str],
    day: date,
    collector_id: str | None = None,
) -> list[Pickup]:
    """The paid pickups of `day` in these districts: what a collector's route visits (with
    `collector_id`, not those of sites given to another company)."""
    rows = await conn.fetch(
        "SELECT * FROM waste_pickups p WHERE district_code = ANY($1) AND pickup_day = $2"
        " AND status = ANY($3) AND ($4::text IS NULL OR NOT EXISTS ("
        "SELECT FROM waste_site_collectors a WHERE a.site_id = p.site_id"
        " AND a.collector_id <> $4)) ORDER BY site_id, bin_id",
        list(districts),
        day,
        list(ON_ROUTE),
        collector_id,
    )
    return _pickups(rows)


async def awaiting_payment(conn: asyncpg.Connection | asyncpg.Pool) -> list[Pickup]:
    """Requested pickups with a payment opened: the payment may have been confirmed since
    (a lost answer resolved later, a webhook)."""
    rows = await conn.fetch(
        "SELECT * FROM waste_pickups WHERE status = 'requested' AND payment_id IS NOT NULL"
        " ORDER BY requested_at"
    )
    return _pickups(rows)


async def cancelled_since(conn: asyncpg.Connection | asyncpg.Pool, since: datetime) -> list[Pickup]:
    """Pickups cancelled since `since` that had a payment and no refund asked yet: one
    confirmed after the cancel still has to be refunded."""
    rows = await conn.fetch(
        "SELECT * FROM waste_pickups WHERE status = 'cancelled' AND payment_id IS NOT NULL"
        " AND refund_id IS NULL AND cancelled_at >= $1 ORDER BY cancelled_at",
        since,
    )
    return _pickups(rows)


async def paid_with(conn: asyncpg.Connection | asyncpg.Pool, payment_id: uuid.UUID) -> list[Pickup]:
    """The pickups a payment is for: one, or those of a pickup order still on it."""
    rows = await conn.fetch(
        "SELECT * FROM waste_pickups WHERE payment_id = $1 ORDER BY pickup_id", payment_id
    )
    return _pickups(rows)


async def of_order(conn: asyncpg.Connection | asyncpg.Pool, order_id: uuid.UUID) -> list[Pickup]:
    """A pickup order's pickups, in the order of their bins' ids."""
    rows = await conn.fetch(
        "SELECT * FROM waste_pickups WHERE pickup_order_id = $1 ORDER BY bin_id", order_id
    )
    return _pickups(rows)


async def unsettled(conn: asyncpg.Connection | asyncpg.Pool) -> list[Pickup]:
    """Collected pickups of kg tariffs whose weighed fee is not settled yet."""
    rows = await conn.fetch(
        "SELECT * FROM waste_pickups WHERE status = 'collected' AND basis = 'kg'"
        " AND settled_amount IS NULL ORDER BY collected_at"
    )
    return _pickups(rows)


# Steps


async def request(conn: asyncpg.Connection | asyncpg.Pool, new: NewPickup) -> Pickup:
    """The pickup `new` names (made now, or by an earlier try with the same id), else the
    bin's open pickup of that day, which the caller tells apart by its id."""
    for _ in range(3):  # an open pickup that ends between our insert and our look
        row = await conn.fetchrow(
            "INSERT INTO waste_pickups (pickup_id, bin_id, site_id, district_code, status,"
            " basis, unit_price, quoted_amount, pickup_day, requested_by, requested_user)"
            " VALUES ($1, $2, $3, $4, 'requested', $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT DO NOTHING RETURNING *",
            new.pickup_id,
            new.bin_id,
            new.site_id,
            new.district_code,
            new.basis,
            new.unit_price,
            new.quoted_amount,
            new.pickup_day,
            new.requested_by,
            new.requested_user,
        )
        found = _pickup(row) or await by_id(conn, new.pickup_id)
        found = found or await open_for(conn, new.bin_id, new.pickup_day)
        if found is not None:
            return found
    raise RuntimeError(f"bin {new.bin_id} kept changing on {new.pickup_day}")


async def attach_payment(
    conn: asyncpg.Connection | asyncpg.Pool, pickup_id: uuid.UUID, payment_id: uuid.UUID
) -> Pickup | None:
    """The payment now open for a requested pickup (a new one after a failed card)."""
    row = await conn.fetchrow(
        "UPDATE waste_pickups SET payment_id = $2 WHERE pickup_id = $1 AND status = 'requested'"
        " RETURNING *",
        pickup_id,
        payment_id,
    )
    return _pickup(row)


async def mark_paid(
    conn: asyncpg.Connection | asyncpg.Pool,
    pickup_id: uuid.UUID,
    payment_id: uuid.UUID,
    paid_at: datetime,
) -> Pickup | None:
    """requested → paid, by its current payment."""
    row = await conn.fetchrow(
        "UPDATE waste_pickups SET status = 'paid', paid_at = $3"
        " WHERE pickup_id = $1 AND status = 'requested' AND payment_id = $2 RETURNING *",
        pickup_id,
        payment_id,
        paid_at,
    )
    return _pickup(row)


async def schedule(conn: asyncpg.Connection, pickup_id: uuid.UUID, today: date) -> Pickup | None:
    """paid → scheduled on its day, or today when paid after its day went by. None if the
    bin has another pickup on that day (it stays paid, for the city to sort out)."""
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                "UPDATE waste_pickups SET status = 'scheduled',"
                " pickup_day = greatest(pickup_day, $2)"
                " WHERE pickup_id = $1 AND status = 'paid' RETURNING *",
                pickup_id,
                today,
            )
    except asyncpg.UniqueViolationError:
        return None
    return _pickup(row)


async def cancel(
    conn: asyncpg.Connection | asyncpg.Pool, pickup_id: uuid.UUID, reason: str
) -> Pickup | None:
    """requested | paid | scheduled → cancelled."""
    row = await conn.fetchrow(
        "UPDATE waste_pickups SET status = 'cancelled', cancelled_at = now(),"
        " cancel_reason = $2 WHERE pickup_id = $1 AND status = ANY($3) RETURNING *",
        pickup_id,
        reason,
        list(OPEN),
    )
    return _pickup(row)


async def record_refund(
    conn: asyncpg.Connection | asyncpg.Pool,
    refund_id: uuid.UUID,
    *,
    pickup_id: uuid.UUID | None = None,
    payment_id: uuid.UUID | None = None,
) -> None:
    """The refund asked for a cancelled pickup (`pickup_id`), or for every cancelled pickup
    of a payment (`payment_id`) when it refunded what was left of it."""
    await conn.execute(
        "UPDATE waste_pickups SET refund_id = $1 WHERE status = 'cancelled'"
        " AND refund_id IS NULL AND (pickup_id = $2 OR payment_id = $3)",
        refund_id,
        pickup_id,
        payment_id,
    )


async def record_collection(
    conn: asyncpg.Connection | asyncpg.Pool,
    pickup_id: uuid.UUID,
    collector_id: str,
    weight_kg: Decimal | None,
    volume_litres: int | None,
    collected_at: datetime,
) -> Pickup | None:
    """paid | scheduled → collected, with what the collector's scan measured. A missed
    pickup may be collected too: a scan made offline that day and uploaded late."""
    row = await conn.fetchrow(
        "UPDATE waste_pickups SET status = 'collected', collector_id = $2, weight_kg = $3,"
        " volume_litres = $4, collected_at = $5"
        " WHERE pickup_id = $1 AND status IN ('paid', 'scheduled', 'missed') RETURNING *",
        pickup_id,
        collector_id,
        weight_kg,
        volume_litres,
        collected_at,
    )
    return _pickup(row)


async def mark_missed(conn: asyncpg.Connection | asyncpg.Pool, before: date) -> list[Pickup]:
    """Paid pickups of days before `before` that nobody collected → missed."""
    rows = await conn.fetch(
        "UPDATE waste_pickups SET status = 'missed'"
        " WHERE status = ANY($1) AND pickup_day < $2 RETURNING *",
        list(ON_ROUTE),
        before,
    )
    return _pickups(rows)


async def settle(
    conn: asyncpg.Connection | asyncpg.Pool,
    pickup_id: uuid.UUID,
    settled_amount: int,
    top_up_payment_id: uuid.UUID | None,
) -> Pickup | None:
    """The weighed fee of a collected pickup, settled once (with its top-up charge)."""
    row = await conn.fetchrow(
        "UPDATE waste_pickups SET settled_amount = $2,"
        " top_up_payment_id = coalesce(top_up_payment_id, $3)"
        " WHERE pickup_id = $1 AND status = 'collected' AND settled_amount IS NULL"
        " RETURNING *",
        pickup_id,
        settled_amount,
        top_up_payment_id,
    )
    return _pickup(row)


async def replace_top_up(
    conn: asyncpg.Connection | asyncpg.Pool,
    pickup_id: uuid.UUID,
    previous: uuid.UUID,
    top_up_payment_id: uuid.UUID,
) -> Pickup | None:
    """A settled pickup's top-up charged anew, in place of `previous` (expired or failed);
    None if it was replaced already."""
    row = await conn.fetchrow(
        "UPDATE waste_pickups SET top_up_payment_id = $3"
        " WHERE pickup_id = $1 AND top_up_payment_id = $2 AND settled_amount IS NOT NULL"
        " RETURNING *",
        pickup_id,
        previous,
        top_up_payment_id,
    )
    return _pickup(row)
