"""Collection end to end: collector companies signed in with client credentials scan QR
and NFC tags through the hub over HTTP, city staff follow collections over a WebSocket and
read volumes, and a District carries its waste volumes through the hub's schema."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from auth import tokens
from resolvers.waste import pickups
from resolvers.waste.pickups import KST
from resolvers.waste.tags import issue, keys, sun
from schema.waste import collection, routes_order
from schema.waste.routes_order import Point
from tests.oauth import REDIRECT, code_for
from tests.payments.helpers import World

pytestmark = pytest.mark.db

SCAN = """mutation($i: ScanInput!) { scanBin(input: $i) {
  scanId scannedAt distanceM flagged flagReason duplicate
  pickup { id status weightKg volumeLitres collectedAt collectorId } } }"""
UPLOAD = """mutation($s: [ScanInput!]!) { uploadScans(scans: $s) {
  scanId collected code result { scannedAt duplicate pickup { id status collectedAt } } } }"""
ROUTE = """query($d: Date, $s: PositionInput) { wasteRoute(day: $d, start: $s) {
  day districts totalDistanceM
  stops { position distanceM site { id lat lng } pickups { id binId status } } } }"""
HOME = (37.5700, 126.9800)  # a site's position; scans near it are taken there


def data(answer: dict[str, Any]) -> dict[str, Any]:
    assert not answer.get("errors"), answer["errors"]
    return dict(answer["data"])


def code(answer: dict[str, Any]) -> str:
    assert answer.get("errors"), answer
    return str(answer["errors"][0]["extensions"]["code"])


def district() -> str:
    """A district of each test's own, so routes and figures do not meet."""
    return f"{random.randrange(30000, 99999):05d}"


@dataclass
class Crew:
    """A collector company: its OAuth client, a phone's token, and its districts."""

    client_id: str
    token: str
    districts: list[str]


async def crew(world: World, city: str, *districts: str) -> Crew:
    client = await world.clients.client(scope_names="waste:collect")
    registered = await world.gql(
        city,
        """mutation($c: String!, $d: [String!]!) {
             registerCollector(clientId: $c, name: "깨끗한환경", districts: $d) {
               id districts } }""",
        {"c": client.client_id, "d": list(districts)},
    )
    assert data(registered)["registerCollector"]["districts"] == sorted(districts)
    async with httpx.AsyncClient(base_url=world.url) as http:
        response = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret or ""),
        )
    return Crew(client.client_id, str(response.json()["access_token"]), list(districts))


# The world's businesses, bins and tags, made as the registry and pickups domains make them


async def site(
    pool: asyncpg.Pool,
    district_code: str,
    lat: float = HOME[0],
    lng: float = HOME[1],
    site_id: uuid.UUID | None = None,
    owner: tuple[str, uuid.UUID | None] = ("some-app", None),
) -> uuid.UUID:
    generator, site_id = uuid.uuid4(), site_id or uuid.uuid4()
    await pool.execute(
        "INSERT INTO waste_generators (generator_id, business_no, name, representative, phone,"
        " owner_client, owner_user) VALUES ($1, $2, '한식당', '김대표', '010-0000-0000', $3, $4)",
        generator,
        f"{random.randrange(10**10):010d}",
        *owner,
    )
    await pool.execute(
        "INSERT INTO waste_sites (site_id, generator_id, name, address, lat, lng, district_code)"
        " VALUES ($1, $2, '본점', '서울 종로구 세종대로 1', $3, $4, $5)",
        site_id,
        generator,
        lat,
        lng,
        district_code,
    )
    return site_id


async def bin_at(pool: asyncpg.Pool, site_id: uuid.UUID, litres: int = 120) -> uuid.UUID:
    bin_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO waste_bins (bin_id, site_id, volume_litres) VALUES ($1, $2, $3)",
        bin_id,
        site_id,
        litres,
    )
    return bin_id


async def pickup(
    pool: asyncpg.Pool,
    bin_id: uuid.UUID,
    day: date | None = None,
    *,
    paid: bool = True,
    basis: str = "litre",
    unit_price: int = 10,
) -> uuid.UUID:
    """A pickup of the bin on `day` (today), requested, and paid and scheduled if `paid`."""
    row = await pool.fetchrow(
        "SELECT b.site_id, b.volume_litres, s.district_code FROM waste_bins b"
        " JOIN waste_sites s USING (site_id) WHERE b.bin_id = $1",
        bin_id,
    )
    estimate = row["volume_litres"] * (Decimal("0.9") if basis == "kg" else 1)
    made = await pickups.request(
        pool,
        pickups.NewPickup(
            pickup_id=uuid.uuid4(),
            bin_id=bin_id,
            site_id=row["site_id"],
            district_code=row["district_code"],
            basis=basis,
            unit_price=unit_price,
            quoted_amount=int(estimate * unit_price),
            pickup_day=day or pickups.korea_today(),
            requested_by="some-app",
            requested_user=None,
        ),
    )
    if paid:
        payment = uuid.uuid4()
        await pickups.attach_payment(pool, made.pickup_id, payment)
        await pickups.mark_paid(pool, made.pickup_id, payment, datetime.now(KST))
        async with pool.acquire() as conn:
            await pickups.schedule(conn, made.pickup_id, made.pickup_day)
    return made.pickup_id


