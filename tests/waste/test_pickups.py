"""Businesses, tariffs and pickups end to end: the hub over HTTP with the payments domain's
tax and gateway sandboxes over HTTP, businesses signed in as citizens of a private app."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from resolvers.waste import pickups
from resolvers.waste.registry import BUSINESS_NO_WEIGHTS, valid_business_no
from schema.pagination import encode_cursor
from schema.payments import flow
from schema.waste import payments_sync
from tests.oauth import REDIRECT, code_for
from tests.payments.helpers import World

pytestmark = pytest.mark.db

PICKUP = """
  id status basis unitPrice quotedAmount settledAmount pickupDay districtCode weightKg
  payment { id orderId status amount refundedAmount }
  topUp { id orderId status amount }
"""


@pytest.fixture(scope="module")
async def collector(world: World) -> str:
    """A collector company's client id (the collection domain's scan records pickups)."""
    await world.pool.execute(
        "INSERT INTO waste_collectors (collector_id, name, districts) VALUES"
        " ('test-collector', '깨끗한환경', '{11110}')"
    )
    return "test-collector"


def code(answer: dict[str, Any]) -> str:
    assert answer.get("errors"), answer
    return str(answer["errors"][0]["extensions"]["code"])


def data(answer: dict[str, Any]) -> dict[str, Any]:
    assert not answer.get("errors"), answer["errors"]
    return dict(answer["data"])


def business_no() -> str:
    """A random number with a valid check digit."""
    digits = [random.randrange(10) for _ in range(9)]
    total = sum(d * w for d, w in zip(digits, BUSINESS_NO_WEIGHTS, strict=True))
    total += digits[8] * 5 // 10
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def district() -> str:
    """A district of its own for each test, so tariffs do not meet."""
    return f"{random.randrange(11000, 99999):05d}"


async def citizen_token(world: World, scope: str = "waste:business payments:pay") -> str:
    """A restaurant owner signed in to the business app (authorization code + consent)."""
    app = await world.clients.client(scope_names=scope, redirect_uris=[REDIRECT])
    grant, verifier = await code_for(world.clients, app.client_id, scope=scope)
    async with httpx.AsyncClient(base_url=world.url) as http:
        tokens = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": grant,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(app.client_id, app.client_secret or ""),
        )
    return str(tokens.json()["access_token"])


@dataclass
class Business:
    token: str
    generator: str
    site: str
    bin: str
    district: str


async def register(world: World, district_code: str, volume: int = 120) -> Business:
    token = await citizen_token(world)
    generator = data(
        await world.gql(
            token,
            """mutation($i: GeneratorInput!) { registerWasteGenerator(input: $i) { id } }""",
            {
                "i": {
                    "businessNo": business_no(),
                    "name": "맛있는식당",
                    "representative": "김사장",
                    "phone": "010-1234-5678",
                }
            },
        )
    )["registerWasteGenerator"]["id"]
    site = data(
        await world.gql(
            token,
            """mutation($i: SiteInput!, $k: String!) {
                 addWasteSite(input: $i, idempotencyKey: $k) { id } }""",
            {
                "i": {
                    "generatorId": generator,
                    "name": "본점",
                    "address": "서울특별시 종로구 세종대로 175",
                    "lat": 37.5729,
                    "lng": 126.9794,
                    "districtCode": district_code,
                },
                "k": str(uuid.uuid4()),
            },
        )
    )["addWasteSite"]["id"]
    return Business(
        token, generator, site, await add_bin(world, token, site, volume), district_code
    )


async def add_bin(world: World, token: str, site: str, volume: int) -> str:
    answer = await world.gql(
        token,
        """mutation($s: UUID!, $v: Int!, $k: String!) {
             addWasteBin(siteId: $s, volumeLitres: $v, idempotencyKey: $k) { id } }""",
        {"s": site, "v": volume, "k": str(uuid.uuid4())},
    )
    return str(data(answer)["addWasteBin"]["id"])


async def set_tariff(
    world: World,
    city: str,
    district_code: str,
    unit_price: int,
    start: date,
    *,
    basis: str = "LITRE",
    size: int | None = None,
    end: date | None = None,
) -> dict[str, Any]:
    return await world.gql(
        city,
        """mutation($i: TariffInput!) { setWasteTariff(input: $i) {
             id unitPrice effectiveFrom effectiveTo } }""",
        {
            "i": {
                "districtCode": district_code,
                "basis": basis,
                "unitPrice": unit_price,
                "binVolumeLitres": size,
                "effectiveFrom": start.isoformat(),
                "effectiveTo": end.isoformat() if end else None,
            }
        },
    )


async def request(world: World, business: Business, key: str | None = None, **kw: Any) -> Any:
    return await world.gql(
        business.token,
        f"""mutation($b: UUID!, $d: Date!, $k: String!) {{
             requestPickup(binId: $b, day: $d, idempotencyKey: $k) {{ {PICKUP} }} }}""",
        {
            "b": kw.get("bin", business.bin),
            "d": kw.get("day", pickups.korea_today()).isoformat(),
            "k": key or str(uuid.uuid4()),
        },
    )


async def confirm(
    world: World, token: str, pickup: dict[str, Any], payment: str = "payment"
) -> Any:
    """What the app does: read the card with the gateway's SDK, then confirm through waste."""
    order, amount = pickup[payment]["orderId"], pickup[payment]["amount"]
    payment_key = await world.card_present(order, amount)
    return await world.gql(
        token,
        f"""mutation($p: UUID!, $pk: String!, $a: Int!, $k: String!) {{
             confirmPickupPayment(pickupId: $p, paymentKey: $pk, amount: $a,
               idempotencyKey: $k) {{ {PICKUP} }} }}""",
        {"p": pickup["id"], "pk": payment_key, "a": amount, "k": str(uuid.uuid4())},
    )


