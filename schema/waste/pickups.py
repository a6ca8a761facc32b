"""Queries and mutations of businesses' registry and pickups, and of the city's tariffs.

A business acts through a citizen signed in to its app (`waste:business`; paying also
needs `payments:pay`) and sees its own generators, sites, bins and pickups only. City staff
(`waste:city`) see all of them, set tariffs and may cancel any pickup.

Several bins with one payment: schema/waste/orders.py.

Requesting a pickup is idempotent on waste's side: the pickup's id derives from the
business and the idempotency key, so a retry finds the pickup the first try made, and its
fee is charged with a key derived from the pickup, so the retry finds the same payment.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated

import strawberry

from hub.core.context import Info
from hub.core.errors import BadUserInput, Forbidden
from resolvers.payments import idempotency, store
from resolvers.payments import scopes as payment_scopes
from resolvers.payments.errors import IdempotencyKeyReused
from resolvers.waste import errors, pickups, registry, scopes, tariffs
from resolvers.waste.pickups import Pickup as PickupRecord
from resolvers.waste.registry import Owner
from schema.pagination import Connection, check_first, page_of
from schema.payments import flow
from schema.payments.state import hub_of
from schema.waste import paging, payments_sync
from schema.waste.types import (
    Bin,
    Generator,
    Pickup,
    PickupStatus,
    Quote,
    Site,
    Tariff,
    TariffBasis,
    bin_of,
    generator_of,
    pickup_of,
    quote_of,
    site_of,
    tariff_of,
)

BUSINESS = [[scopes.BUSINESS.name]]
CITY = [[scopes.CITY.name]]
BUSINESS_OR_CITY = BUSINESS + CITY
PAYING = [[scopes.BUSINESS.name, payment_scopes.PAY.name]]
ANY_WASTE = [*BUSINESS_OR_CITY, [scopes.COLLECT.name]]
DAYS_AHEAD = 30  # how far ahead a pickup may be requested
MAX_PAGE = 500
FIRST = Annotated[int, strawberry.argument(description=f"1 to {MAX_PAGE}.")]
AFTER = Annotated[str | None, strawberry.argument(description="The endCursor of the page before.")]
KEY = strawberry.argument(
    description="Unique per request (a UUID v4); send the same key again to retry safely."
)


def acting_business(info: Info) -> Owner:
    """The business acting: its app and the citizen signed in to it."""
    caller = info.context.caller
    if caller.user_id is None or caller.client_id is None:
        raise Forbidden(
            "a business acts through a person signed in to its app (authorization code),"
            " not through the app alone"
        )
    return Owner(caller.client_id, uuid.UUID(caller.user_id))


def viewer_of(info: Info) -> Owner | None:
    """Whose things the caller sees: a business's own, or everyone's (None) for city staff."""
    if scopes.CITY.name in info.context.caller.scopes:
        return None
    return acting_business(info)


async def _own_pickup(info: Info, pickup_id: uuid.UUID, owner: Owner | None) -> PickupRecord:
    db = info.context.db
    found = await pickups.by_id(db, pickup_id)
    if found is None:
        raise errors.PickupNotFound(f"no pickup {pickup_id}")
    if owner is not None and await pickups.owner_of(db, pickup_id) != owner:
        raise errors.NotYourSite("this pickup is at a site of another business")
    return found


@strawberry.input(description="A business to register, as on its 사업자등록증.")
class GeneratorInput:
    business_no: str = strawberry.field(description="사업자등록번호: 124-81-00998 or 1248100998.")
    name: str = strawberry.field(description="상호.")
    representative: str = strawberry.field(description="대표자 name.")
    phone: str


@strawberry.input(description="A place where a business puts out its bins.")
class SiteInput:
    generator_id: uuid.UUID
    name: str
    address: str
    lat: float
    lng: float
    district_code: str = strawberry.field(description="5-digit 시군구 code.")


@strawberry.input(description="A district's fee from a day (to a day).")
class TariffInput:
    district_code: str
    basis: TariffBasis
    unit_price: int = strawberry.field(description="Won per litre of bin volume, or per kg.")
    effective_from: date
    bin_volume_litres: int | None = strawberry.field(
        default=None, description="For bins of this size only; null: any size."
    )
    effective_to: date | None = strawberry.field(
        default=None, description="First day it no longer applies; null: until replaced."
    )


@strawberry.type
class WasteRegistryQuery:
    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="Your businesses, or (city staff) all of them, newest first; a page of"
        " `first`, the next one `after` its `pageInfo.endCursor`.",
    )
    async def waste_generators(
        self, info: Info, first: FIRST = 50, after: AFTER = None
    ) -> Connection[Generator]:
        check_first(first, MAX_PAGE)
        found = await registry.generators(
            info.context.db,
            viewer_of(info),
            after=paging.generator_after(after),
            limit=first + 1,
        )
        return page_of(found, first, node=generator_of, key=paging.generator_key, after=after)

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="Your sites, or (city staff) all sites, of one district or all, by name;"
        " a page of `first`, the next one `after` its `pageInfo.endCursor`.",
    )
    async def waste_sites(
        self,
        info: Info,
        district_code: str | None = None,
        first: FIRST = 100,
        after: AFTER = None,
    ) -> Connection[Site]:
        check_first(first, MAX_PAGE)
        found = await registry.sites(
            info.context.db,
            viewer_of(info),
            district_code=district_code,
            after=paging.site_after(after),
            limit=first + 1,
        )
        return page_of(found, first, node=site_of, key=paging.site_key, after=after)

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY, description="A site: yours, or any for city staff."
    )
    async def waste_site(self, info: Info, id: uuid.UUID) -> Site:
        return site_of(await registry.own_site(info.context.db, id, viewer_of(info)))

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY, description="A bin: yours, or any for city staff."
    )
    async def waste_bin(self, info: Info, id: uuid.UUID) -> Bin:
        found, _ = await registry.own_bin(info.context.db, id, viewer_of(info))
        return bin_of(found)

    @strawberry.federation.field(
        requires_scopes=ANY_WASTE,
        description="Tariffs of a district (or all), those in effect on `day` (or every one).",
    )
    async def waste_tariffs(
        self, info: Info, district_code: str | None = None, day: date | None = None
    ) -> list[Tariff]:
        return [tariff_of(t) for t in await tariffs.tariffs(info.context.db, district_code, day)]

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="What a pickup of a bin costs on a day (its district's tariff that day).",
    )
    async def waste_quote(self, info: Info, bin_id: uuid.UUID, day: date) -> Quote:
        db = info.context.db
        found, site = await registry.own_bin(db, bin_id, viewer_of(info))
        return quote_of(await tariffs.quote_for(db, site.district_code, found.volume_litres, day))

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="Your pickups, or (city staff) anyone's, latest pickup day first; a page"
        " of `first`, the next one `after` its `pageInfo.endCursor`.",
    )
    async def waste_pickups(
        self,
        info: Info,
        status: PickupStatus | None = None,
        day: date | None = None,
        site_id: uuid.UUID | None = None,
        district_code: str | None = None,
        first: FIRST = 50,
        after: AFTER = None,
    ) -> Connection[Pickup]:
        check_first(first, MAX_PAGE)
        found = await pickups.listing(
            info.context.db,
            viewer_of(info),
            status=status.value if status else None,
            day=day,
            site_id=site_id,
            district_code=district_code,
            after=paging.pickup_after(after),
            limit=first + 1,
        )
        return page_of(found, first, node=pickup_of, key=paging.pickup_key, after=after)

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY, description="A pickup: yours, or any for city staff."
    )
    async def waste_pickup(self, info: Info, id: uuid.UUID) -> Pickup:
        return pickup_of(await _own_pickup(info, id, viewer_of(info)))


@strawberry.type
class WasteRegistryMutation:
    @strawberry.federation.field(
        requires_scopes=BUSINESS,
        description="Register your business (its 사업자등록번호 is checked). Registering it"
        " again returns it; a number registered by another account is refused.",
    )
    async def register_waste_generator(self, info: Info, input: GeneratorInput) -> Generator:
        owner = acting_business(info)
        for argument, value in (
            ("name", input.name),
            ("representative", input.representative),
            ("phone", input.phone),
        ):
            if not value.strip():
                raise BadUserInput(f"{argument} is required", argument=argument)
        found = await registry.register_generator(
            info.context.db,
            owner,
            business_no=input.business_no,
            name=input.name.strip(),
            representative=input.representative.strip(),
            phone=input.phone.strip(),
        )
        return generator_of(found)

    @strawberry.federation.field(
        requires_scopes=BUSINESS, description="Add a site to one of your businesses."
    )
    async def add_waste_site(
        self, info: Info, input: SiteInput, idempotency_key: Annotated[str, KEY]
    ) -> Site:
        idempotency.check_key(idempotency_key)
        new = registry.NewSite(
            generator_id=input.generator_id,
            name=input.name.strip(),
            address=input.address.strip(),
            lat=input.lat,
            lng=input.lng,
            district_code=input.district_code,
        )
        return site_of(
            await registry.add_site(info.context.db, acting_business(info), new, idempotency_key)
        )

    @strawberry.federation.field(requires_scopes=BUSINESS, description="Add a bin to your site.")
    async def add_waste_bin(
        self,
        info: Info,
        site_id: uuid.UUID,
        volume_litres: int,
        idempotency_key: Annotated[str, KEY],
        label: str = "",
    ) -> Bin:
        idempotency.check_key(idempotency_key)
        made = await registry.add_bin(
            info.context.db, acting_business(info), site_id, volume_litres, label, idempotency_key
        )
        return bin_of(made)

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="Take a bin out of use: no pickups can be requested for it.",
    )
    async def retire_waste_bin(self, info: Info, bin_id: uuid.UUID) -> Bin:
        await registry.own_bin(info.context.db, bin_id, viewer_of(info))
        retired = await registry.retire_bin(info.context.db, bin_id)
        assert retired is not None
        return bin_of(retired)

    @strawberry.federation.field(
        requires_scopes=CITY,
        description="Set a district's tariff from a day; it ends the open-ended tariff of the"
        " same district and bin size that it follows. Setting it again returns it.",
    )
    async def set_waste_tariff(self, info: Info, input: TariffInput) -> Tariff:
        new = tariffs.NewTariff(
            district_code=input.district_code,
            basis=input.basis.value,
            unit_price=input.unit_price,
            bin_volume_litres=input.bin_volume_litres,
            effective_from=input.effective_from,
            effective_to=input.effective_to,
        )
        async with info.context.db.acquire() as conn:
            return tariff_of(await tariffs.set_tariff(conn, new))

    @strawberry.federation.field(
        requires_scopes=PAYING,
        description="Request a pickup of your bin on a day and open its payment: read the"
        " card with the payment's orderId and amount, then confirmPickupPayment. The bin's"
        " unpaid pickup of that day, if any, is the one paid.",
    )
    async def request_pickup(
        self,
        info: Info,
        bin_id: uuid.UUID,
        day: Annotated[date, strawberry.argument(description="Korean date of the pickup.")],
        idempotency_key: Annotated[str, KEY],
    ) -> Pickup:
        return pickup_of(await _request(info, bin_id, day, idempotency_key))

    @strawberry.federation.field(
        requires_scopes=PAYING,
        description="Confirm the card payment of your pickup's fee (or, once weighed, of its"
        " top-up). Confirmed: the pickup is paid and scheduled. A payment whose status is"
        " UNKNOWN is found out by the hub, and the pickup follows by itself.",
    )
    async def confirm_pickup_payment(
        self,
        info: Info,
        pickup_id: uuid.UUID,
        payment_key: str,
        amount: int,
        idempotency_key: Annotated[str, KEY],
    ) -> Pickup:
        pickup = await _own_pickup(info, pickup_id, acting_business(info))
        if pickup.status == "cancelled":
            raise errors.PickupCancelled(f"pickup {pickup_id} was cancelled")
        payment_id = pickup.payment_id
        if pickup.status == "collected" and pickup.top_up_payment_id is not None:
            payment_id = pickup.top_up_payment_id
        if payment_id is None:
            raise BadUserInput("this pickup has no payment to confirm: request it again")
        db = info.context.db
        payment = await store.by_id(db, payment_id)
        assert payment is not None
        who = await flow.collector(db, info.context.caller)
        hub = hub_of(info)
        confirmed = await flow.confirm(
            hub, who, payment.order_id, payment_key, amount, idempotency_key
        )
        await payments_sync.follow_confirmed(hub, confirmed)  # a pickup order's: all of it
        return pickup_of(await _own_pickup(info, pickup_id, None))

    @strawberry.federation.field(
        requires_scopes=PAYING,
        description="A weighed pickup's top-up to pay again: its payment expired (not"
        " confirmed within the payments' order window) or its card failed, and a new one of"
        " the same amount is opened; read the card with its orderId, then"
        " confirmPickupPayment. A top-up still payable, or paid, is returned as it is.",
    )
    async def renew_pickup_top_up(self, info: Info, pickup_id: uuid.UUID) -> Pickup:
        pickup = await _own_pickup(info, pickup_id, acting_business(info))
        renewed = await payments_sync.renew_top_up(info.context.db, hub_of(info), pickup)
        return pickup_of(renewed)

    @strawberry.federation.field(
        requires_scopes=BUSINESS_OR_CITY,
        description="Cancel a pickup before it is collected (a business its own, city staff"
        " any); a paid fee is refunded in full. Cancelling it again returns it.",
    )
    async def cancel_pickup(self, info: Info, pickup_id: uuid.UUID, reason: str) -> Pickup:
        if not reason.strip():
            raise BadUserInput("give a reason for the cancellation", argument="reason")
        pickup = await _own_pickup(info, pickup_id, viewer_of(info))
        cancelled = await pickups.cancel(info.context.db, pickup_id, reason.strip())
        if cancelled is None and pickup.status != "cancelled":
            raise errors.PickupNotCancellable(
                f"pickup {pickup_id} is {pickup.status}: only a requested, paid or scheduled"
                " pickup can be cancelled",
                status=pickup.status,
            )
        await payments_sync.refund_cancelled(hub_of(info), cancelled or pickup)
        return pickup_of(await _own_pickup(info, pickup_id, None))


async def _request(info: Info, bin_id: uuid.UUID, day: date, key: str) -> PickupRecord:
    owner = acting_business(info)
    idempotency.check_key(key)
    db = info.context.db
    today = pickups.korea_today()
    if not today <= day <= today + timedelta(days=DAYS_AHEAD):
        raise BadUserInput(
            f"a pickup day is today ({today}) or one of the next {DAYS_AHEAD} days",
            argument="day",
        )
    found, site = await registry.own_bin(db, bin_id, owner)
    if found.retired_at is not None:
        raise BadUserInput(f"bin {bin_id} is retired", argument="binId")
    quote = await tariffs.quote_for(db, site.district_code, found.volume_litres, day)
    new = pickups.NewPickup(
        pickup_id=registry.keyed_id(owner, "pickup", key),
        bin_id=bin_id,
        site_id=site.site_id,
        district_code=site.district_code,
        basis=quote.tariff.basis,
        unit_price=quote.tariff.unit_price,
        quoted_amount=quote.amount,
        pickup_day=day,
        requested_by=owner.client_id,
        requested_user=owner.user_id,
    )
    pickup = await pickups.request(db, new)
    if pickup.pickup_id == new.pickup_id and (pickup.bin_id, pickup.pickup_day) != (bin_id, day):
        raise IdempotencyKeyReused("this idempotencyKey requested another pickup; use a new key")
    if pickup.pickup_id != new.pickup_id and (
        pickup.status != "requested" or pickup.pickup_order_id is not None
    ):  # paid, or paid with its order's payment: not one of its own
        raise errors.PickupAlreadyRequested(
            f"bin {bin_id} has a {pickup.status} pickup on {day} already",
            pickupId=str(pickup.pickup_id),
        )
    if pickup.status != "requested":
        return pickup  # a retry after it was paid or cancelled: as it is now
    return await _charge(info, pickup)


async def _charge(info: Info, pickup: PickupRecord) -> PickupRecord:
    """The pickup with a payment of its fee to confirm: the open one, or a new one when
    there is none or the last one failed or expired."""
    db = info.context.db
    previous = await store.by_id(db, pickup.payment_id) if pickup.payment_id else None
    if previous is not None and previous.status not in ("failed", "expired"):
        return pickup
    hub = hub_of(info)
    payment = await flow.charge(
        hub,
        await flow.collector(db, info.context.caller),
        source=payments_sync.SOURCE,
        reference=str(pickup.pickup_id),
        district_code=pickup.district_code,
        item=payments_sync.ITEM,
        amount=pickup.quoted_amount,
        payer_name=await payments_sync.payer_name(db, pickup),
        # Requests that see the same state open one payment; one after a failure, another.
        key=f"pickup-{pickup.pickup_id}-after-{pickup.payment_id or 'none'}",
    )
    attached = await pickups.attach_payment(db, pickup.pickup_id, payment.payment_id)
    now = attached or await pickups.by_id(db, pickup.pickup_id)  # cancelled meanwhile
    assert now is not None
    return now
