"""Booking a train for a citizen end to end: consent through the consent page, seats held
at the operator's sandbox, the card confirmed through payments' gateway sandbox, a ticket
issued once; timeouts, crashes, lapsed holds, the last seat and cancellation fees."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapters.railbooking.fees import is_weekend
from resolvers.mobility.settings import MobilitySettings
from resolvers.payments import ledger
from schema.mobility import booking as flow
from schema.mobility.state import adapters_of, state_of_process
from schema.pagination import encode_cursor
from tests.mobility.helpers import BUSAN_HAEUNDAE, SEOUL_CITY_HALL, MobilityWorld, mobility_world

pytestmark = pytest.mark.db
KST = ZoneInfo("Asia/Seoul")
TRAINS = """
query($from: PlaceInput!, $to: PlaceInput!, $after: DateTime) {
  journeys(from: $from, to: $to, departAfter: $after, limit: 5) {
    itineraries { train { trainNo runDate departsAt arrivesAt adultFare
                          from { code name } to { code name } seats { generalLeft } } } } }
"""
HOURS = iter(range(6, 22))  # each test books trains of its own hour: no seat is shared


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[MobilityWorld]:
    async with mobility_world(migrated_url, kafka_bootstrap, seats_cache_seconds=0) as world:
        yield world


def code(answer: dict[str, Any]) -> str:
    return str(answer["errors"][0]["extensions"]["code"])


async def a_train(world: MobilityWorld, token: str, days: int = 2) -> dict[str, Any]:
    day = datetime.now(KST).date() + timedelta(days=days)
    after = datetime(day.year, day.month, day.day, next(HOURS), tzinfo=KST)
    answer = await world.hub.gql(
        token, TRAINS, {"from": SEOUL_CITY_HALL, "to": BUSAN_HAEUNDAE, "after": after.isoformat()}
    )
    return dict(answer["data"]["journeys"]["itineraries"][0]["train"])


async def reservations(world: MobilityWorld, booking_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=world.booking.url) as http:
        listed = (await http.get("/_sandbox/reservations")).json()
    return [r for r in listed if r["h_ptnr_rsv_id"] == booking_id]


async def booked(world: MobilityWorld, token: str, train: dict[str, Any]) -> dict[str, Any]:
    held = await world.hold(token, train, str(uuid.uuid4()))
    assert "errors" not in held, held
    paid = await world.pay(token, held["data"]["holdSeats"], str(uuid.uuid4()))
    assert "errors" not in paid, paid
    return dict(paid["data"]["payBooking"])


@pytest.fixture
async def booker(world: MobilityWorld) -> AsyncIterator[flow.Booker]:
    """The booking flow as the mobility worker runs it, in this process; it takes up a
    request's booking at once (the worker waits IEUM_MOBILITY_HOLDING_STALE_SECONDS)."""
    section = world.hub.settings.section(MobilitySettings).model_copy(
        update={"holding_stale_seconds": 0.001}
    )
    async with adapters_of(section) as adapters, world.hub.flow() as payments:
        yield flow.Booker(world.hub.pool, state_of_process(section, adapters), payments)


async def test_a_citizen_books_pays_and_gets_one_ticket(world: MobilityWorld) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)

    held = (await world.hold(token, train, "k-1"))["data"]["holdSeats"]

    assert held["status"] == "HELD" and held["pnr"] and len(held["seats"]) == 1
    assert held["amount"] == train["adultFare"] and held["orderId"]
    again = (await world.hold(token, train, "k-1"))["data"]["holdSeats"]
    assert (again["id"], again["pnr"]) == (held["id"], held["pnr"])
    paid = (await world.pay(token, held, "p-1"))["data"]["payBooking"]
    assert paid["status"] == "TICKETED" and paid["saleNo"]
    [at_operator] = await reservations(world, held["id"])
    assert at_operator["h_rsv_stt_cd"] == "TICKETED"
    gateway = await world.hub.gateway_payment(held["orderId"])
    assert gateway is not None and gateway["status"] == "DONE"
    assert gateway["totalAmount"] == held["amount"]
    mine = await world.hub.gql(token, "{ bookings { nodes { id status } } }")
    assert mine["data"]["bookings"]["nodes"][0] == {"id": held["id"], "status": "TICKETED"}
    audited = await world.hub.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'booking.read' AND subject = $1",
        held["id"],
    )
    assert audited >= 4
    assert await ledger.unbalanced_transactions(world.hub.pool) == 0