async def paid_pickup(world: World, business: Business) -> dict[str, Any]:
    requested = data(await request(world, business))["requestPickup"]
    return dict(data(await confirm(world, business.token, requested))["confirmPickupPayment"])


async def pickup_of(world: World, token: str, pickup_id: str) -> dict[str, Any]:
    answer = await world.gql(
        token, f"query($i: UUID!) {{ wastePickup(id: $i) {{ {PICKUP} }} }}", {"i": pickup_id}
    )
    return dict(data(answer)["wastePickup"])


async def litre_world(world: World, city: str, price: int = 50, volume: int = 120) -> Business:
    where = district()
    data(await set_tariff(world, city, where, price, pickups.korea_today() - timedelta(days=1)))
    return await register(world, where, volume)


# Generators, sites, bins


def test_business_numbers_are_checked_by_their_check_digit() -> None:
    for known in ("1248100998", "2208162517", "1208147521"):  # Samsung, NAVER, Kakao
        assert valid_business_no(known)
    assert not valid_business_no("1248100999")
    assert not valid_business_no("1234567890")
    assert not valid_business_no("124810099")
    assert not valid_business_no("12481009９8")


async def test_a_business_number_with_a_wrong_check_digit_is_refused(world: World) -> None:
    token = await citizen_token(world)
    mutation = """mutation($i: GeneratorInput!) {
        registerWasteGenerator(input: $i) { id businessNo } }"""
    fields = {"name": "분식", "representative": "이대표", "phone": "02-123-4567"}

    refused = await world.gql(token, mutation, {"i": {**fields, "businessNo": "123-45-67890"}})
    number = business_no()
    written = f"{number[:3]}-{number[3:5]}-{number[5:]}"
    made = data(await world.gql(token, mutation, {"i": {**fields, "businessNo": written}}))
    again = data(await world.gql(token, mutation, {"i": {**fields, "businessNo": number}}))
    other = await world.gql(
        await citizen_token(world), mutation, {"i": {**fields, "businessNo": number}}
    )

    assert code(refused) == "BUSINESS_NUMBER_INVALID"
    assert made["registerWasteGenerator"]["businessNo"] == number
    assert again == made  # a retry
    assert code(other) == "BUSINESS_ALREADY_REGISTERED"


