"""Pickup orders: several bins picked up on one day and paid with one card payment.

An order holds bins of one business (one 사업자등록번호: the payer) in one district (the
payment is booked as that district's revenue), of one or several of its sites. Each bin
is quoted from its own tariff; the order's payment is the quotes added up, and each
pickup keeps its quote as its share of it: a pickup cancelled gets its share back, a
weighed one is settled against its share (schema/waste/payments_sync.py). The order's id
derives from the business and the idempotency key, so a retry finds the same order and
its payment (opened with a key derived from the order).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated

import strawberry

from hub.core.context import Info
from hub.core.errors import BadUserInput
from resolvers.payments import idempotency, store
from resolvers.payments.errors import IdempotencyKeyReused
from resolvers.waste import errors, orders, pickups, registry, tariffs
from resolvers.waste.orders import Order as OrderRecord
from resolvers.waste.registry import Owner
from schema.payments import flow
from schema.payments.state import hub_of
from schema.waste import payments_sync
from schema.waste.pickups import (
    BUSINESS_OR_CITY,
    DAYS_AHEAD,
    KEY,
    PAYING,
    acting_business,
    viewer_of,
)
from schema.waste.types import Pickup, PickupPayment, Quote, payment_by_id, pickup_of, quote_of

MAX_BINS = 50  # bins in one order

BINS = Annotated[
    list[uuid.UUID],
    strawberry.argument(
        description=f"1 to {MAX_BINS} bins of one business's sites in one district."
    ),
]
DAY = Annotated[date, strawberry.argument(description="Korean date of the pickups.")]


@strawberry.type(description="One bin of an order, with what its pickup costs.")
class BinQuote(Quote):
    bin_id: uuid.UUID


@strawberry.type(description="What a pickup of several bins on one day costs, bin by bin.")
class OrderQuote:
    district_code: str
    pickup_day: date
    lines: list[BinQuote] = strawberry.field(description="One a bin, by bin id.")
    amount: int = strawberry.field(description="The lines added up: the order's payment.")


@strawberry.type(
    description="Several bins of one business in one district, picked up on one day and"
    " paid with one payment; each pickup's quotedAmount is its share of it."
)
class PickupOrder:
    id: uuid.UUID
    generator_id: uuid.UUID
    district_code: str
    pickup_day: date
    bin_ids: list[uuid.UUID] = strawberry.field(description="By bin id.")
    amount: int = strawberry.field(description="The pickups' quotes added up.")
    requested_at: datetime
    payment_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field(description="Its pickups, one a bin, by bin id.")
    async def pickups(self, info: Info) -> list[Pickup]:
        return [pickup_of(p) for p in await pickups.of_order(info.context.db, self.id)]

    @strawberry.field(
        description="The payment to pay with the card SDK, then confirmPickupOrderPayment:"
        " the amount of the pickups still requested when it was opened."
    )
    async def payment(self, info: Info) -> PickupPayment | None:
        return await payment_by_id(info, self.payment_id)


def order_of(record: OrderRecord) -> PickupOrder:
    return PickupOrder(
        id=record.pickup_order_id,
        generator_id=record.generator_id,
        district_code=record.district_code,
        pickup_day=record.pickup_day,
        bin_ids=record.bin_ids,
        amount=record.amount,
        requested_at=record.requested_at,
        payment_id=record.payment_id,
    )


async def _own_order(info: Info, order_id: uuid.UUID, owner: Owner | None) -> OrderRecord:
    db = info.context.db
    found = await orders.by_id(db, order_id)
    if found is None:
        raise errors.PickupOrderNotFound(f"no pickup order {order_id}")
    if owner is not None and await orders.owner_of(db, order_id) != owner:
        raise errors.NotYourSite("this pickup order is of another business")
    return found


@dataclass
class _Priced:
    """An order's bins checked and priced: one business, one district, and each bin's
    (bin id, site id, quote), by bin id."""

    generator_id: uuid.UUID
    district_code: str
    lines: list[tuple[uuid.UUID, uuid.UUID, tariffs.Quote]] = field(default_factory=list)


async def _priced(info: Info, bin_ids: list[uuid.UUID], day: date, owner: Owner | None) -> _Priced:
    if not 1 <= len(bin_ids) <= MAX_BINS:
        raise BadUserInput(f"an order has 1 to {MAX_BINS} bins", argument="binIds")
    if len(set(bin_ids)) != len(bin_ids):
        raise BadUserInput("a bin is named twice", argument="binIds")
    db = info.context.db
    priced: _Priced | None = None
    for bin_id in bin_ids:  # the first named sets the business and the district
        found, site = await registry.own_bin(db, bin_id, owner)
        if found.retired_at is not None:
            raise BadUserInput(f"bin {bin_id} is retired", argument="binIds")
        if priced is None:
            priced = _Priced(site.generator_id, site.district_code)
        elif site.generator_id != priced.generator_id:
            raise errors.PickupOrderAcrossBusinesses(
                f"bin {bin_id} is of another business than the first bin's: an order is paid"
                " by one",
                binId=str(bin_id),
            )
        elif site.district_code != priced.district_code:
            raise errors.PickupOrderAcrossDistricts(
                f"bin {bin_id} is in district {site.district_code}, the order's first bin in"
                f" {priced.district_code}: an order is paid to one district",
                binId=str(bin_id),
                districtCode=site.district_code,
            )
        quote = await tariffs.quote_for(db, site.district_code, found.volume_litres, day)
        priced.lines.append((bin_id, site.site_id, quote))
    assert priced is not None
    priced.lines.sort(key=lambda line: line[0])
    return priced


@strawberry.type
class WasteOrderQuery:
    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="What a pickup order of these bins costs on a day: each bin's quote"
        " from its district's tariff that day, and their sum.",
    )
    async def waste_order_quote(self, info: Info, bin_ids: BINS, day: DAY) -> OrderQuote:
        priced = await _priced(info, bin_ids, day, viewer_of(info))
        lines = [
            BinQuote(bin_id=bin_id, **vars(quote_of(quote))) for bin_id, _, quote in priced.lines
        ]
        return OrderQuote(
            district_code=priced.district_code,
            pickup_day=day,
            lines=lines,
            amount=sum(line.amount for line in lines),
        )

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="A pickup order: yours, or any for city staff.",
    )
    async def waste_pickup_order(self, info: Info, id: uuid.UUID) -> PickupOrder:
        return order_of(await _own_order(info, id, viewer_of(info)))


@strawberry.type
class WasteOrderMutation:
    @strawberry.federation.field(
        requires_scopes=PAYING,
        description="Request pickups of several of your bins on a day with one payment:"
        " read the card with the payment's orderId and amount, then"
        " confirmPickupOrderPayment. Every bin gets its pickup, or none does.",
    )
    async def request_pickup_order(
        self, info: Info, bin_ids: BINS, day: DAY, idempotency_key: Annotated[str, KEY]
    ) -> PickupOrder:
        owner = acting_business(info)
        idempotency.check_key(idempotency_key)
        today = pickups.korea_today()
        if not today <= day <= today + timedelta(days=DAYS_AHEAD):
            raise BadUserInput(
                f"a pickup day is today ({today}) or one of the next {DAYS_AHEAD} days",
                argument="day",
            )
        db = info.context.db
        order_id = registry.keyed_id(owner, "pickup-order", idempotency_key)
        found = await orders.by_id(db, order_id)
        if found is None:
            priced = await _priced(info, bin_ids, day, owner)
            new = orders.NewOrder(
                pickup_order_id=order_id,
                generator_id=priced.generator_id,
                district_code=priced.district_code,
                pickup_day=day,
                lines=[
                    orders.Line(
                        bin_id=bin_id,
                        site_id=site_id,
                        basis=quote.tariff.basis,
                        unit_price=quote.tariff.unit_price,
                        amount=quote.amount,
                    )
                    for bin_id, site_id, quote in priced.lines
                ],
                requested_by=owner.client_id,
                requested_user=owner.user_id,
            )
            async with db.acquire() as conn:
                found = await orders.make(conn, new)
        if (found.bin_ids, found.pickup_day) != (orders.sorted_bins(bin_ids), day):
            raise IdempotencyKeyReused("this idempotencyKey requested another order; use a new key")
        who = await flow.collector(db, info.context.caller)
        return order_of(await payments_sync.charge_order(hub_of(info), who, found))

    @strawberry.federation.field(
        requires_scopes=PAYING,
        description="Confirm the card payment of your pickup order. Confirmed: every pickup"
        " of the order still requested is paid and scheduled (one cancelled meanwhile is"
        " refunded its share). A payment whose status is UNKNOWN is found out by the hub,"
        " and the pickups follow by themselves.",
    )
    async def confirm_pickup_order_payment(
        self,
        info: Info,
        pickup_order_id: uuid.UUID,
        payment_key: str,
        amount: int,
        idempotency_key: Annotated[str, KEY],
    ) -> PickupOrder:
        order = await _own_order(info, pickup_order_id, acting_business(info))
        if order.payment_id is None:
            raise BadUserInput("this order has no payment to confirm: request it again")
        db = info.context.db
        payment = await store.by_id(db, order.payment_id)
        assert payment is not None
        hub = hub_of(info)
        who = await flow.collector(db, info.context.caller)
        confirmed = await flow.confirm(
            hub, who, payment.order_id, payment_key, amount, idempotency_key
        )
        await payments_sync.follow_confirmed(hub, confirmed)
        return order_of(await _own_order(info, pickup_order_id, None))

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="Cancel every pickup of an order not yet collected (a business its own,"
        " city staff any): each gets its share of a paid fee back, all that is left of the"
        " payment once none of its pickups is left. Cancelling it again returns it.",
    )
    async def cancel_pickup_order(
        self, info: Info, pickup_order_id: uuid.UUID, reason: str
    ) -> PickupOrder:
        if not reason.strip():
            raise BadUserInput("give a reason for the cancellation", argument="reason")
        order = await _own_order(info, pickup_order_id, viewer_of(info))
        db = info.context.db
        async with db.acquire() as conn:
            cancelled = await orders.cancel(conn, pickup_order_id, reason.strip())
        every = await pickups.of_order(db, pickup_order_id)
        if not cancelled and all(p.status != "cancelled" for p in every):
            raise errors.PickupNotCancellable(
                f"the pickups of order {pickup_order_id} are collected or missed",
                status=every[0].status,
            )
        hub = hub_of(info)
        for pickup in every:
            if pickup.status == "cancelled" and pickup.refund_id is None:
                await payments_sync.refund_cancelled(hub, pickup)
        return order_of(order)