async def label(world: World, bin_id: uuid.UUID) -> str:
    """The QR label's text, issued as `ieum waste tags-issue` does with the hub's secret."""
    found = await issue.bins(world.pool, [bin_id])
    issued = await issue.issue(world.pool, keys.secret(world.settings), found)
    return issued.labels[0].text


async def nfc_tag(world: World, bin_id: uuid.UUID) -> issue.NfcTag:
    found = await issue.bins(world.pool, [bin_id])
    uid = "04" + uuid.uuid4().hex[:12].upper()
    issued = await issue.issue(world.pool, keys.secret(world.settings), found, {bin_id: uid})
    return issued.nfc[0]


def tap_url(tag: issue.NfcTag, counter: int) -> str:
    """What the phone reads from the tag on its `counter`th read (the SUN URL)."""
    picc_data, cmac = sun.tap(tag.keys[1], tag.keys[2], bytes.fromhex(tag.uid), counter)
    return f"https://ieum.example/w?picc_data={picc_data}&cmac={cmac}"


def scan_of(
    tag: str,
    *,
    at: datetime | None = None,
    lat: float = HOME[0],
    lng: float = HOME[1] + 0.0003,  # ~26 m east of the site
    weight: float | None = 31.5,
    scan_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    return {
        "scanId": str(scan_id or uuid.uuid4()),
        "tag": tag,
        "scannedAt": (at or datetime.now(KST)).isoformat(),
        "lat": lat,
        "lng": lng,
        "weightKg": weight,
    }


async def scan(world: World, who: Crew, scan: dict[str, Any]) -> dict[str, Any]:
    return await world.gql(who.token, SCAN, {"i": scan})


# Routes


def test_the_solver_is_never_longer_than_nearest_neighbour() -> None:
    rng = random.Random(13)
    stops = [Point(37.5 + rng.random() * 0.1, 126.9 + rng.random() * 0.15) for _ in range(30)]
    start = Point(37.55, 126.97)
    ordered = asyncio.run(routes_order.order(start, stops))
    assert sorted(ordered) == list(range(30))
    nearest = routes_order.nearest_neighbour(start, stops)
    assert routes_order.length(start, stops, ordered) <= routes_order.length(start, stops, nearest)
    assert routes_order.length(start, stops, ordered) < routes_order.length(start, stops, range(30))


async def test_a_route_visits_the_paid_sites_in_a_short_order(world: World, city: str) -> None:
    """Sites on a street whose ids (the order the pickups are listed in) zig-zag along it;
    two bins at one site are one stop; unpaid and other districts' pickups are not visited."""
    here, elsewhere = district(), district()
    who = await crew(world, city, here)
    offsets = [5, 1, 4, 2, 3, 0.4]  # km east of the depot, in the order the ids sort
    ids = sorted(uuid.uuid4() for _ in offsets)
    sites = {}
    for site_id, km in zip(ids, offsets, strict=True):
        sites[site_id] = await site(world.pool, here, 37.5, 127.0 + km * 0.01133, site_id)
        await pickup(world.pool, await bin_at(world.pool, site_id))
    await pickup(world.pool, await bin_at(world.pool, ids[0]))  # a second bin there
    await pickup(world.pool, await bin_at(world.pool, ids[2]), paid=False)
    await pickup(world.pool, await bin_at(world.pool, await site(world.pool, elsewhere)))

    start = {"lat": 37.5, "lng": 127.0}
    route = data(await world.gql(who.token, ROUTE, {"s": start}))["wasteRoute"]
    assert route["districts"] == [here]
    visited = [uuid.UUID(stop["site"]["id"]) for stop in route["stops"]]
    assert sorted(visited) == ids
    by_km = dict(zip(ids, offsets, strict=True))
    assert [by_km[s] for s in visited] == sorted(offsets)  # along the street, outwards
    assert [len(stop["pickups"]) for stop in route["stops"]][-1] == 2  # ids[0], 5 km out
    assert all(p["status"] == "SCHEDULED" for stop in route["stops"] for p in stop["pickups"])
    assert [stop["position"] for stop in route["stops"]] == list(range(1, 7))

    points = [Point(37.5, 127.0 + km * 0.01133) for km in offsets]
    depot = Point(37.5, 127.0)
    listed = routes_order.length(depot, points, range(len(points)))
    nearest = routes_order.length(depot, points, routes_order.nearest_neighbour(depot, points))
    assert route["totalDistanceM"] <= nearest + 1
    assert route["totalDistanceM"] < listed / 2
    assert route["totalDistanceM"] == pytest.approx(sum(s["distanceM"] for s in route["stops"]))

    unanchored = data(await world.gql(who.token, ROUTE))["wasteRoute"]  # no depot
    assert unanchored["stops"][0]["distanceM"] == 0
    assert unanchored["totalDistanceM"] <= route["totalDistanceM"]


async def test_only_registered_collectors_see_routes_and_scan(world: World, city: str) -> None:
    stranger = await world.clients.token("waste:collect")  # never registered by the city
    assert code(await world.gql(stranger, ROUTE)) == "NOT_A_COLLECTOR"
    assert code(await world.gql(stranger, SCAN, {"i": scan_of("IEUM1.x.y")})) == "NOT_A_COLLECTOR"
    business = await world.clients.token("waste:business")
    assert code(await world.gql(business, ROUTE)) == "FORBIDDEN"


async def test_the_city_registers_only_collecting_clients(world: World, city: str) -> None:
    register = """mutation($c: String!) {
      registerCollector(clientId: $c, name: "x", districts: ["11110"]) { id } }"""
    assert code(await world.gql(city, register, {"c": "no-such-client"})) == "BAD_USER_INPUT"
    app = await world.clients.client(scope_names="waste:business")
    assert code(await world.gql(city, register, {"c": app.client_id})) == "BAD_USER_INPUT"
    collector = await world.clients.client(scope_names="waste:collect")
    bad_district = """mutation($c: String!) {
      registerCollector(clientId: $c, name: "x", districts: ["1111"]) { id } }"""
    assert code(await world.gql(city, bad_district, {"c": collector.client_id})) == (
        "BAD_USER_INPUT"
    )
    not_city = await world.clients.token("waste:collect")
    assert code(await world.gql(not_city, register, {"c": collector.client_id})) == "FORBIDDEN"
    moved = await crew(world, city, "11110")  # registered again: its new districts
    again = await world.gql(
        city,
        """mutation($c: String!) { registerCollector(clientId: $c, name: "새이름",
             districts: ["11140", "11110"]) { name districts } }""",
        {"c": moved.client_id},
    )
    assert data(again)["registerCollector"] == {"name": "새이름", "districts": ["11110", "11140"]}
    listed = data(await world.gql(city, "{ wasteCollectors { id districts } }"))
    assert {"id": moved.client_id, "districts": ["11110", "11140"]} in listed["wasteCollectors"]


# Scans


async def test_a_scan_collects_a_paid_bin_once(world: World, city: str) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here))
    pickup_id = await pickup(world.pool, bin_id)
    tag = await label(world, bin_id)
    sent = scan_of(tag, weight=31.555)
    first = data(await scan(world, who, sent))["scanBin"]
    assert first["pickup"] == {
        "id": str(pickup_id),
        "status": "COLLECTED",
        "weightKg": 31.56,  # kept to 10 g, halves up
        "volumeLitres": 120,
        "collectedAt": first["scannedAt"],
        "collectorId": who.client_id,
    }
    assert not first["flagged"] and not first["duplicate"]
    assert 20 < first["distanceM"] < 32

    again = data(await scan(world, who, sent))["scanBin"]  # the answer was lost: resent
    assert again == {**first, "duplicate": True}
    twice = await scan(world, who, scan_of(tag))  # the bin scanned again, a new scan
    assert code(twice) == "PICKUP_ALREADY_COLLECTED"
    stored = await world.pool.fetch(
        "SELECT outcome FROM waste_scans WHERE bin_id = $1 ORDER BY received_at", bin_id
    )
    assert [row["outcome"] for row in stored] == ["collected", "PICKUP_ALREADY_COLLECTED"]