async def test_a_business_sees_and_acts_on_its_own_sites_only(world: World, city: str) -> None:
    mine = await litre_world(world, city)
    theirs = await register(world, mine.district)

    peek = await world.gql(
        theirs.token, "query($i: UUID!) { wasteSite(id: $i) { id } }", {"i": mine.site}
    )
    add = await world.gql(
        theirs.token,
        """mutation($s: UUID!) { addWasteBin(siteId: $s, volumeLitres: 60,
             idempotencyKey: "k1") { id } }""",
        {"s": mine.site},
    )
    take = await request(world, theirs, bin=mine.bin)
    mine_pickup = data(await request(world, mine))["requestPickup"]
    cancel = await world.gql(
        theirs.token,
        """mutation($p: UUID!) { cancelPickup(pickupId: $p, reason: "no") { id } }""",
        {"p": mine_pickup["id"]},
    )
    listed = data(
        await world.gql(
            theirs.token, "{ wasteSites { nodes { id } } wastePickups { nodes { id } } }"
        )
    )
    everyone = data(
        await world.gql(
            city,
            "query($d: String!) { wasteSites(districtCode: $d) { nodes { id } } }",
            {"d": mine.district},
        )
    )
    app_alone = await world.gql(
        await world.clients.token("waste:business"), "{ wasteSites { nodes { id } } }"
    )

    assert code(peek) == code(add) == code(take) == code(cancel) == "NOT_YOUR_SITE"
    assert listed == {
        "wasteSites": {"nodes": [{"id": theirs.site}]},
        "wastePickups": {"nodes": []},
    }
    assert {s["id"] for s in everyone["wasteSites"]["nodes"]} == {mine.site, theirs.site}
    assert code(app_alone) == "FORBIDDEN"


async def test_reading_a_representative_or_phone_is_audited(world: World, city: str) -> None:
    mine = await litre_world(world, city)
    before = await world.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject = $1", mine.generator
    )
    plain = data(await world.gql(mine.token, "{ wasteGenerators { nodes { id name } } }"))
    personal = data(
        await world.gql(mine.token, "{ wasteGenerators { nodes { id representative phone } } }")
    )
    rows = await world.pool.fetch(
        "SELECT action, subject_type, fields FROM audit_log WHERE subject = $1", mine.generator
    )

    assert plain["wasteGenerators"]["nodes"] == [{"id": mine.generator, "name": "맛있는식당"}]
    assert personal["wasteGenerators"]["nodes"][0]["representative"] == "김사장"
    assert before == 0
    assert sorted(tuple(r["fields"]) for r in rows) == [("phone",), ("representative",)]
    assert {(r["action"], r["subject_type"]) for r in rows} == {
        ("business.read", "waste_generator")
    }


async def pages(
    world: World, token: str, field: str, **filters: tuple[str, Any]
) -> list[dict[str, Any]]:
    """Every page of a connection, two items a page, each asked `after` the one before,
    with the same `filters` (argument name: its type and value)."""
    declared = "".join(f", ${name}: {kind}" for name, (kind, _) in filters.items())
    given = "".join(f", {name}: ${name}" for name in filters)
    query = f"""query($a: String{declared}) {{ {field}(first: 2, after: $a{given}) {{
        edges {{ cursor node {{ id }} }} pageInfo {{ hasNextPage hasPreviousPage endCursor }}
    }} }}"""
    found, after = [], None
    while True:
        variables = {"a": after, **{name: value for name, (_, value) in filters.items()}}
        page = data(await world.gql(token, query, variables))[field]
        found.append(page)
        after = page["pageInfo"]["endCursor"]
        assert page["edges"][-1]["cursor"] == after
        if not page["pageInfo"]["hasNextPage"]:
            return found


def ids(found: list[dict[str, Any]]) -> list[str]:
    return [edge["node"]["id"] for page in found for edge in page["edges"]]