async def test_a_hold_whose_answer_was_lost_is_found_and_paid_once(world: MobilityWorld) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    # every try of the hold is done at the operator and its answer lost: the request fails
    world.faults(world.booking, error="5xx_after", path="/reservations", count=20)
    try:
        lost = await world.hold(token, train, "k-lost")
    finally:
        world.faults(world.booking)
    assert code(lost) == "UPSTREAM_UNAVAILABLE"

    held = (await world.hold(token, train, "k-lost"))["data"]["holdSeats"]

    assert held["status"] == "HELD"
    assert len(await reservations(world, held["id"])) == 1
    card = await world.hub.card_present(held["orderId"], held["amount"])
    paid = (await world.pay(token, held, "p-lost", card))["data"]["payBooking"]
    again = (await world.pay(token, held, "p-lost", card))["data"]["payBooking"]
    assert paid["status"] == again["status"] == "TICKETED" and paid["saleNo"] == again["saleNo"]
    charges = await world.hub.pool.fetchval(
        "SELECT count(*) FROM payments WHERE source = 'mobility' AND reference = $1"
        " AND status = 'confirmed'",
        held["id"],
    )
    assert charges == 1


async def test_a_hold_answered_late_within_the_adapter_retries_holds_once(
    world: MobilityWorld,
) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    world.faults(world.booking, error="hang_after", path="/reservations", count=1)
    try:
        held = (await world.hold(token, train, "k-late"))["data"]["holdSeats"]
    finally:
        world.faults(world.booking)
    assert held["status"] == "HELD"
    assert len(await reservations(world, held["id"])) == 1


async def test_a_paid_booking_left_without_its_ticket_is_repaired(
    world: MobilityWorld, booker: flow.Booker
) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    held = (await world.hold(token, train, "k-crash"))["data"]["holdSeats"]
    # the card is confirmed, then the ticket call fails: as if the hub died between them
    world.faults(world.booking, error="5xx", path="/ticket")
    try:
        paying = await world.pay(token, held, "p-crash")
    finally:
        world.faults(world.booking)
    assert code(paying) == "UPSTREAM_UNAVAILABLE"
    left = await world.hub.gql(
        token, "query($i: UUID!) { booking(id: $i) { status } }", {"i": held["id"]}
    )
    assert left["data"]["booking"]["status"] == "PAYING"

    await flow.sync(booker)

    done = await world.hub.gql(
        token, "query($i: UUID!) { booking(id: $i) { status saleNo } }", {"i": held["id"]}
    )
    assert done["data"]["booking"]["status"] == "TICKETED" and done["data"]["booking"]["saleNo"]
    [at_operator] = await reservations(world, held["id"])
    assert at_operator["h_rsv_stt_cd"] == "TICKETED"


async def test_a_ticket_the_operator_refuses_after_payment_is_refunded(
    world: MobilityWorld,
) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    held = (await world.hold(token, train, "k-lapse"))["data"]["holdSeats"]
    await world.control(world.booking, "/_sandbox/clock", {"advance_seconds": 11 * 60})
    try:
        paid = (await world.pay(token, held, "p-lapse"))["data"]["payBooking"]
    finally:
        async with httpx.AsyncClient(base_url=world.booking.url) as http:
            await http.delete("/_sandbox/clock")
    assert paid["status"] == "REFUNDED" and paid["refundedAmount"] == held["amount"]
    assert paid["failure"]["code"] == "ERR211162"
    gateway = await world.hub.gateway_payment(held["orderId"])
    assert gateway is not None and gateway["status"] == "CANCELED"
    assert await ledger.unbalanced_transactions(world.hub.pool) == 0


async def test_an_unpaid_hold_is_released_when_it_lapses(
    world: MobilityWorld, booker: flow.Booker
) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    # the operator's clock ten minutes behind: its hold lapses now by the hub's clock
    now = datetime.now(KST) - timedelta(minutes=10, seconds=1)
    await world.control(world.booking, "/_sandbox/clock", {"now": now.isoformat()})
    try:
        held = (await world.hold(token, train, "k-unpaid"))["data"]["holdSeats"]
        await flow.sync(booker)
    finally:
        async with httpx.AsyncClient(base_url=world.booking.url) as http:
            await http.delete("/_sandbox/clock")
    state = await world.hub.gql(
        token, "query($i: UUID!) { booking(id: $i) { status } }", {"i": held["id"]}
    )
    assert state["data"]["booking"]["status"] == "RELEASED"
    [at_operator] = await reservations(world, held["id"])
    assert at_operator["h_rsv_stt_cd"] in ("RELEASED", "CANCELLED")