async def test_the_same_scan_sent_at_once_collects_once(world: World, city: str) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here))
    await pickup(world.pool, bin_id)
    sent = scan_of(await label(world, bin_id))
    answers = await asyncio.gather(*(scan(world, who, sent) for _ in range(8)))
    results = [data(answer)["scanBin"] for answer in answers]
    assert sorted(r["duplicate"] for r in results) == [False] + [True] * 7
    assert len({json.dumps(r["pickup"], sort_keys=True) for r in results}) == 1
    count = await world.pool.fetchval("SELECT count(*) FROM waste_scans WHERE bin_id = $1", bin_id)
    assert count == 1


async def test_an_nfc_tap_collects_and_its_retry_answers_the_same(world: World, city: str) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here))
    pickup_id = await pickup(world.pool, bin_id)
    tag = await nfc_tag(world, bin_id)
    sent = scan_of(tap_url(tag, 7))
    first = data(await scan(world, who, sent))["scanBin"]
    assert first["pickup"]["id"] == str(pickup_id) and first["pickup"]["status"] == "COLLECTED"
    again = data(await scan(world, who, sent))["scanBin"]  # its counter is spent: stored
    assert again["duplicate"] and again["pickup"] == first["pickup"]
    replayed = await scan(world, who, scan_of(tap_url(tag, 7)))  # a copy of that tap
    assert code(replayed) == "NFC_COUNTER_REPLAYED"
    picc_data, _ = sun.tap(tag.keys[1], tag.keys[2], bytes.fromhex(tag.uid), 8)
    forged = f"https://ieum.example/w?picc_data={picc_data}&cmac={'0' * 16}"
    assert code(await scan(world, who, scan_of(forged))) == "NFC_BAD_CMAC"