async def test_generators_and_sites_page_through_with_cursors_each_once(
    world: World, city: str
) -> None:
    mine = await litre_world(world, city)
    generators = [mine.generator]
    for _ in range(2):
        made = await world.gql(
            mine.token,
            """mutation($i: GeneratorInput!) { registerWasteGenerator(input: $i) { id } }""",
            {"i": {"businessNo": business_no(), "name": "분점", "representative": "김사장",
                   "phone": "010-1234-5678"}},
        )  # fmt: skip
        generators.append(data(made)["registerWasteGenerator"]["id"])
    # The two newest registered in the same microsecond: their ids order them.
    await world.pool.execute(
        "UPDATE waste_generators SET registered_at = now() + interval '1 second'"
        " WHERE generator_id = ANY($1)",
        [uuid.UUID(g) for g in generators[1:]],
    )
    sites = [mine.site]  # 본점
    for name in ("가게", "가게", "별관"):
        made = await world.gql(
            mine.token,
            """mutation($i: SiteInput!, $k: String!) {
                 addWasteSite(input: $i, idempotencyKey: $k) { id } }""",
            {"i": {"generatorId": mine.generator, "name": name, "address": "종로 1",
                   "lat": 37.57, "lng": 126.98, "districtCode": mine.district},
             "k": str(uuid.uuid4())},
        )  # fmt: skip
        sites.append(data(made)["addWasteSite"]["id"])

    generator_pages = await pages(world, mine.token, "wasteGenerators")
    site_pages = await pages(world, mine.token, "wasteSites")
    # City staff see every site: the district keeps the list to these.
    by_district = await pages(world, city, "wasteSites", districtCode=("String", mine.district))

    assert ids(generator_pages) == [
        *sorted(generators[1:], key=uuid.UUID, reverse=True),
        mine.generator,
    ]
    assert [page["pageInfo"]["hasPreviousPage"] for page in generator_pages] == [False, True]
    by_name = [*sorted(sites[1:3], key=uuid.UUID), sites[3], sites[0]]  # 가게 가게 별관 본점
    assert ids(site_pages) == by_name
    assert ids(by_district) == by_name
    assert [len(page["edges"]) for page in site_pages] == [2, 2]


async def test_pickups_page_through_with_cursors_latest_day_first(world: World, city: str) -> None:
    mine = await litre_world(world, city)
    other_bin = await add_bin(world, mine.token, mine.site, 60)
    today = pickups.korea_today()
    days = {today: [mine.bin], today + timedelta(days=1): [mine.bin, other_bin],
            today + timedelta(days=2): [mine.bin, other_bin]}  # fmt: skip
    made: dict[date, list[str]] = {}
    for day, bins in days.items():
        for bin_id in bins:
            requested = data(await request(world, mine, bin=bin_id, day=day))["requestPickup"]
            made.setdefault(day, []).append(requested["id"])
    # All requested in the same microsecond but one, requested a second later.
    late = made[today + timedelta(days=2)][0]
    await world.pool.execute(
        "UPDATE waste_pickups SET requested_at = date_trunc('second', now())"
        " + CASE WHEN pickup_id = $2 THEN interval '1 second' ELSE interval '0' END"
        " WHERE pickup_id = ANY($1)",
        [uuid.UUID(p) for found in made.values() for p in found],
        uuid.UUID(late),
    )

    own = await pages(world, mine.token, "wastePickups")
    at_site = await pages(world, city, "wastePickups", siteId=("UUID", mine.site))

    latest_first = [
        late,
        *[p for p in made[today + timedelta(days=2)] if p != late],
        *sorted(made[today + timedelta(days=1)], key=uuid.UUID, reverse=True),
        *made[today],
    ]
    assert ids(own) == ids(at_site) == latest_first
    assert [len(page["edges"]) for page in own] == [2, 2, 1]
    assert [page["pageInfo"]["hasNextPage"] for page in own] == [True, True, False]


async def test_a_cursor_the_list_did_not_give_is_refused(world: World, city: str) -> None:
    some = str(uuid.uuid4())
    forged = {
        "wasteGenerators": [encode_cursor("2026-12-01T00:00:00", some), encode_cursor(1, 2)],
        "wasteSites": [encode_cursor("\x00", some), encode_cursor("본점", "not an id")],
        "wastePickups": [
            encode_cursor("2026-12-01", "2026-12-01T00:00:00+00:00"),
            encode_cursor("12/01", "2026-12-01T00:00:00+00:00", some),
        ],
    }
    for field, cursors in forged.items():
        for cursor in ("bm90IGEgY3Vyc29y", *cursors):
            answer = await world.gql(
                city,
                f"query($a: String) {{ {field}(after: $a) {{ nodes {{ id }} }} }}",
                {"a": cursor},
            )
            assert code(answer) == "BAD_USER_INPUT", (field, cursor, answer)
            assert answer["errors"][0]["extensions"]["argument"] == "after"
    too_many = await world.gql(city, "{ wastePickups(first: 501) { nodes { id } } }")
    assert code(too_many) == "BAD_USER_INPUT"


