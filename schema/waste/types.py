"""GraphQL types of the waste domain's registry and pickups (collection uses them too).
Amounts are integer won; days are Korean dates; times are ISO 8601."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum

import strawberry

from auth import audit
from hub.core.context import Info
from resolvers.payments import store as payments
from resolvers.waste import collectors, registry
from resolvers.waste.pickups import Pickup as PickupRecord
from resolvers.waste.registry import Bin as BinRecord
from resolvers.waste.registry import Generator as GeneratorRecord
from resolvers.waste.registry import Site as SiteRecord
from resolvers.waste.tariffs import Quote as QuoteRecord
from resolvers.waste.tariffs import Tariff as TariffRecord
from schema.payments.types import PaymentStatus


@strawberry.enum(
    description="requested → paid → scheduled → collected | missed; requested, paid or"
    " scheduled → cancelled (a paid pickup is refunded)."
)
class PickupStatus(Enum):
    REQUESTED = "requested"
    PAID = "paid"
    SCHEDULED = "scheduled"
    COLLECTED = "collected"
    MISSED = "missed"
    CANCELLED = "cancelled"


@strawberry.enum(description="What a tariff prices: the bin's volume or the weighed waste.")
class TariffBasis(Enum):
    LITRE = "litre"
    KG = "kg"


@strawberry.type(description="A business that produces food waste. Personal fields are audited.")
class Generator:
    record: strawberry.Private[GeneratorRecord]
    id: uuid.UUID
    business_no: str = strawberry.field(description="사업자등록번호, 10 digits.")
    name: str
    registered_at: datetime

    @strawberry.field(description="대표자 name. The read is audited.")
    async def representative(self, info: Info) -> str:
        await _audit(info, self.record, "representative")
        return self.record.representative

    @strawberry.field(description="Contact phone. The read is audited.")
    async def phone(self, info: Info) -> str:
        await _audit(info, self.record, "phone")
        return self.record.phone

    @strawberry.field(description="Its sites, by name.")
    async def sites(self, info: Info) -> list[Site]:
        return [site_of(s) for s in await registry.sites_of(info.context.db, self.id)]


async def _audit(info: Info, record: GeneratorRecord, field: str) -> None:
    await audit.read(
        info,
        action="business.read",
        subject_type="waste_generator",
        subjects=[str(record.generator_id)],
        fields=[field],
    )


def generator_of(record: GeneratorRecord) -> Generator:
    return Generator(
        record=record,
        id=record.generator_id,
        business_no=record.business_no,
        name=record.name,
        registered_at=record.registered_at,
    )


@strawberry.type(description="A place where a business puts out its bins.")
class Site:
    id: uuid.UUID
    generator_id: uuid.UUID
    name: str
    address: str
    lat: float
    lng: float
    district_code: str = strawberry.field(description="5-digit 시군구 code.")
    registered_at: datetime

    @strawberry.field(description="Its bins, oldest first (retired ones too).")
    async def bins(self, info: Info) -> list[Bin]:
        return [bin_of(b) for b in await registry.bins_of(info.context.db, self.id)]

    @strawberry.field(
        description="The collector company the city gave the site to (assignWasteSite);"
        " null: any company collecting in its district."
    )
    async def collector_id(self, info: Info) -> str | None:
        return await collectors.of_site(info.context.db, self.id)


def site_of(record: SiteRecord) -> Site:
    return Site(
        id=record.site_id,
        generator_id=record.generator_id,
        name=record.name,
        address=record.address,
        lat=record.lat,
        lng=record.lng,
        district_code=record.district_code,
        registered_at=record.registered_at,
    )


@strawberry.type(description="A food-waste bin (tagged with QR and NFC) at a site.")
class Bin:
    id: uuid.UUID
    site_id: uuid.UUID
    volume_litres: int
    label: str
    created_at: datetime
    retired_at: datetime | None = strawberry.field(description="Out of use since: no pickups.")

    @strawberry.field
    async def site(self, info: Info) -> Site:
        found = await info.context.loader(registry.site_loader).load(self.site_id)
        assert found is not None  # a bin's site is never deleted
        return site_of(found)


def bin_of(record: BinRecord) -> Bin:
    return Bin(
        id=record.bin_id,
        site_id=record.site_id,
        volume_litres=record.volume_litres,
        label=record.label,
        created_at=record.created_at,
        retired_at=record.retired_at,
    )


@strawberry.type(description="A district's pickup fee from a day (to a day).")
class Tariff:
    id: int
    district_code: str
    basis: TariffBasis
    unit_price: int = strawberry.field(description="Won per litre of bin volume, or per kg.")
    bin_volume_litres: int | None = strawberry.field(
        description="For bins of this size only; null: any size without its own tariff."
    )
    effective_from: date
    effective_to: date | None = strawberry.field(description="First day it no longer applies.")


def tariff_of(record: TariffRecord) -> Tariff:
    return Tariff(
        id=record.tariff_id,
        district_code=record.district_code,
        basis=TariffBasis(record.basis),
        unit_price=record.unit_price,
        bin_volume_litres=record.bin_volume_litres,
        effective_from=record.effective_from,
        effective_to=record.effective_to,
    )


@strawberry.type(description="What a pickup of one bin costs on a day.")
class Quote:
    tariff: Tariff
    volume_litres: int
    amount: int = strawberry.field(
        description="Won to pay now: the exact fee, or for a kg tariff an estimate that is"
        " settled after weighing (a top-up or a partial refund)."
    )
    estimated_kg: float | None = strawberry.field(
        description="Kg tariffs: the weight the estimate assumes (0.9 kg per litre)."
    )


def quote_of(record: QuoteRecord) -> Quote:
    return Quote(
        tariff=tariff_of(record.tariff),
        volume_litres=record.volume_litres,
        amount=record.amount,
        estimated_kg=float(record.estimated_kg) if record.estimated_kg is not None else None,
    )


@strawberry.type(description="A payment of a pickup, as the payments domain holds it.")
class PickupPayment:
    id: uuid.UUID
    order_id: str = strawberry.field(
        description="The order id the app's card SDK and the gateway know the payment by."
    )
    status: PaymentStatus
    amount: int
    refunded_amount: int
    confirmed_at: datetime | None


def payment_of(record: payments.Payment) -> PickupPayment:
    return PickupPayment(
        id=record.payment_id,
        order_id=record.order_id,
        status=PaymentStatus(record.status),
        amount=record.amount,
        refunded_amount=record.refunded_amount,
        confirmed_at=record.confirmed_at,
    )


@strawberry.type(description="A pickup of one bin on one day.")
class Pickup:
    id: uuid.UUID
    bin_id: uuid.UUID
    site_id: uuid.UUID
    district_code: str
    status: PickupStatus
    basis: TariffBasis
    unit_price: int
    quoted_amount: int = strawberry.field(description="What was charged when requested.")
    settled_amount: int | None = strawberry.field(
        description="Kg tariffs: the fee of the weighed waste, once settled."
    )
    pickup_day: date
    requested_at: datetime
    paid_at: datetime | None
    collected_at: datetime | None
    collector_id: str | None
    weight_kg: float | None
    volume_litres: int | None = strawberry.field(description="Measured at collection.")
    cancelled_at: datetime | None
    cancel_reason: str | None
    pickup_order_id: uuid.UUID | None = strawberry.field(
        description="The pickup order it was requested with (its payment is the order's,"
        " quotedAmount its share of it); null: requested alone."
    )
    payment_id: strawberry.Private[uuid.UUID | None]
    top_up_payment_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field
    async def bin(self, info: Info) -> Bin:
        found = await info.context.loader(registry.bin_loader).load(self.bin_id)
        assert found is not None  # bins are retired, never deleted
        return bin_of(found)

    @strawberry.field
    async def site(self, info: Info) -> Site:
        found = await info.context.loader(registry.site_loader).load(self.site_id)
        assert found is not None
        return site_of(found)

    @strawberry.field(
        description="The fee's payment: pay it with the card SDK, then confirm (of a pickup"
        " order: the order's payment)."
    )
    async def payment(self, info: Info) -> PickupPayment | None:
        return await payment_by_id(info, self.payment_id)

    @strawberry.field(
        description="Kg tariffs weighed above the estimate: the difference, to pay like the"
        " fee (confirmPickupPayment)."
    )
    async def top_up(self, info: Info) -> PickupPayment | None:
        return await payment_by_id(info, self.top_up_payment_id)


async def payment_by_id(info: Info, payment_id: uuid.UUID | None) -> PickupPayment | None:
    if payment_id is None:
        return None
    found = await payments.by_id(info.context.db, payment_id)
    return payment_of(found) if found else None


def pickup_of(record: PickupRecord) -> Pickup:
    return Pickup(
        id=record.pickup_id,
        bin_id=record.bin_id,
        site_id=record.site_id,
        district_code=record.district_code,
        status=PickupStatus(record.status),
        basis=TariffBasis(record.basis),
        unit_price=record.unit_price,
        quoted_amount=record.quoted_amount,
        settled_amount=record.settled_amount,
        pickup_day=record.pickup_day,
        requested_at=record.requested_at,
        paid_at=record.paid_at,
        collected_at=record.collected_at,
        collector_id=record.collector_id,
        weight_kg=float(record.weight_kg) if record.weight_kg is not None else None,
        volume_litres=record.volume_litres,
        cancelled_at=record.cancelled_at,
        cancel_reason=record.cancel_reason,
        pickup_order_id=record.pickup_order_id,
        payment_id=record.payment_id,
        top_up_payment_id=record.top_up_payment_id,
    )