async def test_an_nfc_tap_whose_scan_failed_midway_can_be_sent_again(
    world: World, city: str
) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here))
    pickup_id = await pickup(world.pool, bin_id)
    sent = scan_of(tap_url(await nfc_tag(world, bin_id), 5))
    async with world.pool.acquire() as conn, conn.transaction():
        # The pickup held by another transaction: the scan, its tap's read accepted, waits
        # for it, and is cancelled (as statement_timeout would cancel it).
        await conn.execute("SELECT FROM waste_pickups WHERE pickup_id = $1 FOR UPDATE", pickup_id)
        scanning = asyncio.create_task(scan(world, who, sent))
        waiting = None
        while waiting is None:
            assert not scanning.done(), scanning.result()
            await asyncio.sleep(0.05)
            waiting = await world.pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%waste_pickups%'"
            )
        await conn.execute("SELECT pg_cancel_backend($1)", waiting)
        assert code(await scanning) == "UPSTREAM_UNAVAILABLE"
    again = data(await scan(world, who, sent))["scanBin"]  # the same tap: its read not spent
    assert again["pickup"]["status"] == "COLLECTED" and not again["duplicate"]


async def test_tags_that_do_not_verify_are_refused_with_their_own_codes(
    world: World, city: str
) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here))
    await pickup(world.pool, bin_id)
    genuine = await label(world, bin_id)
    head, payload, signature = genuine.split(".")
    forged_payload = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    assert code(await scan(world, who, scan_of(f"{head}.{forged_payload}.{signature}"))) == (
        "TAG_FORGED"
    )
    assert code(await scan(world, who, scan_of("a sticker from the shop"))) == "TAG_FORGED"
    await label(world, bin_id)  # a new label replaces (revokes) the first one
    await asyncio.sleep(5.2)  # the hub re-reads revocations every 5 s
    assert code(await scan(world, who, scan_of(genuine))) == "TAG_REVOKED"
    unchanged = await world.pool.fetchval(
        "SELECT status FROM waste_pickups WHERE bin_id = $1", bin_id
    )
    assert unchanged == "scheduled"


async def test_an_unpaid_bin_is_refused(world: World, city: str) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here))
    tag = await label(world, bin_id)
    assert code(await scan(world, who, scan_of(tag))) == "PICKUP_NOT_PAID"  # none requested
    await pickup(world.pool, bin_id, paid=False)
    sent = scan_of(tag)
    assert code(await scan(world, who, sent)) == "PICKUP_NOT_PAID"  # requested, not paid
    tomorrow = pickups.korea_today() + timedelta(days=1)
    await pickup(world.pool, await bin_at(world.pool, await site(world.pool, here)), tomorrow)
    assert code(await scan(world, who, sent)) == "PICKUP_NOT_PAID"  # stored: same answer
    status = await world.pool.fetchval("SELECT status FROM waste_pickups WHERE bin_id = $1", bin_id)
    assert status == "requested"


async def test_a_bin_of_another_district_is_refused(world: World, city: str) -> None:
    mine, theirs = district(), district()
    who = await crew(world, city, mine)
    bin_id = await bin_at(world.pool, await site(world.pool, theirs))
    await pickup(world.pool, bin_id)
    assert code(await scan(world, who, scan_of(await label(world, bin_id)))) == (
        "OUTSIDE_COLLECTOR_DISTRICTS"
    )
    route = data(await world.gql(who.token, ROUTE))["wasteRoute"]
    assert route["stops"] == []
    other = await crew(world, city, theirs)  # the district's own company collects it
    collected = data(await scan(world, other, scan_of(await label(world, bin_id))))
    assert collected["scanBin"]["pickup"]["status"] == "COLLECTED"


ASSIGN = """mutation($s: UUID!, $c: String) {
  assignWasteSite(siteId: $s, collectorId: $c) { id collectorId } }"""


async def test_a_bin_of_a_site_given_to_another_company_is_refused(world: World, city: str) -> None:
    """Two companies in one district: a site the city gave to one is on its route only and
    the other's scan is refused; a site given to none is either's."""
    here = district()
    first, second = await crew(world, city, here), await crew(world, city, here)
    given, shared = await site(world.pool, here), await site(world.pool, here)
    given_bin, shared_bin = await bin_at(world.pool, given), await bin_at(world.pool, shared)
    for bin_id in (given_bin, shared_bin):
        await pickup(world.pool, bin_id)
    assigned = data(await world.gql(city, ASSIGN, {"s": str(given), "c": first.client_id}))
    assert assigned["assignWasteSite"] == {"id": str(given), "collectorId": first.client_id}

    def sites(route: dict[str, Any]) -> set[str]:
        return {stop["site"]["id"] for stop in route["wasteRoute"]["stops"]}

    assert sites(data(await world.gql(first.token, ROUTE))) == {str(given), str(shared)}
    assert sites(data(await world.gql(second.token, ROUTE))) == {str(shared)}
    sent = scan_of(await label(world, given_bin))
    assert code(await scan(world, second, sent)) == "ASSIGNED_TO_ANOTHER_COLLECTOR"
    assert code(await scan(world, second, sent)) == "ASSIGNED_TO_ANOTHER_COLLECTOR"  # stored
    refused = await world.pool.fetchrow(
        "SELECT outcome, pickup_id FROM waste_scans WHERE scan_id = $1",
        uuid.UUID(sent["scanId"]),
    )
    assert tuple(refused) == ("ASSIGNED_TO_ANOTHER_COLLECTOR", None)
    collected = data(await scan(world, first, scan_of(await label(world, given_bin))))
    assert collected["scanBin"]["pickup"]["status"] == "COLLECTED"
    either = data(await scan(world, second, scan_of(await label(world, shared_bin))))
    assert either["scanBin"]["pickup"]["status"] == "COLLECTED"

    elsewhere = await crew(world, city, district())
    wrong = await world.gql(city, ASSIGN, {"s": str(shared), "c": elsewhere.client_id})
    assert code(wrong) == "OUTSIDE_COLLECTOR_DISTRICTS"
    assert code(await world.gql(first.token, ASSIGN, {"s": str(shared), "c": None})) == (
        "FORBIDDEN"
    )
    # The first company moved to another district loses the site; then none holds it.
    await world.gql(
        city,
        """mutation($c: String!, $d: [String!]!) {
             registerCollector(clientId: $c, name: "깨끗한환경", districts: $d) { id } }""",
        {"c": first.client_id, "d": [district()]},
    )
    released = await world.gql(
        city, "query($s: UUID!) { wasteSite(id: $s) { collectorId } }", {"s": str(given)}
    )
    assert data(released)["wasteSite"]["collectorId"] is None