# Tariffs


async def test_quotes_follow_the_tariff_in_effect_that_day_and_the_bin_size(
    world: World, city: str
) -> None:
    where, today = district(), pickups.korea_today()
    first = data(await set_tariff(world, city, where, 100, today - timedelta(days=30)))
    data(await set_tariff(world, city, where, 90, today - timedelta(days=30), size=120))
    raised = data(await set_tariff(world, city, where, 120, today + timedelta(days=10)))
    business = await register(world, where, volume=120)
    small = await add_bin(world, business.token, business.site, 60)

    async def quote(bin_id: str, day: date) -> Any:
        return await world.gql(
            business.token,
            """query($b: UUID!, $d: Date!) { wasteQuote(binId: $b, day: $d) {
                 amount estimatedKg tariff { id unitPrice binVolumeLitres } } }""",
            {"b": bin_id, "d": day.isoformat()},
        )

    assert data(await quote(business.bin, today))["wasteQuote"]["amount"] == 90 * 120
    assert data(await quote(small, today))["wasteQuote"]["amount"] == 100 * 60
    later = data(await quote(small, today + timedelta(days=10)))["wasteQuote"]
    assert later["amount"] == 120 * 60 and later["tariff"]["id"] == raised["setWasteTariff"]["id"]
    assert data(await quote(business.bin, today + timedelta(days=10)))["wasteQuote"]["amount"] == (
        90 * 120
    )  # its size has its own tariff
    assert code(await quote(small, today - timedelta(days=31))) == "NO_TARIFF"

    tariffs = data(
        await world.gql(
            business.token,
            "query($d: String!) { wasteTariffs(districtCode: $d) { id effectiveTo } }",
            {"d": where},
        )
    )["wasteTariffs"]
    ended = next(t for t in tariffs if t["id"] == first["setWasteTariff"]["id"])
    assert ended["effectiveTo"] == (today + timedelta(days=10)).isoformat()
    overlap = await set_tariff(
        world, city, where, 80, today - timedelta(days=5), end=today + timedelta(days=1)
    )
    assert code(overlap) == "OVERLAPPING_TARIFF"
    again = data(await set_tariff(world, city, where, 120, today + timedelta(days=10)))
    assert again == raised  # a retry
    assert code(await set_tariff(world, business.token, where, 1, today)) == "FORBIDDEN"

    data(await set_tariff(world, city, where, 300, today, basis="KG", size=60))
    weighed = data(await quote(small, today))["wasteQuote"]
    assert weighed["estimatedKg"] == 54.0 and weighed["amount"] == 54 * 300


# Pickups


async def test_a_pickup_is_paid_by_card_scheduled_and_booked_as_district_revenue(
    world: World, city: str
) -> None:
    business = await litre_world(world, city, price=50, volume=120)

    requested = data(await request(world, business))["requestPickup"]
    assert requested["status"] == "REQUESTED" and requested["quotedAmount"] == 6_000
    assert requested["payment"]["amount"] == 6_000 and requested["payment"]["status"] == "REQUESTED"
    paid = data(await confirm(world, business.token, requested))["confirmPickupPayment"]

    assert paid["status"] == "SCHEDULED" and paid["payment"]["status"] == "CONFIRMED"
    ledger = await world.pool.fetch(
        "SELECT e.account, e.debit, e.credit FROM ledger_entries e"
        " JOIN ledger_transactions t USING (transaction_id) WHERE t.payment_id = $1"
        " ORDER BY e.entry_id",
        uuid.UUID(paid["payment"]["id"]),
    )
    assert [tuple(r) for r in ledger] == [
        ("gateway_receivable", 6_000, 0),
        (f"revenue:2:{business.district}", 0, 6_000),
    ]
    route = await pickups.pickups_for_day(world.pool, [business.district], pickups.korea_today())
    assert [str(p.pickup_id) for p in route] == [paid["id"]]
    again = await request(world, business)  # another request for the same bin and day
    assert code(again) == "PICKUP_ALREADY_REQUESTED"


