"""A seeded run of random requests, payments, retries, scans (online, offline, repeated,
refused) and cancellations through GraphQL; afterwards every total is exact: the volumes
the city sees are what was collected, every collected or scheduled pickup is paid once, and
every cancelled paid pickup is refunded."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from resolvers.payments.store import KST
from resolvers.waste import pickups
from tests.payments.helpers import World
from tests.waste.test_collection import SCAN, UPLOAD, Crew, crew, label, scan_of
from tests.waste.test_pickups import Business, confirm, data, register, request, set_tariff

pytestmark = pytest.mark.slow

OPERATIONS = 300
SEED = 20261202
DISTRICT = "11170"  # 용산구: no other test's tariff


@dataclass
class Ledger:
    """What the test itself knows happened, to compare with what the hub says."""

    collected: dict[str, tuple[int, float]] = field(default_factory=dict)  # pickup → (L, kg)
    scheduled: dict[str, str] = field(default_factory=dict)  # pickup id → bin id
    cancelled_paid: set[str] = field(default_factory=set)
    labels: dict[str, str] = field(default_factory=dict)  # bin → QR text
    offline: list[dict[str, Any]] = field(default_factory=list)  # scans to upload again


@dataclass
class Run:
    world: World
    rng: random.Random
    businesses: list[Business]
    bins: list[tuple[Business, str, int]]  # (owner, bin id, litres)
    crew: Crew
    book: Ledger = field(default_factory=Ledger)
    days_used: dict[str, int] = field(default_factory=dict)


async def op_request_and_pay(run: Run) -> None:
    owner, bin_id, _ = run.rng.choice(run.bins)
    key = str(uuid.uuid4())
    day = pickups.korea_today()
    first = await request(run.world, owner, key, bin=bin_id, day=day)
    if first.get("errors"):  # the bin's pickup today is taken: fine, nothing happened
        return
    again = await request(run.world, owner, key, bin=bin_id, day=day)  # a retry
    assert data(again)["requestPickup"]["id"] == data(first)["requestPickup"]["id"]
    requested = data(first)["requestPickup"]
    if requested["status"] != "REQUESTED" or requested.get("payment") is None:
        return
    confirmed = data(await confirm(run.world, owner.token, requested))["confirmPickupPayment"]
    if confirmed["status"] in ("PAID", "SCHEDULED"):
        run.book.scheduled[confirmed["id"]] = bin_id


async def op_cancel(run: Run) -> None:
    if not run.book.scheduled:
        return
    pickup_id = run.rng.choice(sorted(run.book.scheduled))
    owner = next(b for b, bin_id, _ in run.bins if bin_id == run.book.scheduled[pickup_id])
    answer = await run.world.gql(
        owner.token,
        'mutation($p: UUID!) { cancelPickup(pickupId: $p, reason: "휴업") { id status } }',
        {"p": pickup_id},
    )
    if not answer.get("errors"):
        assert data(answer)["cancelPickup"]["status"] == "CANCELLED"
        del run.book.scheduled[pickup_id]
        run.book.cancelled_paid.add(pickup_id)


async def op_scan(run: Run) -> None:
    if not run.book.scheduled:
        return
    pickup_id = run.rng.choice(sorted(run.book.scheduled))
    bin_id = run.book.scheduled[pickup_id]
    litres = next(v for _, b, v in run.bins if b == bin_id)
    if bin_id not in run.book.labels:
        run.book.labels[bin_id] = await label(run.world, uuid.UUID(bin_id))
    kg = round(run.rng.uniform(5, 60), 2)
    scan = scan_of(
        run.book.labels[bin_id],
        at=datetime.now(KST) - timedelta(minutes=run.rng.randrange(0, 30)),
        lat=37.5729,
        lng=126.9794,
        weight=kg,
    )
    offline = run.rng.random() < 0.4
    if offline:  # saved on the phone, uploaded later (and again)
        answer = await run.world.gql(run.crew.token, UPLOAD, {"s": [scan]})
        run.book.offline.append(scan)
        collected = data(answer)["uploadScans"][0]["collected"]
    else:
        answer = await run.world.gql(run.crew.token, SCAN, {"i": scan})
        collected = data(answer)["scanBin"]["pickup"]["status"] == "COLLECTED"
    assert collected, answer
    run.book.collected[pickup_id] = (litres, kg)
    del run.book.scheduled[pickup_id]


async def op_upload_again(run: Run) -> None:
    if run.book.offline:
        scans = run.rng.sample(run.book.offline, min(3, len(run.book.offline)))
        answer = await run.world.gql(run.crew.token, UPLOAD, {"s": scans})
        assert not answer.get("errors"), answer


async def op_scan_unpaid(run: Run) -> None:
    """A bin with nothing paid today: refused, nothing counted."""
    _, bin_id, _ = run.rng.choice(run.bins)
    busy = set(run.book.scheduled.values())
    if bin_id in busy:
        return
    if bin_id not in run.book.labels:
        run.book.labels[bin_id] = await label(run.world, uuid.UUID(bin_id))
    answer = await run.world.gql(
        run.crew.token, SCAN, {"i": scan_of(run.book.labels[bin_id], lat=37.5729, lng=126.9794)}
    )
    if answer.get("errors"):
        assert answer["errors"][0]["extensions"]["code"] in (
            "PICKUP_NOT_PAID",
            "PICKUP_ALREADY_COLLECTED",
        )


OPS = [
    (op_request_and_pay, 35),
    (op_cancel, 8),
    (op_scan, 30),
    (op_upload_again, 12),
    (op_scan_unpaid, 15),
]


async def test_random_requests_payments_scans_and_cancellations_add_up(world: World) -> None:
    city = await world.clients.token("waste:city")
    data(await set_tariff(world, city, DISTRICT, 40, pickups.korea_today() - timedelta(days=1)))
    rng = random.Random(SEED)
    businesses = [await register(world, DISTRICT, rng.choice([60, 120, 240])) for _ in range(6)]
    bins = [(b, b.bin, await _volume(world, b.bin)) for b in businesses]
    run = Run(world, rng, businesses, bins, await crew(world, city, DISTRICT))
    for _ in range(OPERATIONS):
        operation = rng.choices([op for op, _ in OPS], weights=[w for _, w in OPS])[0]
        await operation(run)

    today = pickups.korea_today().isoformat()
    volumes = data(
        await world.gql(
            city,  # every figure: open data may withhold a day of too few businesses
            """query($f: Date!, $t: Date!) { district(code: "11170") {
                 wasteVolumes(from: $f, to: $t) { collections litres kilograms } } }""",
            {"f": today, "t": today},
        )
    )["district"]["wasteVolumes"][0]
    assert run.book.collected, "the run collected something"
    assert volumes["collections"] == len(run.book.collected)
    assert volumes["litres"] == sum(litres for litres, _ in run.book.collected.values())
    assert volumes["kilograms"] == pytest.approx(
        sum(kg for _, kg in run.book.collected.values()), abs=0.005
    )

    rows = await world.pool.fetch(
        "SELECT pickup_id::text, status, payment_id FROM waste_pickups WHERE district_code = $1",
        DISTRICT,
    )
    status = {row["pickup_id"]: row for row in rows}
    for pickup_id in run.book.collected:
        assert status[pickup_id]["status"] == "collected"
    for pickup_id in [*run.book.collected, *run.book.scheduled]:
        assert await _payment_status(world, status[pickup_id]["payment_id"]) == "confirmed"
    for pickup_id in run.book.cancelled_paid:
        assert status[pickup_id]["status"] == "cancelled"
        assert await _payment_status(world, status[pickup_id]["payment_id"]) == "refunded"
    charged = await world.pool.fetchval(
        "SELECT count(*) FROM payments WHERE source = 'waste' AND status IN"
        " ('confirmed', 'partially_refunded', 'refunded')"
        " AND reference = ANY($1)",
        [*run.book.collected, *run.book.scheduled, *run.book.cancelled_paid],
    )
    assert charged == len(run.book.collected) + len(run.book.scheduled) + len(
        run.book.cancelled_paid
    )  # one payment each, never two


async def _volume(world: World, bin_id: str) -> int:
    return int(
        await world.pool.fetchval(
            "SELECT volume_litres FROM waste_bins WHERE bin_id = $1", uuid.UUID(bin_id)
        )
    )


async def _payment_status(world: World, payment_id: uuid.UUID | None) -> str | None:
    if payment_id is None:
        return None
    found = await world.pool.fetchval(
        "SELECT status FROM payments WHERE payment_id = $1", payment_id
    )
    return str(found) if found is not None else None