async def test_a_far_scan_collects_and_is_flagged(world: World, city: str) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here))
    await pickup(world.pool, bin_id)
    far = scan_of(await label(world, bin_id), lng=HOME[1] + 0.01)  # ~880 m east
    result = data(await scan(world, who, far))["scanBin"]
    assert result["flagged"] and result["flagReason"] == "SCAN_TOO_FAR"
    assert 850 < result["distanceM"] < 910
    assert result["pickup"]["status"] == "COLLECTED"
    stored = await world.pool.fetchrow(
        "SELECT outcome, flagged FROM waste_scans WHERE scan_id = $1", uuid.UUID(far["scanId"])
    )
    assert dict(stored) == {"outcome": "SCAN_TOO_FAR", "flagged": True}


async def test_a_kg_pickup_is_settled_after_weighing(world: World, city: str) -> None:
    here = district()
    who = await crew(world, city, here)
    bin_id = await bin_at(world.pool, await site(world.pool, here), litres=100)
    pickup_id = await pickup(world.pool, bin_id, basis="kg", unit_price=100)  # 90 kg: 9,000
    await scan(world, who, scan_of(await label(world, bin_id), weight=120.0))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        settled = await world.pool.fetchrow(
            "SELECT settled_amount, top_up_payment_id FROM waste_pickups WHERE pickup_id = $1",
            pickup_id,
        )
        if settled["settled_amount"] is not None:
            break
        await asyncio.sleep(0.1)
    assert settled["settled_amount"] == 12_000
    top_up = await world.pool.fetchrow(
        "SELECT amount, status FROM payments WHERE payment_id = $1", settled["top_up_payment_id"]
    )
    assert dict(top_up) == {"amount": 3_000, "status": "requested"}


# Offline


async def test_offline_scans_uploaded_twice_count_once_with_their_scan_times(
    world: World, city: str
) -> None:
    here = district()
    who = await crew(world, city, here)
    yesterday = pickups.korea_today() - timedelta(days=1)
    morning = datetime.combine(yesterday, datetime.min.time(), KST) + timedelta(hours=7)
    bins = [await bin_at(world.pool, await site(world.pool, here)) for _ in range(3)]
    for bin_id in bins[:2]:
        await pickup(world.pool, bin_id, yesterday)
    await pickups.mark_missed(world.pool, pickups.korea_today())  # the day was closed
    first_label, tag, last_label = (
        await label(world, bins[0]),
        await nfc_tag(world, bins[1]),
        await label(world, bins[2]),
    )
    batch = [
        scan_of(first_label, at=morning + timedelta(minutes=20), weight=10.0),
        scan_of(tap_url(tag, 3), at=morning + timedelta(minutes=5), weight=None),
        scan_of(last_label, at=morning + timedelta(minutes=30)),
    ]
    first = data(await world.gql(who.token, UPLOAD, {"s": batch}))["uploadScans"]
    assert [o["scanId"] for o in first] == [s["scanId"] for s in batch]  # as sent
    assert [o["collected"] for o in first] == [True, True, False]
    assert first[2]["code"] == "PICKUP_NOT_PAID"
    for sent, outcome in zip(batch[:2], first[:2], strict=True):
        assert outcome["result"]["pickup"]["status"] == "COLLECTED"
        kept = datetime.fromisoformat(outcome["result"]["pickup"]["collectedAt"])
        assert kept == datetime.fromisoformat(sent["scannedAt"])

    again = data(await world.gql(who.token, UPLOAD, {"s": batch + batch[:1]}))["uploadScans"]
    assert [o["collected"] for o in again] == [True, True, False, True]
    assert [o["result"]["duplicate"] for o in again if o["result"]] == [True, True, True]
    assert again[2]["code"] == "PICKUP_NOT_PAID"
    counted = await world.pool.fetchrow(
        "SELECT count(*) AS scans, count(DISTINCT scan_id) AS ids FROM waste_scans"
        " WHERE bin_id = ANY($1)",
        bins,
    )
    assert dict(counted) == {"scans": 3, "ids": 3}
    collected = await world.pool.fetch(
        "SELECT collected_at FROM waste_pickups WHERE bin_id = ANY($1) AND status = 'collected'"
        " ORDER BY collected_at",
        bins,
    )
    assert [row["collected_at"] for row in collected] == [
        morning + timedelta(minutes=5),
        morning + timedelta(minutes=20),
    ]
    too_many = [scan_of(first_label) for _ in range(501)]
    assert code(await world.gql(who.token, UPLOAD, {"s": too_many})) == "BAD_USER_INPUT"