async def test_a_retried_request_makes_one_pickup_and_one_payment(world: World, city: str) -> None:
    business = await litre_world(world, city)
    key = str(uuid.uuid4())

    first = data(await request(world, business, key))["requestPickup"]
    retried = data(await request(world, business, key))["requestPickup"]
    other_key = data(await request(world, business))["requestPickup"]  # the unpaid one again
    reused = await request(world, business, key, day=pickups.korea_today() + timedelta(days=1))

    assert retried == first and other_key == first
    assert code(reused) == "IDEMPOTENCY_KEY_REUSED"
    assert await _payments_of(world, first["id"]) == 1
    paid = data(await confirm(world, business.token, first))["confirmPickupPayment"]
    after = data(await request(world, business, key))["requestPickup"]
    assert after["status"] == "SCHEDULED" and after["id"] == paid["id"]
    assert after["payment"]["id"] == first["payment"]["id"]


async def test_concurrent_retries_make_one_pickup_and_one_payment(world: World, city: str) -> None:
    business = await litre_world(world, city)
    key = str(uuid.uuid4())

    answers = await asyncio.gather(*(request(world, business, key) for _ in range(8)))

    made = [data(a)["requestPickup"] for a in answers]
    assert len({m["id"] for m in made}) == 1
    assert len({m["payment"]["orderId"] for m in made}) == 1
    count = await world.pool.fetchval(
        "SELECT count(*) FROM waste_pickups WHERE bin_id = $1", uuid.UUID(business.bin)
    )
    assert count == 1 and await _payments_of(world, made[0]["id"]) == 1


async def test_a_confirm_retried_at_once_and_later_pays_the_pickup_once(
    world: World, city: str
) -> None:
    business = await litre_world(world, city)
    requested = data(await request(world, business))["requestPickup"]
    payment = requested["payment"]
    payment_key = await world.card_present(payment["orderId"], payment["amount"])
    key = str(uuid.uuid4())
    mutation = f"""mutation($p: UUID!, $pk: String!, $a: Int!, $k: String!) {{
      confirmPickupPayment(pickupId: $p, paymentKey: $pk, amount: $a, idempotencyKey: $k) {{
        {PICKUP} }} }}"""
    sent = {"p": requested["id"], "pk": payment_key, "a": payment["amount"], "k": key}
    answers = await asyncio.gather(*(world.gql(business.token, mutation, sent) for _ in range(6)))
    later = await world.gql(business.token, mutation, sent)  # the answer was lost: resent
    paid = [data(answer)["confirmPickupPayment"] for answer in [*answers, later]]
    assert {(p["status"], p["payment"]["status"], p["payment"]["id"]) for p in paid} == {
        ("SCHEDULED", "CONFIRMED", payment["id"])
    }
    booked = await world.pool.fetchval(
        "SELECT count(*) FROM ledger_transactions WHERE payment_id = $1",
        uuid.UUID(payment["id"]),
    )
    assert booked == 1 and await _payments_of(world, requested["id"]) == 1
    gateway = await world.gateway_payment(payment["orderId"])
    assert gateway is not None and gateway["status"] == "DONE"
    assert gateway["totalAmount"] == payment["amount"]


async def _payments_of(world: World, pickup_id: str) -> int:
    """How many payments the hub opened for the pickup."""
    return int(
        await world.pool.fetchval(
            "SELECT count(*) FROM payments WHERE source = 'waste' AND reference = $1", pickup_id
        )
    )


async def test_cancelling_a_paid_pickup_refunds_it(world: World, city: str, collector: str) -> None:
    business = await litre_world(world, city)
    paid = await paid_pickup(world, business)
    mutation = f"""mutation($p: UUID!) {{
        cancelPickup(pickupId: $p, reason: "가게 휴무") {{ {PICKUP} }} }}"""

    cancelled = data(await world.gql(business.token, mutation, {"p": paid["id"]}))["cancelPickup"]
    again = data(await world.gql(business.token, mutation, {"p": paid["id"]}))["cancelPickup"]

    assert cancelled["status"] == "CANCELLED"
    assert cancelled["payment"]["status"] == "REFUNDED"
    assert cancelled["payment"]["refundedAmount"] == paid["payment"]["amount"]
    assert again == cancelled
    gateway = await world.gateway_payment(paid["payment"]["orderId"])
    assert gateway is not None and gateway["status"] == "CANCELED"
    assert len(gateway["cancels"]) == 1

    collected = await paid_pickup(world, await litre_world(world, city))
    await pickups.record_collection(
        world.pool, uuid.UUID(collected["id"]), collector, None, 100, datetime.now(UTC)
    )
    late = await world.gql(city, mutation, {"p": collected["id"]})
    assert code(late) == "PICKUP_NOT_CANCELLABLE"

    by_city = await paid_pickup(world, await litre_world(world, city))
    answer = data(await world.gql(city, mutation, {"p": by_city["id"]}))["cancelPickup"]
    assert answer["payment"]["status"] == "REFUNDED"


