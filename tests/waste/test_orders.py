"""Pickup orders end to end: several bins of one business in one district, quoted bin by
bin, paid with one card payment, cancelled and settled pickup by pickup against their
shares, through the hub over HTTP and the gateway's sandbox."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from resolvers.waste import pickups
from schema.payments import flow
from schema.waste import payments_sync
from tests.payments.helpers import World
from tests.waste.test_pickups import (
    Business,
    add_bin,
    business_no,
    code,
    data,
    district,
    register,
    request,
    set_tariff,
)

pytestmark = pytest.mark.db

ORDER = """
  id districtCode pickupDay binIds amount
  payment { id orderId status amount refundedAmount }
  pickups { id binId status quotedAmount settledAmount pickupOrderId
            payment { id status } topUp { id orderId status amount } }
"""
REQUEST = f"""mutation($b: [UUID!]!, $d: Date!, $k: String!) {{
  requestPickupOrder(binIds: $b, day: $d, idempotencyKey: $k) {{ {ORDER} }} }}"""
CONFIRM = f"""mutation($o: UUID!, $pk: String!, $a: Int!, $k: String!) {{
  confirmPickupOrderPayment(pickupOrderId: $o, paymentKey: $pk, amount: $a,
    idempotencyKey: $k) {{ {ORDER} }} }}"""
CANCEL_ONE = """mutation($p: UUID!) { cancelPickup(pickupId: $p, reason: "한 통 덜 나옴") {
  status payment { status refundedAmount } } }"""
CANCEL_ALL = f"""mutation($o: UUID!) {{
  cancelPickupOrder(pickupOrderId: $o, reason: "가게 휴무") {{ {ORDER} }} }}"""


@dataclass
class Shop:
    """A business with three bins: 120 L and 240 L at its first site, 60 L at a second
    site in the same district. 50 won a litre; 40 won a litre for 240 L bins."""

    business: Business
    bins: list[str]  # 120 L, 240 L, 60 L

    @property
    def token(self) -> str:
        return self.business.token


SHARES = {120: 120 * 50, 240: 240 * 40, 60: 60 * 50}


async def shop(world: World, city: str, basis: str = "LITRE") -> Shop:
    where = district()
    start = pickups.korea_today() - timedelta(days=1)
    data(await set_tariff(world, city, where, 50, start, basis=basis))
    data(await set_tariff(world, city, where, 40, start, basis=basis, size=240))
    business = await register(world, where, volume=120)
    big = await add_bin(world, business.token, business.site, 240)
    second = await add_site(world, business, where)
    small = await add_bin(world, business.token, second, 60)
    return Shop(business, [business.bin, big, small])


async def add_site(world: World, business: Business, district_code: str) -> str:
    answer = await world.gql(
        business.token,
        """mutation($i: SiteInput!, $k: String!) {
             addWasteSite(input: $i, idempotencyKey: $k) { id } }""",
        {
            "i": {
                "generatorId": business.generator,
                "name": "별관",
                "address": "서울특별시 종로구 세종대로 170",
                "lat": 37.5725,
                "lng": 126.9790,
                "districtCode": district_code,
            },
            "k": str(uuid.uuid4()),
        },
    )
    return str(data(answer)["addWasteSite"]["id"])


async def order(world: World, token: str, bins: list[str], key: str | None = None) -> Any:
    variables = {"b": bins, "d": pickups.korea_today().isoformat(), "k": key or str(uuid.uuid4())}
    return await world.gql(token, REQUEST, variables)


async def pay(world: World, token: str, made: dict[str, Any]) -> dict[str, Any]:
    payment = made["payment"]
    payment_key = await world.card_present(payment["orderId"], payment["amount"])
    variables = {"o": made["id"], "pk": payment_key, "a": payment["amount"]}
    answer = await world.gql(token, CONFIRM, variables | {"k": str(uuid.uuid4())})
    return dict(data(answer)["confirmPickupOrderPayment"])


async def paid_order(world: World, city: str, basis: str = "LITRE") -> tuple[Shop, dict[str, Any]]:
    made = await shop(world, city, basis)
    requested = data(await order(world, made.token, made.bins))["requestPickupOrder"]
    return made, await pay(world, made.token, requested)


async def read_order(world: World, token: str, order_id: str) -> dict[str, Any]:
    answer = await world.gql(
        token, f"query($i: UUID!) {{ wastePickupOrder(id: $i) {{ {ORDER} }} }}", {"i": order_id}
    )
    return dict(data(answer)["wastePickupOrder"])


async def charges_of(world: World, order_id: str) -> int:
    """How many payments the hub opened for the order."""
    return int(
        await world.pool.fetchval(
            "SELECT count(*) FROM payments WHERE source = 'waste' AND reference = $1", order_id
        )
    )


async def test_three_bins_are_quoted_bin_by_bin_and_paid_with_one_payment(
    world: World, city: str
) -> None:
    made = await shop(world, city)
    quote = data(
        await world.gql(
            made.token,
            """query($b: [UUID!]!, $d: Date!) { wasteOrderQuote(binIds: $b, day: $d) {
                 districtCode amount
                 lines { binId amount volumeLitres tariff { unitPrice } } } }""",
            {"b": made.bins, "d": pickups.korea_today().isoformat()},
        )
    )["wasteOrderQuote"]
    total = sum(SHARES.values())
    assert quote["amount"] == total == 6_000 + 9_600 + 3_000
    by_bin = {line["binId"]: (line["volumeLitres"], line["amount"]) for line in quote["lines"]}
    assert by_bin == {
        made.bins[0]: (120, 6_000),
        made.bins[1]: (240, 9_600),
        made.bins[2]: (60, 3_000),
    }

    requested = data(await order(world, made.token, made.bins))["requestPickupOrder"]
    assert requested["amount"] == requested["payment"]["amount"] == total
    assert {p["status"] for p in requested["pickups"]} == {"REQUESTED"}
    assert {p["payment"]["id"] for p in requested["pickups"]} == {requested["payment"]["id"]}
    assert {p["pickupOrderId"] for p in requested["pickups"]} == {requested["id"]}
    assert sorted(p["quotedAmount"] for p in requested["pickups"]) == sorted(SHARES.values())
    paid = await pay(world, made.token, requested)

    assert paid["payment"]["status"] == "CONFIRMED"
    assert {p["status"] for p in paid["pickups"]} == {"SCHEDULED"}
    assert await charges_of(world, requested["id"]) == 1
    gateway = await world.gateway_payment(paid["payment"]["orderId"])
    assert gateway is not None and gateway["totalAmount"] == total
    booked = await world.pool.fetch(
        "SELECT e.account, e.debit, e.credit FROM ledger_entries e"
        " JOIN ledger_transactions t USING (transaction_id) WHERE t.payment_id = $1"
        " ORDER BY e.entry_id",
        uuid.UUID(paid["payment"]["id"]),
    )
    assert [tuple(r) for r in booked] == [
        ("gateway_receivable", total, 0),
        (f"revenue:2:{made.business.district}", 0, total),
    ]
    route = await pickups.pickups_for_day(
        world.pool, [made.business.district], pickups.korea_today()
    )
    assert {str(p.pickup_id) for p in route} == {p["id"] for p in paid["pickups"]}


async def test_an_order_retried_with_its_key_is_the_same_order_charged_once(
    world: World, city: str
) -> None:
    made = await shop(world, city)
    key = str(uuid.uuid4())

    first = data(await order(world, made.token, made.bins, key))["requestPickupOrder"]
    answers = await asyncio.gather(
        *(order(world, made.token, made.bins[::-1], key) for _ in range(6))
    )
    other_bins = await order(world, made.token, made.bins[:2], key)

    assert all(data(a)["requestPickupOrder"] == first for a in answers)
    assert code(other_bins) == "IDEMPOTENCY_KEY_REUSED"
    assert await charges_of(world, first["id"]) == 1
    count = await world.pool.fetchval(
        "SELECT count(*) FROM waste_pickups WHERE bin_id = ANY($1)",
        [uuid.UUID(b) for b in made.bins],
    )
    assert count == 3
    paid = await pay(world, made.token, first)
    after = data(await order(world, made.token, made.bins, key))["requestPickupOrder"]
    assert after == paid and after["payment"]["id"] == first["payment"]["id"]
    alone = await request(world, made.business)  # the bin's pickup is the order's
    assert code(alone) == "PICKUP_ALREADY_REQUESTED"


async def test_bins_of_another_business_or_district_are_refused(world: World, city: str) -> None:
    made = await shop(world, city)
    stranger = await register(world, made.business.district)  # another owner's business
    # The owner's second business (a site in the same district), and a site of the first
    # business in another district.
    mine_too = data(
        await world.gql(
            made.token,
            """mutation($i: GeneratorInput!) { registerWasteGenerator(input: $i) { id } }""",
            {
                "i": {
                    "businessNo": business_no(),
                    "name": "2호점",
                    "representative": "김사장",
                    "phone": "010-1234-5678",
                }
            },
        )
    )["registerWasteGenerator"]["id"]
    second = Business(made.token, mine_too, "", "", made.business.district)
    second_site = await add_site(world, second, made.business.district)
    second_bin = await add_bin(world, made.token, second_site, 120)
    elsewhere = district()
    data(await set_tariff(world, city, elsewhere, 50, pickups.korea_today()))
    far_site = await add_site(world, made.business, elsewhere)
    far_bin = await add_bin(world, made.token, far_site, 120)

    theirs = await order(world, made.token, [made.bins[0], stranger.bin])
    across_businesses = await order(world, made.token, [*made.bins, second_bin])
    across_districts = await order(world, made.token, [*made.bins, far_bin])

    assert code(theirs) == "NOT_YOUR_SITE"
    assert code(across_businesses) == "PICKUP_ORDER_ACROSS_BUSINESSES"
    assert across_businesses["errors"][0]["extensions"]["binId"] == second_bin
    assert code(across_districts) == "PICKUP_ORDER_ACROSS_DISTRICTS"
    assert across_districts["errors"][0]["extensions"]["binId"] == far_bin
    made_any = await world.pool.fetchval(
        "SELECT count(*) FROM waste_pickups WHERE bin_id = ANY($1)",
        [uuid.UUID(b) for b in made.bins],
    )
    assert made_any == 0

    # A bin already requested that day: the whole order is refused, nothing is made.
    alone = data(await request(world, made.business, bin=made.bins[1]))["requestPickup"]
    taken = await order(world, made.token, made.bins)
    assert code(taken) == "PICKUP_ALREADY_REQUESTED"
    assert taken["errors"][0]["extensions"]["pickupId"] == alone["id"]
    left = await world.pool.fetchval(
        "SELECT count(*) FROM waste_pickups WHERE bin_id = ANY($1)",
        [uuid.UUID(b) for b in made.bins],
    )
    assert left == 1


async def test_a_cancelled_pickup_gets_exactly_its_share_back_and_the_order_the_rest(
    world: World, city: str
) -> None:
    made, paid = await paid_order(world, city)
    total = paid["payment"]["amount"]
    one = next(p for p in paid["pickups"] if p["binId"] == made.bins[1])  # 240 L: 9,600

    cancelled = data(await world.gql(made.token, CANCEL_ONE, {"p": one["id"]}))["cancelPickup"]
    again = data(await world.gql(made.token, CANCEL_ONE, {"p": one["id"]}))["cancelPickup"]

    assert cancelled["status"] == "CANCELLED"
    assert cancelled["payment"] == {"status": "PARTIALLY_REFUNDED", "refundedAmount": 9_600}
    assert again == cancelled
    gateway = await world.gateway_payment(paid["payment"]["orderId"])
    assert gateway is not None and [c["cancelAmount"] for c in gateway["cancels"]] == [9_600]
    now = await read_order(world, made.token, paid["id"])
    assert {p["id"]: p["status"] for p in now["pickups"]} == {
        p["id"]: "CANCELLED" if p["id"] == one["id"] else "SCHEDULED" for p in paid["pickups"]
    }

    whole = data(await world.gql(made.token, CANCEL_ALL, {"o": paid["id"]}))["cancelPickupOrder"]
    twice = data(await world.gql(made.token, CANCEL_ALL, {"o": paid["id"]}))["cancelPickupOrder"]

    assert {p["status"] for p in whole["pickups"]} == {"CANCELLED"}
    assert whole["payment"]["status"] == "REFUNDED"
    assert whole["payment"]["refundedAmount"] == total
    assert twice == whole
    gateway = await world.gateway_payment(paid["payment"]["orderId"])
    assert gateway is not None and gateway["status"] == "CANCELED"
    assert [c["cancelAmount"] for c in gateway["cancels"]] == [9_600, total - 9_600]
    async with world.flow() as hub:  # the worker finds nothing left to refund
        await payments_sync.sync_payments(world.pool, hub)
    gateway = await world.gateway_payment(paid["payment"]["orderId"])
    assert gateway is not None and len(gateway["cancels"]) == 2


async def test_an_order_confirmed_late_is_scheduled_by_the_sync_worker(
    world: World, city: str
) -> None:
    made = await shop(world, city)
    requested = data(await order(world, made.token, made.bins))["requestPickupOrder"]
    payment = requested["payment"]

    await world.gateway_config(webhookDrop=True)  # only a lookup can tell
    await world.gateway.inject(error="hang_after", path="/confirm")  # charged, never answered
    try:
        unknown = await pay(world, made.token, requested)
    finally:
        await world.gateway.clear()
        await world.gateway_config(webhookDrop=False)
    assert unknown["payment"]["status"] == "UNKNOWN"
    assert {p["status"] for p in unknown["pickups"]} == {"REQUESTED"}
    # Meanwhile the business drops the small bin from the order.
    small = next(p for p in requested["pickups"] if p["binId"] == made.bins[2])
    dropped = data(await world.gql(made.token, CANCEL_ONE, {"p": small["id"]}))["cancelPickup"]
    assert dropped["payment"] == {"status": "UNKNOWN", "refundedAmount": 0}

    async with world.flow() as hub:
        await flow.recover(hub)  # the payments worker finds out: charged
        changed = await payments_sync.sync_payments(world.pool, hub)

    assert changed >= 3
    now = await read_order(world, made.token, requested["id"])
    assert now["payment"]["status"] == "PARTIALLY_REFUNDED"
    assert now["payment"]["refundedAmount"] == SHARES[60]
    assert {p["id"]: p["status"] for p in now["pickups"]} == {
        p["id"]: "CANCELLED" if p["id"] == small["id"] else "SCHEDULED"
        for p in requested["pickups"]
    }
    gateway = await world.gateway_payment(payment["orderId"])
    assert gateway is not None and [c["cancelAmount"] for c in gateway["cancels"]] == [SHARES[60]]


async def test_weighed_pickups_of_an_order_are_settled_each_against_its_share(
    world: World, city: str
) -> None:
    made, paid = await paid_order(world, city, basis="KG")
    # KG tariffs of 50 and 40 won a kg: estimates of 0.9 kg a litre.
    estimates = {made.bins[0]: 108 * 50, made.bins[1]: 216 * 40, made.bins[2]: 54 * 50}
    assert {p["binId"]: p["quotedAmount"] for p in paid["pickups"]} == estimates
    await world.pool.execute(
        "INSERT INTO waste_collectors (collector_id, name, districts) VALUES"
        " ('order-collector', '깨끗한환경', $1) ON CONFLICT DO NOTHING",
        [made.business.district],
    )
    heavier, lighter, _ = (next(p for p in paid["pickups"] if p["binId"] == b) for b in made.bins)
    for pickup, kg in ((heavier, "120"), (lighter, "200")):
        await pickups.record_collection(
            world.pool,
            uuid.UUID(pickup["id"]),
            "order-collector",
            Decimal(kg),
            None,
            datetime.now(UTC),
        )
    async with world.flow() as hub:
        await payments_sync.sync_payments(world.pool, hub)

    now = await read_order(world, made.token, paid["id"])
    by_id = {p["id"]: p for p in now["pickups"]}
    assert by_id[heavier["id"]]["settledAmount"] == 120 * 50
    assert by_id[heavier["id"]]["topUp"]["amount"] == 120 * 50 - estimates[made.bins[0]]
    assert by_id[lighter["id"]]["settledAmount"] == 200 * 40
    assert by_id[lighter["id"]]["topUp"] is None
    refunded = estimates[made.bins[1]] - 200 * 40  # the lighter one's difference only
    assert now["payment"] == {
        "id": paid["payment"]["id"],
        "orderId": paid["payment"]["orderId"],
        "status": "PARTIALLY_REFUNDED",
        "amount": sum(estimates.values()),
        "refundedAmount": refunded,
    }
