"""Pickup orders: several bins of one business in one district, picked up on one day and
paid with one payment, in SQL.

An order and its pickups are made in one transaction: every bin gets its pickup, or none
does (a bin with a pickup of that day already refuses the whole order). The order's id
derives from the business and the idempotency key, and each pickup's from the order and
its bin, so a retry finds what the first try made. The payment is the order's
(`payment_id`), and every pickup still requested carries it too: each pickup's step
(pickups.mark_paid, the sync worker, cancelling, settling) works on an order's pickup as
on a pickup of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

import asyncpg
import msgspec

from resolvers.waste import errors, pickups
from resolvers.waste.pickups import Pickup
from resolvers.waste.registry import Owner


class Order(msgspec.Struct, frozen=True, kw_only=True):
    pickup_order_id: uuid.UUID
    generator_id: uuid.UUID
    district_code: str
    pickup_day: date
    bin_ids: list[uuid.UUID]
    amount: int
    payment_id: uuid.UUID | None
    requested_by: str
    requested_user: uuid.UUID | None
    requested_at: datetime


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One bin of an order, priced."""

    bin_id: uuid.UUID
    site_id: uuid.UUID
    basis: str
    unit_price: int
    amount: int


class NewOrder(msgspec.Struct, frozen=True, kw_only=True):
    pickup_order_id: uuid.UUID
    generator_id: uuid.UUID
    district_code: str
    pickup_day: date
    lines: list[Line]  # by bin id
    requested_by: str
    requested_user: uuid.UUID | None


def pickup_id_of(order_id: uuid.UUID, bin_id: uuid.UUID) -> uuid.UUID:
    """The id of an order's pickup of a bin: the same for every retry of the order."""
    return uuid.uuid5(order_id, str(bin_id))


def _order(row: asyncpg.Record | None) -> Order | None:
    return None if row is None else Order(**dict(row))


async def by_id(conn: asyncpg.Connection | asyncpg.Pool, order_id: uuid.UUID) -> Order | None:
    return _order(
        await conn.fetchrow(
            "SELECT * FROM waste_pickup_orders WHERE pickup_order_id = $1", order_id
        )
    )


async def owner_of(conn: asyncpg.Connection | asyncpg.Pool, order_id: uuid.UUID) -> Owner | None:
    """The business (app and citizen) whose order it is."""
    row = await conn.fetchrow(
        "SELECT g.owner_client, g.owner_user FROM waste_pickup_orders o"
        " JOIN waste_generators g USING (generator_id) WHERE o.pickup_order_id = $1",
        order_id,
    )
    return None if row is None else Owner(row["owner_client"], row["owner_user"])


async def make(conn: asyncpg.Connection, new: NewOrder) -> Order:
    """The order `new` names: made now with every pickup, or as an earlier try made it.
    PickupAlreadyRequested (nothing made) when one of the bins has a pickup that day."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO waste_pickup_orders (pickup_order_id, generator_id, district_code,"
            " pickup_day, bin_ids, amount, requested_by, requested_user)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING *",
            new.pickup_order_id,
            new.generator_id,
            new.district_code,
            new.pickup_day,
            [line.bin_id for line in new.lines],
            sum(line.amount for line in new.lines),
            new.requested_by,
            new.requested_user,
        )
        if row is None:  # an earlier try made it (a concurrent one: we waited for it)
            found = await by_id(conn, new.pickup_order_id)
            assert found is not None
            return found
        made = await conn.fetch(
            "INSERT INTO waste_pickups (pickup_id, bin_id, site_id, district_code, status,"
            " basis, unit_price, quoted_amount, pickup_day, requested_by, requested_user,"
            " pickup_order_id)"
            " SELECT l.pickup_id, l.bin_id, l.site_id, $1, 'requested', l.basis, l.unit_price,"
            " l.amount, $2, $3, $4, $5"
            " FROM unnest($6::uuid[], $7::uuid[], $8::uuid[], $9::text[], $10::int[],"
            " $11::int[]) AS l (pickup_id, bin_id, site_id, basis, unit_price, amount)"
            " ON CONFLICT DO NOTHING RETURNING bin_id",
            new.district_code,
            new.pickup_day,
            new.requested_by,
            new.requested_user,
            new.pickup_order_id,
            [pickup_id_of(new.pickup_order_id, line.bin_id) for line in new.lines],
            [line.bin_id for line in new.lines],
            [line.site_id for line in new.lines],
            [line.basis for line in new.lines],
            [line.unit_price for line in new.lines],
            [line.amount for line in new.lines],
        )
        if len(made) < len(new.lines):  # a bin has an open pickup that day: undo it all
            taken = {line.bin_id for line in new.lines} - {r["bin_id"] for r in made}
            bin_id = min(taken)
            other = await pickups.open_for(conn, bin_id, new.pickup_day)
            raise errors.PickupAlreadyRequested(
                f"bin {bin_id} has a pickup on {new.pickup_day} already: pay or cancel it,"
                " or order without it",
                pickupId=str(other.pickup_id) if other else None,
                binId=str(bin_id),
            )
    found = _order(row)
    assert found is not None
    return found


async def attach_payment(
    conn: asyncpg.Connection,
    order_id: uuid.UUID,
    previous: uuid.UUID | None,
    payment_id: uuid.UUID,
) -> None:
    """The payment now open for the order, in place of `previous` (none, or one that
    failed or expired), on the order and its pickups still requested. Nothing changes if
    another request replaced `previous` first."""
    async with conn.transaction():
        replaced = await conn.fetchval(
            "UPDATE waste_pickup_orders SET payment_id = $3 WHERE pickup_order_id = $1"
            " AND payment_id IS NOT DISTINCT FROM $2 RETURNING true",
            order_id,
            previous,
            payment_id,
        )
        if replaced:
            await conn.execute(
                "UPDATE waste_pickups SET payment_id = $2 WHERE pickup_order_id = $1"
                " AND status = 'requested'",
                order_id,
                payment_id,
            )


async def cancel(conn: asyncpg.Connection, order_id: uuid.UUID, reason: str) -> list[Pickup]:
    """Every pickup of the order not yet collected → cancelled; those it cancelled."""
    rows = await conn.fetch(
        "UPDATE waste_pickups SET status = 'cancelled', cancelled_at = now(),"
        " cancel_reason = $2 WHERE pickup_order_id = $1 AND status = ANY($3) RETURNING *",
        order_id,
        reason,
        list(pickups.OPEN),
    )
    return [Pickup(**dict(row)) for row in rows]


def sorted_bins(bin_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """How an order keeps its bins, so a retry naming them in another order is the same."""
    return sorted(set(bin_ids))