async def _weighed(
    world: World, city: str, collector: str, kg: str
) -> tuple[Business, dict[str, Any]]:
    """A paid pickup of a 100 L bin under a 200 won/kg tariff, collected weighing `kg`."""
    where = district()
    start = pickups.korea_today() - timedelta(days=1)
    data(await set_tariff(world, city, where, 200, start, basis="KG"))
    business = await register(world, where, volume=100)
    paid = await paid_pickup(world, business)
    assert paid["quotedAmount"] == 90 * 200  # 100 L at 0.9 kg per litre
    await pickups.record_collection(
        world.pool, uuid.UUID(paid["id"]), collector, Decimal(kg), 100, datetime.now(UTC)
    )
    return business, paid


async def test_a_pickup_weighed_above_its_estimate_is_topped_up(
    world: World, city: str, collector: str
) -> None:
    business, paid = await _weighed(world, city, collector, "97.25")
    async with world.flow() as hub:
        settled = await payments_sync.settle_after_weighing(world.pool, hub, uuid.UUID(paid["id"]))
        twice = await payments_sync.settle_after_weighing(world.pool, hub, uuid.UUID(paid["id"]))

    assert settled is not None and settled.settled_amount == 19_450 and twice is None
    pickup = await pickup_of(world, business.token, paid["id"])
    assert pickup["settledAmount"] == 19_450
    assert pickup["topUp"]["amount"] == 19_450 - 18_000 and pickup["topUp"]["status"] == "REQUESTED"
    topped = data(await confirm(world, business.token, pickup, "topUp"))["confirmPickupPayment"]
    assert topped["topUp"]["status"] == "CONFIRMED" and topped["status"] == "COLLECTED"
    assert topped["payment"]["refundedAmount"] == 0


RENEW = f"""mutation($p: UUID!) {{ renewPickupTopUp(pickupId: $p) {{ {PICKUP} }} }}"""


async def test_an_expired_top_up_is_charged_anew_and_paid_once(
    world: World, city: str, collector: str
) -> None:
    business, paid = await _weighed(world, city, collector, "97.25")
    async with world.flow() as hub:
        await payments_sync.settle_after_weighing(world.pool, hub, uuid.UUID(paid["id"]))
    first = await pickup_of(world, business.token, paid["id"])
    still_open = data(await world.gql(business.token, RENEW, {"p": paid["id"]}))
    assert still_open["renewPickupTopUp"]["topUp"] == first["topUp"]  # payable: unchanged

    # The business does not pay within IEUM_PAYMENTS_ORDER_MINUTES: the payments worker
    # expires the top-up, which can no longer be confirmed.
    await world.pool.execute(
        "UPDATE payments SET requested_at = requested_at - interval '1 day' WHERE payment_id = $1",
        uuid.UUID(first["topUp"]["id"]),
    )
    async with world.flow() as hub:
        await flow.recover(hub)
    expired = await pickup_of(world, business.token, paid["id"])
    assert expired["topUp"]["status"] == "EXPIRED"
    assert code(await confirm(world, business.token, expired, "topUp")) == "PAYMENT_CLOSED"

    renewals = await asyncio.gather(
        *(world.gql(business.token, RENEW, {"p": paid["id"]}) for _ in range(3))
    )
    renewed = {json.dumps(data(r)["renewPickupTopUp"]["topUp"]) for r in renewals}
    assert len(renewed) == 1  # retried at once: one new charge
    top_up = data(renewals[0])["renewPickupTopUp"]["topUp"]
    assert top_up["status"] == "REQUESTED" and top_up["amount"] == first["topUp"]["amount"]
    assert top_up["orderId"] != first["topUp"]["orderId"]
    again = await pickup_of(world, business.token, paid["id"])
    topped = data(await confirm(world, business.token, again, "topUp"))["confirmPickupPayment"]
    assert topped["topUp"]["status"] == "CONFIRMED" and topped["settledAmount"] == 19_450
    confirmed = await world.pool.fetchval(
        "SELECT count(*) FROM payments WHERE source = 'waste' AND reference = $1"
        " AND status = 'confirmed'",
        f"{paid['id']}:top-up",
    )
    assert confirmed == 1
    paid_up = data(await world.gql(business.token, RENEW, {"p": paid["id"]}))
    assert paid_up["renewPickupTopUp"]["topUp"]["status"] == "CONFIRMED"  # nothing to renew
    other = await litre_world(world, city)
    assert code(await world.gql(other.token, RENEW, {"p": paid["id"]})) == "NOT_YOUR_SITE"