async def test_the_last_seat_goes_to_one_of_two_apps(world: MobilityWorld) -> None:
    (_, first), (_, second) = await world.citizen(), await world.citizen()
    train = await a_train(world, first)
    await world.control(
        world.booking,
        "/_sandbox/seats",
        {"train_no": train["trainNo"], "run_date": train["runDate"], "left": 1},
    )

    answers = await asyncio.gather(
        world.hold(first, train, str(uuid.uuid4())), world.hold(second, train, str(uuid.uuid4()))
    )

    outcomes = sorted("errors" in answer for answer in answers)
    assert outcomes == [False, True]
    refused = next(answer for answer in answers if "errors" in answer)
    assert code(refused) == "SOLD_OUT"


async def test_a_token_without_the_citizens_consent_cannot_book(world: MobilityWorld) -> None:
    planner = await world.hub.clients.token("mobility:plan")
    train = await a_train(world, planner)
    app_alone = await world.hub.clients.token("mobility:book mobility:plan")
    assert code(await world.hold(app_alone, train, "k-app")) == "CITIZEN_CONSENT_REQUIRED"
    _, plan_only = await world.citizen(scope="mobility:plan")
    assert code(await world.hold(plan_only, train, "k-plan")) == "FORBIDDEN"


async def test_bookings_are_seen_by_their_citizen_through_their_app_only(
    world: MobilityWorld,
) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    held = (await world.hold(token, train, "k-own"))["data"]["holdSeats"]
    _, stranger = await world.citizen()
    peek = await world.hub.gql(
        stranger, "query($i: UUID!) { booking(id: $i) { id } }", {"i": held["id"]}
    )
    assert code(peek) == "BOOKING_NOT_FOUND"
    theirs = await world.hub.gql(stranger, "{ bookings { nodes { id } } }")
    assert theirs["data"]["bookings"]["nodes"] == []
    assert code(await world.cancel(stranger, held["id"])) == "BOOKING_NOT_FOUND"