# Live


async def test_city_staff_see_each_collection_within_a_second(world: World, city: str) -> None:
    here, elsewhere = district(), district()
    who = await crew(world, city, here, elsewhere)
    bins = [await bin_at(world.pool, await site(world.pool, d)) for d in (elsewhere, here, here)]
    for bin_id in bins:
        await pickup(world.pool, bin_id)
    tags = [await label(world, bin_id) for bin_id in bins]
    url = world.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        init = {"Authorization": f"Bearer {city}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = """subscription($d: String!) { wasteCollections(districtCode: $d) {
          scanId pickupId binId districtCode collectorId collectedAt weightKg volumeLitres
          flagged flagReason } }"""
        payload = {"query": query, "variables": {"d": here}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        await asyncio.sleep(0.5)  # the subscription starts listening
        delays, seen = [], []
        for tag in tags:
            sent = scan_of(tag, weight=12.5)
            started = time.monotonic()
            assert not (await scan(world, who, sent)).get("errors")
            if tag is tags[0]:
                continue  # another district: not for this subscriber
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            delays.append(time.monotonic() - started)
            seen.append(message["payload"]["data"]["wasteCollections"])
            assert seen[-1]["scanId"] == sent["scanId"]
    assert [s["binId"] for s in seen] == [str(b) for b in bins[1:]]
    assert all(s["districtCode"] == here and s["collectorId"] == who.client_id for s in seen)
    assert seen[0]["weightKg"] == 12.5 and seen[0]["volumeLitres"] == 120
    assert not seen[0]["flagged"] and seen[0]["flagReason"] is None
    assert max(delays) < 1.0


async def test_a_revoked_token_ends_the_live_feed(world: World, city: str) -> None:
    here = district()
    who = await crew(world, city, here)
    staff = await world.clients.client(scope_names="waste:city")
    async with httpx.AsyncClient(base_url=world.url) as http:
        issued = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(staff.client_id, staff.client_secret or ""),
        )
        token = str(issued.json()["access_token"])
        url = world.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(
            url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        ) as ws:
            init = {"Authorization": f"Bearer {token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            query = "subscription($d: String!) { wasteCollections(districtCode: $d) { scanId } }"
            payload = {"query": query, "variables": {"d": here}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            await asyncio.sleep(0.5)  # the subscription starts listening
            for _ in range(2):
                bin_id = await bin_at(world.pool, await site(world.pool, here))
                await pickup(world.pool, bin_id)
                data(await scan(world, who, scan_of(await label(world, bin_id))))
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert message["type"] == "next" and not message["payload"].get("errors")
            revoked = await http.post(
                "/oauth/revoke",
                data={"token": token},
                auth=(staff.client_id, staff.client_secret or ""),
            )
            assert revoked.status_code == 200
            # The hub re-reads revocations every REFRESH_SECONDS, a follower's token is
            # checked again every RECHECK_SECONDS: the next collection after both ends it.
            await asyncio.sleep(tokens.REFRESH_SECONDS + collection.RECHECK_SECONDS + 0.5)
            bin_id = await bin_at(world.pool, await site(world.pool, here))
            await pickup(world.pool, bin_id)
            data(await scan(world, who, scan_of(await label(world, bin_id))))
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert message["type"] == "error" or message["payload"].get("errors"), message
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_only_city_staff_follow_collections(world: World) -> None:
    collector = await world.clients.token("waste:collect")
    url = world.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        init = {"Authorization": f"Bearer {collector}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = 'subscription { wasteCollections(districtCode: "11110") { scanId } }'
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert message["type"] == "error" or message["payload"].get("errors"), message
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


# Volumes


async def business_token(world: World) -> tuple[str, str]:
    """A restaurant owner signed in to the business app, and their generator."""
    scope = "waste:business"
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
    token = str(tokens.json()["access_token"])
    generator = await world.gql(
        token,
        """mutation($i: GeneratorInput!) { registerWasteGenerator(input: $i) { id } }""",
        {
            "i": {
                "businessNo": "1248100998",
                "name": "맛있는식당",
                "representative": "김사장",
                "phone": "010-1234-5678",
            }
        },
    )
    return token, data(generator)["registerWasteGenerator"]["id"]


async def own_site(world: World, token: str, generator: str, district_code: str) -> uuid.UUID:
    made = await world.gql(
        token,
        """mutation($i: SiteInput!, $k: String!) {
             addWasteSite(input: $i, idempotencyKey: $k) { id } }""",
        {
            "i": {
                "generatorId": generator,
                "name": "본점",
                "address": "서울특별시 중랑구 망우로 1",
                "lat": HOME[0],
                "lng": HOME[1],
                "districtCode": district_code,
            },
            "k": str(uuid.uuid4()),
        },
    )
    return uuid.UUID(data(made)["addWasteSite"]["id"])


async def collect(
    world: World, who: Crew, site_id: uuid.UUID, at: datetime, litres: int, kg: float | None
) -> None:
    bin_id = await bin_at(world.pool, site_id, litres)
    await pickup(world.pool, bin_id, at.date())
    answer = await world.gql(
        who.token, UPLOAD, {"s": [scan_of(await label(world, bin_id), at=at, weight=kg)]}
    )
    assert data(answer)["uploadScans"][0]["collected"], answer


VOLUMES = """query($f: Date!, $t: Date!, $p: VolumePeriod, $s: Boolean, $d: String) {
  wasteVolumes(from: $f, to: $t, period: $p, bySite: $s, districtCode: $d) {
    districtCode siteId start collections litres weighedCollections kilograms } }"""


async def test_volumes_add_up_exactly(world: World, city: str) -> None:
    """Collections on three Korean days at two sites of 중랑구 (one a business's own), some
    weighed and some not, plus imported RFID days: every total is exact, per district and
    day (through District: city staff; open data withholds these days, of fewer than three
    businesses), per site and hour (city), own sites only (business)."""
    jungnang = "11260"
    who = await crew(world, city, jungnang)
    token, generator = await business_token(world)
    mine = await own_site(world, token, generator, jungnang)
    theirs = await site(world.pool, jungnang)
    today = pickups.korea_today()
    days = [today - timedelta(days=2), today - timedelta(days=1), today]
    hour = [datetime.combine(d, datetime.min.time(), KST) for d in days]
    plan: Sequence[tuple[uuid.UUID, datetime, int, float | None]] = [
        (mine, hour[0] + timedelta(hours=8, minutes=10), 120, 30.25),
        (mine, hour[0] + timedelta(hours=8, minutes=50), 60, None),
        (theirs, hour[0] + timedelta(hours=23, minutes=59), 240, 100.5),  # 23:59 KST
        (theirs, hour[1] + timedelta(hours=0, minutes=1), 120, 40.0),  # 00:01 KST
        (mine, hour[2] + timedelta(minutes=5), 80, 20.1),
    ]
    for site_id, at, litres, kg in plan:
        await collect(world, who, site_id, at, litres, kg)
    await world.pool.executemany(
        "INSERT INTO waste_rfid_volumes (district_code, city_code, apt_code, day, quantity_kg,"
        " disposals) VALUES ('11260', 'W07', $1, $2, $3, $4)",
        [
            ("", days[0], Decimal("1234.5"), 300),
            ("W07001", days[0], Decimal("200.0"), 50),  # part of the city's row
            ("", days[1], Decimal("1000.25"), 250),
        ],
    )
    first, last = (days[0] - timedelta(days=1)).isoformat(), today.isoformat()

    district_query = """query($f: Date!, $t: Date!) { district(code: "11260") { name
             wasteVolumes(from: $f, to: $t) { day collections litres weighedCollections
               kilograms rfidKilograms rfidDisposals totalKilograms } } }"""
    staff = await world.gql(city, district_query, {"f": first, "t": last})
    district_days = data(staff)["district"]["wasteVolumes"]
    assert [d["day"] for d in district_days] == [
        (days[0] - timedelta(days=1)).isoformat(),
        *(d.isoformat() for d in days),
    ]
    assert district_days[0]["collections"] == 0 and district_days[0]["totalKilograms"] == 0
    assert district_days[1:] == [
        {
            "day": days[0].isoformat(),
            "collections": 3,
            "litres": 420,
            "weighedCollections": 2,
            "kilograms": 130.75,
            "rfidKilograms": 1234.5,
            "rfidDisposals": 300,
            "totalKilograms": 1365.25,
        },
        {
            "day": days[1].isoformat(),
            "collections": 1,
            "litres": 120,
            "weighedCollections": 1,
            "kilograms": 40.0,
            "rfidKilograms": 1000.25,
            "rfidDisposals": 250,
            "totalKilograms": 1040.25,
        },
        {
            "day": days[2].isoformat(),
            "collections": 1,
            "litres": 80,
            "weighedCollections": 1,
            "kilograms": 20.1,
            "rfidKilograms": 0.0,
            "rfidDisposals": 0,
            "totalKilograms": 20.1,
        },
    ]
    anonymous = await world.gql(None, district_query, {"f": first, "t": last})
    withheld = {"collections", "litres", "weighedCollections", "kilograms", "totalKilograms"}
    assert (
        data(anonymous)["district"]["wasteVolumes"]
        == [
            district_days[0],  # no collections: nobody's waste to withhold
            *({k: None if k in withheld else v for k, v in d.items()} for d in district_days[1:]),
        ]
    )
    entity = await world.gql(
        city,
        """query($f: Date!, $t: Date!) { _entities(representations: [
             {__typename: "District", code: "11260"}]) {
             ... on District { wasteVolumes(from: $f, to: $t) { day totalKilograms } } } }""",
        {"f": first, "t": last},
    )
    assert [d["totalKilograms"] for d in data(entity)["_entities"][0]["wasteVolumes"]] == [
        d["totalKilograms"] for d in district_days
    ]

    variables = {"f": first, "t": last, "p": "HOUR", "s": True, "d": jungnang}
    hourly = data(await world.gql(city, VOLUMES, variables))["wasteVolumes"]
    assert [
        (v["siteId"], datetime.fromisoformat(v["start"]), v["collections"], v["litres"],
         v["weighedCollections"], v["kilograms"])
        for v in hourly
    ] == [
        (str(mine), hour[0] + timedelta(hours=8), 2, 180, 1, 30.25),
        (str(theirs), hour[0] + timedelta(hours=23), 1, 240, 1, 100.5),
        (str(theirs), hour[1], 1, 120, 1, 40.0),
        (str(mine), hour[2], 1, 80, 1, 20.1),
    ]  # fmt: skip
    daily = data(await world.gql(city, VOLUMES, {**variables, "p": "DAY", "s": False}))
    assert [(v["siteId"], v["collections"], v["kilograms"]) for v in daily["wasteVolumes"]] == [
        (None, 3, 130.75),
        (None, 1, 40.0),
        (None, 1, 20.1),
    ]
    own = data(await world.gql(token, VOLUMES, {"f": first, "t": last}))["wasteVolumes"]
    assert [(v["siteId"], v["litres"]) for v in own] == [(str(mine), 180), (str(mine), 80)]
    assert code(await world.gql(who.token, VOLUMES, {"f": first, "t": last})) == "FORBIDDEN"
    assert code(await world.gql(None, VOLUMES, {"f": first, "t": last})) == "UNAUTHENTICATED"
    year = {"f": "2024-01-01", "t": "2025-06-01"}
    assert code(await world.gql(city, VOLUMES, year)) == "BAD_USER_INPUT"


async def test_open_volumes_show_a_day_only_with_enough_businesses(world: World, city: str) -> None:
    """k-anonymity of open daily volumes (IEUM_WASTE_OPEN_MIN_BUSINESSES, 3): a day whose
    collections are two businesses' (one with two sites: counted once) is withheld from
    anyone without waste:city, in District.wasteVolumes and in the open RFID-format
    export; a day of three businesses is shown."""
    gangbuk = "11305"
    who = await crew(world, city, gangbuk)
    today = pickups.korea_today()
    yesterday = today - timedelta(days=1)
    at = [
        datetime.combine(d, datetime.min.time(), KST) + timedelta(minutes=1)
        for d in (yesterday, today)
    ]
    first = await site(world.pool, gangbuk)
    first_again = uuid.uuid4()  # the same business's second site
    await world.pool.execute(
        "INSERT INTO waste_sites (site_id, generator_id, name, address, lat, lng, district_code)"
        " SELECT $1, generator_id, '2호점', address, lat, lng, district_code FROM waste_sites"
        " WHERE site_id = $2",
        first_again,
        first,
    )
    for site_id in (first, first_again, await site(world.pool, gangbuk)):
        await collect(world, who, site_id, at[0], 120, 10.0)
    for _ in range(3):
        await collect(world, who, await site(world.pool, gangbuk), at[1], 120, 20.0)

    query = """query($f: Date!, $t: Date!) { district(code: "11305") {
      wasteVolumes(from: $f, to: $t) { day collections kilograms rfidKilograms totalKilograms }
    } }"""
    days = {"f": yesterday.isoformat(), "t": today.isoformat()}
    opened = data(await world.gql(None, query, days))["district"]["wasteVolumes"]
    assert opened == [
        {"day": yesterday.isoformat(), "collections": None, "kilograms": None,
         "rfidKilograms": 0.0, "totalKilograms": None},
        {"day": today.isoformat(), "collections": 3, "kilograms": 60.0,
         "rfidKilograms": 0.0, "totalKilograms": 60.0},
    ]  # fmt: skip
    business = await world.clients.token("waste:business")  # a scope, not the city's
    assert data(await world.gql(business, query, days))["district"]["wasteVolumes"] == opened
    staff = data(await world.gql(city, query, days))["district"]["wasteVolumes"]
    assert [(d["collections"], d["kilograms"]) for d in staff] == [(3, 30.0), (3, 60.0)]

    async with httpx.AsyncClient(base_url=world.url) as http:
        months = {(d.year, d.month) for d in (yesterday, today)}
        listed = []
        for year, month in sorted(months):
            answer = await http.get(f"/waste/open/rfid-format/{gangbuk}/{year}/{month}")
            listed += answer.json()["data"]["list"]
    assert [(item["disDate"], item["disCount"]) for item in listed] == [
        (today.strftime("%Y%m%d"), 3)
    ]  # yesterday, two businesses' and no RFID volumes, is not listed at all