async def test_a_pickup_weighed_below_its_estimate_is_partly_refunded(
    world: World, city: str, collector: str
) -> None:
    business, paid = await _weighed(world, city, collector, "61.5")
    async with world.flow() as hub:
        assert await payments_sync.sync_payments(world.pool, hub) >= 1
        await payments_sync.sync_payments(world.pool, hub)

    pickup = await pickup_of(world, business.token, paid["id"])
    assert pickup["settledAmount"] == 12_300 and pickup["topUp"] is None
    assert pickup["payment"]["status"] == "PARTIALLY_REFUNDED"
    assert pickup["payment"]["refundedAmount"] == 18_000 - 12_300
    gateway = await world.gateway_payment(paid["payment"]["orderId"])
    assert gateway is not None and [c["cancelAmount"] for c in gateway["cancels"]] == [5_700]


async def test_a_pickup_whose_confirm_answer_was_lost_is_scheduled_by_the_sync(
    world: World, city: str
) -> None:
    business = await litre_world(world, city)
    lost = data(await request(world, business))["requestPickup"]
    cancelled_business = await litre_world(world, city)
    abandoned = data(await request(world, cancelled_business))["requestPickup"]

    await world.gateway_config(webhookDrop=True)  # only a lookup can tell
    await world.gateway.inject(error="hang_after", path="/confirm")  # charged, never answered
    try:
        unknown = data(await confirm(world, business.token, lost))["confirmPickupPayment"]
        gone = data(await confirm(world, cancelled_business.token, abandoned))
    finally:
        await world.gateway.clear()
        await world.gateway_config(webhookDrop=False)
    assert unknown["status"] == "REQUESTED" and unknown["payment"]["status"] == "UNKNOWN"
    cancel = await world.gql(
        cancelled_business.token,
        """mutation($p: UUID!) { cancelPickup(pickupId: $p, reason: "취소") { status } }""",
        {"p": gone["confirmPickupPayment"]["id"]},
    )
    assert data(cancel)["cancelPickup"]["status"] == "CANCELLED"

    async with world.flow() as hub:
        await flow.recover(hub)  # the payments worker finds out: both were charged
        changed = await payments_sync.sync_payments(world.pool, hub)

    assert changed >= 2
    scheduled = await pickup_of(world, business.token, lost["id"])
    assert scheduled["status"] == "SCHEDULED" and scheduled["payment"]["status"] == "CONFIRMED"
    refunded = await pickup_of(world, cancelled_business.token, abandoned["id"])
    assert refunded["status"] == "CANCELLED" and refunded["payment"]["status"] == "REFUNDED"


async def test_pickups_nobody_collected_are_missed_the_next_day(world: World, city: str) -> None:
    business = await litre_world(world, city)
    paid = await paid_pickup(world, business)
    await world.pool.execute(
        "UPDATE waste_pickups SET pickup_day = pickup_day - 1 WHERE pickup_id = $1",
        uuid.UUID(paid["id"]),
    )
    async with world.flow() as hub:
        await payments_sync.sync_payments(world.pool, hub)
    assert (await pickup_of(world, business.token, paid["id"]))["status"] == "MISSED"