BOOKINGS_PAGE = """query($first: Int!, $after: String) {
  bookings(first: $first, after: $after) {
    edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""


async def test_a_citizens_bookings_page_newest_first_each_once(world: MobilityWorld) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    made = [
        (await world.hold(token, train, f"k-page-{i}"))["data"]["holdSeats"]["id"] for i in range(5)
    ]
    # Two made in the same instant: the id decides their order, so neither is skipped.
    await world.hub.pool.execute(
        "UPDATE mobility_bookings SET created_at = (SELECT created_at FROM mobility_bookings"
        " WHERE booking_id = $1) WHERE booking_id = $2",
        uuid.UUID(made[1]),
        uuid.UUID(made[2]),
    )
    newest_first = [
        str(r["booking_id"])
        for r in await world.hub.pool.fetch(
            "SELECT booking_id FROM mobility_bookings WHERE booking_id = ANY($1::uuid[])"
            " ORDER BY created_at DESC, booking_id DESC",
            [uuid.UUID(i) for i in made],
        )
    ]
    assert newest_first[0] == made[4]

    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    after = None
    while not pages or pages[-1]["hasNextPage"]:
        answer = await world.hub.gql(token, BOOKINGS_PAGE, {"first": 2, "after": after})
        page = answer["data"]["bookings"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        pages.append(page["pageInfo"])
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]

    assert seen == newest_first
    assert [(p["hasNextPage"], p["hasPreviousPage"]) for p in pages] == [
        (True, False),
        (True, True),
        (False, True),
    ]
    for forged in (
        "2026-12-01",
        encode_cursor("2026-12-01T00:00:00", made[0]),  # no zone
        encode_cursor("9999-12-31T23:59:59-14:00", made[0]),  # past the last UTC time
        encode_cursor(1, 2),
    ):
        refused = await world.hub.gql(token, BOOKINGS_PAGE, {"first": 2, "after": forged})
        assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}
    too_many = await world.hub.gql(token, BOOKINGS_PAGE, {"first": 101})
    assert code(too_many) == "BAD_USER_INPUT"


async def test_cancelling_a_ticket_refunds_all_but_the_operators_fee(world: MobilityWorld) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token, days=3)
    ticket = await booked(world, token, train)
    departs = datetime.fromisoformat(train["departsAt"])
    hour_before = departs - timedelta(hours=1)
    await world.control(world.booking, "/_sandbox/clock", {"now": hour_before.isoformat()})
    try:
        cancelled = (await world.cancel(token, ticket["id"]))["data"]["cancelBooking"]
    finally:
        async with httpx.AsyncClient(base_url=world.booking.url) as http:
            await http.delete("/_sandbox/clock")

    rate = 20 if is_weekend(departs.astimezone(KST).date()) else 5  # within 3 h of departure
    fee = ticket["amount"] * rate // 100 // 10 * 10
    assert cancelled["status"] == "REFUNDED"
    assert (cancelled["cancelFee"], cancelled["refundedAmount"]) == (fee, ticket["amount"] - fee)
    gateway = await world.hub.gateway_payment(ticket["orderId"])
    assert gateway is not None and gateway["balanceAmount"] == fee
    again = (await world.cancel(token, ticket["id"]))["data"]["cancelBooking"]
    assert again["refundedAmount"] == ticket["amount"] - fee
    assert await ledger.unbalanced_transactions(world.hub.pool) == 0


async def test_cancelling_a_hold_gives_the_seats_back(world: MobilityWorld) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    held = (await world.hold(token, train, "k-back"))["data"]["holdSeats"]
    released = (await world.cancel(token, held["id"]))["data"]["cancelBooking"]
    assert released["status"] == "RELEASED"
    [at_operator] = await reservations(world, held["id"])
    assert at_operator["h_rsv_stt_cd"] == "RELEASED"


# The operator's changes to booked trains

TRAIN_STATE = """query($i: UUID!) { booking(id: $i) {
  status delayMinutes trainCancelled amount cancelFee refundedAmount failure { code } } }"""


@pytest.fixture
async def checker(world: MobilityWorld) -> AsyncIterator[flow.Booker]:
    """The worker's flow asking about every booked train in the next four days at each
    round (the worker asks about the next 36 hours every 5 minutes)."""
    section = world.hub.settings.section(MobilitySettings).model_copy(
        update={"train_check_hours": 96, "train_check_seconds": 0.001}
    )
    async with adapters_of(section) as adapters, world.hub.flow() as payments:
        yield flow.Booker(world.hub.pool, state_of_process(section, adapters), payments)


async def train_state(world: MobilityWorld, token: str, booking_id: str) -> dict[str, Any]:
    answer = await world.hub.gql(token, TRAIN_STATE, {"i": booking_id})
    return dict(answer["data"]["booking"])


async def announce(world: MobilityWorld, train: dict[str, Any], **change: Any) -> None:
    body = {"train_no": train["trainNo"], "run_date": train["runDate"], **change}
    await world.control(world.booking, "/_sandbox/trains", body)


async def test_a_delay_the_operator_announces_shows_on_the_booking(
    world: MobilityWorld, checker: flow.Booker
) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    ticket = await booked(world, token, train)
    assert (await train_state(world, token, ticket["id"]))["delayMinutes"] == 0

    await announce(world, train, delay_minutes=25)
    await flow.sync(checker)

    late = await train_state(world, token, ticket["id"])
    assert (late["status"], late["delayMinutes"], late["trainCancelled"]) == ("TICKETED", 25, False)
    await announce(world, train, delay_minutes=40)
    await asyncio.sleep(0.01)
    await flow.sync(checker)
    assert (await train_state(world, token, ticket["id"]))["delayMinutes"] == 40


async def test_a_cancelled_trains_ticket_is_refunded_in_full(
    world: MobilityWorld, checker: flow.Booker
) -> None:
    _, token = await world.citizen()
    train = await a_train(world, token)
    ticket = await booked(world, token, train)

    await announce(world, train, cancelled=True)
    await flow.sync(checker)

    done = await train_state(world, token, ticket["id"])
    assert (done["status"], done["trainCancelled"]) == ("REFUNDED", True)
    assert (done["cancelFee"], done["refundedAmount"]) == (0, ticket["amount"])
    assert done["failure"]["code"] == "TRAIN_CANCELLED"
    [at_operator] = await reservations(world, ticket["id"])
    assert (at_operator["h_rsv_stt_cd"], at_operator["h_ret_fee"]) == ("REFUNDED", "00000000")
    gateway = await world.hub.gateway_payment(ticket["orderId"])
    assert gateway is not None and gateway["status"] == "CANCELED"
    assert gateway["balanceAmount"] == 0
    await flow.sync(checker)
    assert (await train_state(world, token, ticket["id"]))["refundedAmount"] == ticket["amount"]
    assert await ledger.unbalanced_transactions(world.hub.pool) == 0
