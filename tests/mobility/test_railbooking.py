"""The railbooking adapter against its sandbox over real HTTP: seats that deplete per
segment, holds that lapse, idempotent holds, tickets and refunds, the operator's fee by time
before departure, lost answers, the last seat raced by two partners, signatures."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.errors import UpstreamRejected, UpstreamServerError, UpstreamTimeout
from adapters.kinds import (
    BookingRefused,
    RailBooking,
    RailReservation,
    SeatAvailability,
    SeatClass,
)
from adapters.railbooking import PartnerBooking, adapter, fees, wire
from adapters.railbooking.sandbox import (
    OTHER_PARTNER_ID,
    OTHER_PARTNER_KEY,
    PARTNER_ID,
    PARTNER_KEY,
    SANDBOX,
)
from adapters.railbooking.wire import KST, Code
from adapters.sandbox import rail_network
from adapters.sandbox.rail_network import NetworkTrain
from adapters.sandbox.server import RunningSandbox, running
from adapters.testing import checks
from resolvers.mobility import stations

BUDGET = 1.0
WIRE_DOC = Path(__file__).parents[2] / "docs" / "upstreams" / "railbooking.md"
SEOUL, DAEJEON, BUSAN = (stations.by_name(name) for name in ("서울", "대전", "부산"))
assert SEOUL and DAEJEON and BUSAN


def connect(served: RunningSandbox, **values: Any) -> RailBooking:
    settings = adapter.read_settings(**served.settings() | {"timeout_seconds": BUDGET} | values)
    connection = adapter.connect(settings)
    assert isinstance(connection, RailBooking)
    return connection


@pytest.fixture
async def served() -> AsyncIterator[RunningSandbox]:
    async with running(SANDBOX) as sandbox:
        yield sandbox


@pytest.fixture
async def booking(served: RunningSandbox) -> AsyncIterator[RailBooking]:
    connection = connect(served)
    yield connection
    await connection.aclose()


@pytest.fixture
async def other(served: RunningSandbox) -> AsyncIterator[RailBooking]:
    """Another app holding a partnership of its own with the operator."""
    connection = connect(served, partner_id=OTHER_PARTNER_ID, partner_key=OTHER_PARTNER_KEY)
    yield connection
    await connection.aclose()


async def control(served: RunningSandbox, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=served.url) as http:
        if body is None:
            response = await http.get(f"/_sandbox/{path}")
        else:
            response = await http.post(f"/_sandbox/{path}", json=body)
    response.raise_for_status()
    return response.json()


async def clock_at(served: RunningSandbox, moment: datetime) -> None:
    await control(served, "clock", {"now": moment.isoformat()})


def seoul_busan(weekday: int) -> tuple[NetworkTrain, datetime, datetime]:
    """A train stopping at 서울, 대전 and 부산 in that order, leaving 서울 after 08:00 on
    the next `weekday` (0 Monday) at least two days away and not a public holiday; its
    departure from 서울 and arrival at 부산."""
    assert SEOUL and DAEJEON and BUSAN
    day = datetime.now(KST).date() + timedelta(days=2)
    while day.weekday() != weekday or (weekday < 4 and fees.is_weekend(day)):
        day += timedelta(days=1)
    for train, dep, arr in rail_network.between(day, SEOUL.code, BUSAN.code):
        codes = [stop.station for stop in train.stops]
        assert dep.departs and arr.arrives
        if DAEJEON.code in codes and dep.departs.hour >= 8:
            return train, dep.departs, arr.arrives
    raise AssertionError(f"no 서울-대전-부산 train on {day}")


async def hold(
    connection: RailBooking,
    train: NetworkTrain,
    ref: str,
    *,
    dep: str | None = None,
    arr: str | None = None,
    passengers: int = 1,
    seat_class: SeatClass = SeatClass.GENERAL,
) -> RailReservation:
    assert SEOUL and BUSAN
    return await connection.hold(
        train.train_no,
        train.run_date,
        dep or SEOUL.code,
        arr or BUSAN.code,
        seat_class,
        passengers,
        partner_ref=ref,
    )


async def refused(call: Awaitable[Any]) -> str:
    """The operator's message code of a call that must be refused."""
    with pytest.raises(BookingRefused) as caught:
        await call
    return caught.value.code


async def left(connection: RailBooking, train: NetworkTrain, dep: str, arr: str) -> int:
    found = await connection.availability(train.train_no, train.run_date, dep, arr)
    return found.general_left


# Seats and fares


async def test_availability_is_the_networks_train_with_its_fares(
    booking: RailBooking,
) -> None:
    truth = SANDBOX.expected() if SANDBOX.expected else None
    assert truth is not None
    found = await booking.availability(
        truth.train_no, truth.run_date, truth.dep_station, truth.arr_station
    )
    assert found == truth
    train = rail_network.train(truth.train_no, truth.run_date)
    assert train is not None
    assert 0 < found.general_left <= train.general_seats
    assert found.general_fare == rail_network.fare(
        train, truth.dep_station, truth.arr_station, "general"
    )


async def test_seoul_busan_ktx_fares_are_korails(booking: RailBooking) -> None:
    assert SEOUL and BUSAN
    train, _, _ = seoul_busan(1)
    found = await booking.availability(train.train_no, train.run_date, SEOUL.code, BUSAN.code)
    if train.grade == "KTX":
        assert (found.general_fare, found.special_fare) == (59_800, 83_700)
    assert found.general_fare == rail_network.fare(train, SEOUL.code, BUSAN.code, "general")


async def test_held_seats_are_taken_from_what_is_left(booking: RailBooking) -> None:
    assert SEOUL and BUSAN
    train, _, _ = seoul_busan(1)
    before = await left(booking, train, SEOUL.code, BUSAN.code)
    held = await hold(booking, train, "party-of-3", passengers=3)
    assert len(held.seats) == len(set(held.seats)) == 3
    assert held.amount == 3 * rail_network.fare(train, SEOUL.code, BUSAN.code, "general")
    assert await left(booking, train, SEOUL.code, BUSAN.code) == before - 3


async def test_a_train_that_does_not_run_so_is_refused(booking: RailBooking) -> None:
    assert SEOUL and BUSAN
    train, _, _ = seoul_busan(1)
    backwards = booking.availability(train.train_no, train.run_date, BUSAN.code, SEOUL.code)
    assert await refused(backwards) == Code.NO_SUCH_TRAIN
    elsewhere = booking.availability("99999", train.run_date, SEOUL.code, BUSAN.code)
    assert await refused(elsewhere) == Code.NO_SUCH_TRAIN


async def test_trains_asked_at_once_are_one_seats_query(
    served: RunningSandbox, booking: RailBooking
) -> None:
    """A journey search asks about several trains at once: one call answers them all,
    each caller its own train, and a train that does not run so is refused alone."""
    assert SEOUL and DAEJEON and BUSAN
    train, _, _ = seoul_busan(2)
    await hold(booking, train, "one-taken", arr=DAEJEON.code)
    before = served.injector.served
    asked = [(SEOUL.code, BUSAN.code), (SEOUL.code, DAEJEON.code), (DAEJEON.code, BUSAN.code)]
    found = await asyncio.gather(
        *(booking.availability(train.train_no, train.run_date, a, b) for a, b in asked),
        booking.availability(train.train_no, train.run_date, BUSAN.code, SEOUL.code),
        booking.availability(train.train_no, train.run_date, SEOUL.code, BUSAN.code),
        return_exceptions=True,
    )
    assert served.injector.served == before + 1
    whole, first_leg, second_leg, backwards, again = found
    assert isinstance(backwards, BookingRefused) and backwards.code == Code.NO_SUCH_TRAIN
    for seats, (a, b) in zip((whole, first_leg, second_leg), asked, strict=True):
        assert not isinstance(seats, BaseException)
        assert (seats.train_no, seats.dep_station, seats.arr_station) == (train.train_no, a, b)
        single = await left(booking, train, a, b)
        assert seats.general_left == single
    assert again == whole
    assert isinstance(whole, SeatAvailability) and isinstance(first_leg, SeatAvailability)
    assert isinstance(second_leg, SeatAvailability)
    assert first_leg.general_left == whole.general_left == second_leg.general_left - 1


async def test_a_seats_query_down_fails_each_of_its_trains(
    served: RunningSandbox, booking: RailBooking
) -> None:
    assert SEOUL and DAEJEON and BUSAN
    train, _, _ = seoul_busan(2)
    await served.inject(error="5xx")
    found = await asyncio.gather(
        booking.availability(train.train_no, train.run_date, SEOUL.code, BUSAN.code),
        booking.availability(train.train_no, train.run_date, SEOUL.code, DAEJEON.code),
        return_exceptions=True,
    )
    await served.clear()
    assert all(isinstance(error, UpstreamServerError) for error in found)


async def test_a_seats_query_is_bounded_and_takes_a_list_of_one_as_the_object(
    served: RunningSandbox,
) -> None:
    assert SEOUL and BUSAN
    train, _, _ = seoul_busan(2)
    item = {
        "h_trn_no": wire.train_no(train.train_no),
        "h_run_dt": wire.day(train.run_date),
        "h_dpt_rs_stn_cd": SEOUL.code,
        "h_arv_rs_stn_cd": BUSAN.code,
    }

    async def query(listed: object) -> httpx.Response:
        body = {"trn_infos": {"trn_info": listed}}
        params = wire.signed_query(
            PARTNER_ID, PARTNER_KEY, "POST", wire.SEATS_QUERY, {}, body, datetime.now(KST)
        )
        async with httpx.AsyncClient(base_url=served.url) as http:
            return await http.post(wire.SEATS_QUERY, params=params, json=body)

    one = await query(item)
    assert one.status_code == 200
    assert one.json()["trn_infos"]["trn_info"][0]["h_msg_cd"] == Code.OK
    many = await query([item] * (wire.MAX_SEAT_QUERIES + 1))
    assert many.status_code == 400 and many.json()["h_msg_cd"] == Code.INVALID


# Holds


async def test_a_lapsed_hold_frees_its_seats_and_cannot_be_ticketed(
    served: RunningSandbox, booking: RailBooking
) -> None:
    assert SEOUL and BUSAN
    train, departs, _ = seoul_busan(1)
    await clock_at(served, departs - timedelta(days=1))
    await control(served, "config", {"hold_minutes": 3})
    before = await left(booking, train, SEOUL.code, BUSAN.code)
    held = await hold(booking, train, "lapsing", passengers=2)
    assert held.status == "HELD" and held.pay_by is not None
    assert abs(held.pay_by - (departs - timedelta(days=1) + timedelta(minutes=3))) < timedelta(
        seconds=2
    )
    assert await left(booking, train, SEOUL.code, BUSAN.code) == before - 2

    await control(served, "clock", {"advance_seconds": 3 * 60 + 1})
    assert await left(booking, train, SEOUL.code, BUSAN.code) == before
    lapsed = await booking.reservation(held.pnr)
    assert lapsed is not None and lapsed.status == "CANCELLED"
    assert await refused(booking.ticket(held.pnr, held.amount, "pay-late")) == Code.HOLD_LAPSED


async def test_a_hold_near_departure_lasts_until_departure(
    served: RunningSandbox, booking: RailBooking
) -> None:
    train, departs, _ = seoul_busan(1)
    await clock_at(served, departs - timedelta(minutes=4))
    held = await hold(booking, train, "last-minute")
    assert held.pay_by == departs
    await clock_at(served, departs + timedelta(seconds=1))
    assert await refused(hold(booking, train, "too-late")) == Code.DEPARTED


async def test_a_repeated_partner_ref_answers_the_same_hold(
    served: RunningSandbox, booking: RailBooking, other: RailBooking
) -> None:
    assert SEOUL and DAEJEON and BUSAN
    train, _, _ = seoul_busan(1)
    before = await left(booking, train, SEOUL.code, BUSAN.code)
    first = await hold(booking, train, "once", passengers=2)
    again = await hold(booking, train, "once", passengers=2)
    assert again == first
    assert await left(booking, train, SEOUL.code, BUSAN.code) == before - 2
    assert await refused(hold(booking, train, "once", passengers=3)) == Code.REF_REUSED
    assert await refused(hold(booking, train, "once", arr=DAEJEON.code)) == Code.REF_REUSED
    theirs = await hold(other, train, "once", passengers=2)  # references are per partner
    assert theirs.pnr != first.pnr
    assert await booking.reservation_by_ref("once") == first
    assert await other.reservation_by_ref("once") == theirs
    assert await booking.reservation_by_ref("never-sent") is None


async def test_a_hold_whose_answer_is_lost_is_found_by_ref_and_retried_to_the_same_pnr(
    served: RunningSandbox, booking: RailBooking
) -> None:
    train, _, _ = seoul_busan(1)
    await served.inject(error="hang_after", path="reservations")
    with pytest.raises(UpstreamTimeout):
        await hold(booking, train, "lost-answer")
    await served.clear()
    found = await booking.reservation_by_ref("lost-answer")
    assert found is not None and found.status == "HELD"
    again = await hold(booking, train, "lost-answer")
    assert again.pnr == found.pnr
    made = await control(served, "reservations")
    assert [r["h_pnr_no"] for r in made] == [found.pnr]


@pytest.mark.parametrize("fault", ["hang_after", "5xx_after"])
async def test_a_hold_retried_after_a_lost_answer_holds_once(
    served: RunningSandbox, booking: RailBooking, fault: str
) -> None:
    assert SEOUL and BUSAN
    train, _, _ = seoul_busan(1)
    before = await left(booking, train, SEOUL.code, BUSAN.code)
    await served.inject(error=fault, path="reservations", count=1)
    held = await hold(booking, train, "retried", passengers=2)
    assert held.status == "HELD"
    assert await left(booking, train, SEOUL.code, BUSAN.code) == before - 2
    assert len(await control(served, "reservations")) == 1


async def test_the_last_seat_held_by_two_partners_at_once_goes_to_one(
    served: RunningSandbox, booking: RailBooking, other: RailBooking
) -> None:
    assert SEOUL and BUSAN
    train, _, _ = seoul_busan(1)
    wanted = {"train_no": train.train_no, "run_date": train.run_date.isoformat()}
    await control(served, "seats", wanted | {"seat_class": "general", "left": 1})
    assert await left(booking, train, SEOUL.code, BUSAN.code) == 1
    answers = await asyncio.gather(
        hold(booking, train, "race-ieum"), hold(other, train, "race-other"), return_exceptions=True
    )
    won = [a for a in answers if isinstance(a, RailReservation)]
    lost = [a for a in answers if isinstance(a, BookingRefused)]
    assert len(won) == len(lost) == 1, answers
    assert lost[0].code == Code.SOLD_OUT
    assert await left(booking, train, SEOUL.code, BUSAN.code) == 0


async def test_a_seat_sold_to_daejeon_is_sold_again_from_daejeon(
    served: RunningSandbox, booking: RailBooking
) -> None:
    assert SEOUL and DAEJEON and BUSAN
    train, _, _ = seoul_busan(1)
    wanted = {"train_no": train.train_no, "run_date": train.run_date.isoformat()}
    await control(served, "seats", wanted | {"left": 1})
    first_leg = await hold(booking, train, "to-daejeon", arr=DAEJEON.code)
    assert await left(booking, train, SEOUL.code, BUSAN.code) == 0
    assert await left(booking, train, SEOUL.code, DAEJEON.code) == 0
    assert await left(booking, train, DAEJEON.code, BUSAN.code) == 1
    assert await refused(hold(booking, train, "through")) == Code.SOLD_OUT
    second_leg = await hold(booking, train, "from-daejeon", dep=DAEJEON.code)
    assert second_leg.seats == first_leg.seats
    await booking.release(first_leg.pnr)
    assert await left(booking, train, SEOUL.code, DAEJEON.code) == 1


# Tickets, releases and refunds


async def test_ticketing_checks_the_amount_and_is_idempotent_per_pnr(
    served: RunningSandbox, booking: RailBooking
) -> None:
    train, _, _ = seoul_busan(1)
    held = await hold(booking, train, "to-ticket", passengers=2)
    wrong = booking.ticket(held.pnr, held.amount - 100, "pay-1")
    assert await refused(wrong) == Code.AMOUNT_MISMATCH
    ticketed = await booking.ticket(held.pnr, held.amount, "pay-1")
    assert ticketed.status == "TICKETED" and ticketed.pay_by is None
    assert re.fullmatch(r"[0-9]{8}-[0-9]{5}-[0-9]{5}", ticketed.sale_no)
    assert await booking.ticket(held.pnr, held.amount, "pay-1") == ticketed
    second = booking.ticket(held.pnr, held.amount, "pay-2")
    assert await refused(second) == Code.ALREADY_TICKETED
    assert await refused(booking.release(held.pnr)) == Code.ALREADY_TICKETED


async def test_a_ticket_retried_after_a_lost_answer_is_issued_once(
    served: RunningSandbox, booking: RailBooking
) -> None:
    train, _, _ = seoul_busan(1)
    held = await hold(booking, train, "lost-ticket")
    await served.inject(error="5xx_after", path="/ticket", count=1)
    ticketed = await booking.ticket(held.pnr, held.amount, "pay-lost")
    assert ticketed.status == "TICKETED"
    assert await booking.reservation(held.pnr) == ticketed


async def test_release_gives_seats_back_once(served: RunningSandbox, booking: RailBooking) -> None:
    assert SEOUL and BUSAN
    train, _, _ = seoul_busan(1)
    before = await left(booking, train, SEOUL.code, BUSAN.code)
    held = await hold(booking, train, "to-release", passengers=2)
    assert await refused(booking.refund(held.pnr)) == Code.NOT_TICKETED
    released = await booking.release(held.pnr)
    assert released.status == "RELEASED"
    assert await booking.release(held.pnr) == released
    assert await left(booking, train, SEOUL.code, BUSAN.code) == before
    assert await refused(booking.ticket(held.pnr, held.amount, "pay")) == Code.RELEASED


def _weekday(fare: int) -> list[tuple[timedelta, int]]:
    """(time of the refund from departure, fee per ticket) on a Tuesday."""
    return [
        (-timedelta(days=3), 0),
        (-timedelta(hours=3, minutes=1), 0),
        (-timedelta(hours=2), fare * 5 // 1000 * 10),
        (timedelta(minutes=10), fare * 15 // 1000 * 10),
        (timedelta(minutes=30), fare * 40 // 1000 * 10),
        (timedelta(minutes=61), fare * 70 // 1000 * 10),
    ]


def _weekend(fare: int, departs: datetime) -> list[tuple[timedelta, int]]:
    """The same on a Saturday: 400 won until two days before, then 5, 10 and 20 %."""
    midnight = datetime.combine(departs.astimezone(KST).date(), datetime.min.time(), KST)
    return [
        (-timedelta(days=3), 400),
        (midnight - timedelta(hours=12) - departs, fare * 5 // 1000 * 10),
        (midnight + timedelta(minutes=30) - departs, fare * 10 // 1000 * 10),
        (-timedelta(hours=1), fare * 20 // 1000 * 10),
        (timedelta(minutes=15), fare * 15 // 1000 * 10),
    ]


Schedule = Callable[[int, datetime], list[tuple[timedelta, int]]]


@pytest.mark.parametrize(
    ("weekday", "schedule"),
    [(1, lambda fare, departs: _weekday(fare)), (5, _weekend)],
    ids=["tuesday", "saturday"],
)
async def test_a_refund_keeps_the_operators_fee_for_the_time_left(
    served: RunningSandbox, booking: RailBooking, weekday: int, schedule: Schedule
) -> None:
    assert SEOUL and BUSAN
    train, departs, _ = seoul_busan(weekday)
    fare = rail_network.fare(train, SEOUL.code, BUSAN.code, "general")
    for n, (offset, fee) in enumerate(schedule(fare, departs)):
        await clock_at(served, departs - timedelta(days=4))
        held = await hold(booking, train, f"refund-{n}", passengers=2)
        await booking.ticket(held.pnr, held.amount, f"pay-{n}")
        await clock_at(served, departs + offset)
        refunded = await booking.refund(held.pnr)
        assert (refunded.status, refunded.cancel_fee) == ("REFUNDED", 2 * fee), offset
        assert refunded.refunded_amount == 2 * fare - 2 * fee
        assert await booking.refund(held.pnr) == refunded


async def test_no_refund_after_arrival(served: RunningSandbox, booking: RailBooking) -> None:
    train, departs, arrives = seoul_busan(1)
    await clock_at(served, departs - timedelta(days=1))
    held = await hold(booking, train, "ridden")
    await booking.ticket(held.pnr, held.amount, "pay")
    await clock_at(served, arrives + timedelta(minutes=1))
    assert await refused(booking.refund(held.pnr)) == Code.ARRIVED


async def test_a_refund_before_departure_frees_the_seats(booking: RailBooking) -> None:
    assert SEOUL and BUSAN
    train, _, _ = seoul_busan(1)
    before = await left(booking, train, SEOUL.code, BUSAN.code)
    held = await hold(booking, train, "returned", passengers=2)
    await booking.ticket(held.pnr, held.amount, "pay")
    await booking.refund(held.pnr)
    assert await left(booking, train, SEOUL.code, BUSAN.code) == before


# Delays and cancelled trains


async def announce(served: RunningSandbox, train: NetworkTrain, **change: Any) -> Any:
    body = {"train_no": train.train_no, "run_date": train.run_date.isoformat(), **change}
    return await control(served, "trains", body)


async def test_a_delay_announced_reaches_the_trains_reservations(
    served: RunningSandbox, booking: RailBooking
) -> None:
    train, _, _ = seoul_busan(1)
    held = await hold(booking, train, "late-train")
    assert held.delay_minutes == 0 and not held.train_cancelled
    answer = await announce(served, train, delay_minutes=85)
    assert (answer["delay_minutes"], answer["reservations"]) == (85, 1)
    late = await booking.reservation(held.pnr)
    assert late is not None and late.delay_minutes == 85 and late.status == "HELD"
    ticketed = await booking.ticket(held.pnr, held.amount, "pay-late")
    assert ticketed.delay_minutes == 85
    listed = await control(served, "reservations")
    assert [r["h_expct_dlay_hr"] for r in listed] == ["012500"]
    await announce(served, train, delay_minutes=0)
    on_time = await booking.reservation(held.pnr)
    assert on_time is not None and on_time.delay_minutes == 0


async def test_a_cancelled_trains_ticket_is_refunded_in_full_on_a_fee_day(
    served: RunningSandbox, booking: RailBooking
) -> None:
    train, departs, _ = seoul_busan(5)  # a Saturday: a returned ticket would pay 20 %
    await clock_at(served, departs - timedelta(days=3))
    held = await hold(booking, train, "cancelled-train", passengers=2)
    ticketed = await booking.ticket(held.pnr, held.amount, "pay-cancelled")
    unpaid = await hold(booking, train, "cancelled-hold")
    await clock_at(served, departs - timedelta(hours=1))
    await announce(served, train, cancelled=True)
    cancelled = await booking.reservation(ticketed.pnr)
    assert cancelled is not None
    assert (cancelled.status, cancelled.train_cancelled) == ("TRAIN_CANCELLED", True)
    lapsed = await booking.reservation(unpaid.pnr)
    assert lapsed is not None and lapsed.status == "CANCELLED"
    assert await refused(booking.release(ticketed.pnr)) == Code.ALREADY_TICKETED
    refunded = await booking.refund(ticketed.pnr)
    assert (refunded.status, refunded.cancel_fee) == ("REFUNDED", 0)
    assert refunded.refunded_amount == ticketed.amount
    assert await booking.refund(ticketed.pnr) == refunded
    assert await refused(hold(booking, train, "after-cancel")) == Code.TRAIN_CANCELLED
    answer = await announce(served, train, delay_minutes=10)
    assert answer["cancelled"] is True  # a cancellation is final


async def test_a_train_change_of_a_train_that_does_not_run_is_refused(
    served: RunningSandbox,
) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        body = {"train_no": "99999", "run_date": "2026-12-03", "delay_minutes": 5}
        missing = await http.post("/_sandbox/trains", json=body)
        negative = await http.post("/_sandbox/trains", json={**body, "delay_minutes": -1})
    assert (missing.status_code, negative.status_code) == (404, 400)


@pytest.mark.parametrize(
    ("text", "minutes"), [("000000", 0), ("002500", 25), ("012500", 85), ("0130", 90)]
)
def test_the_expected_delay_is_read_as_hhmmss_or_hhmm(text: str, minutes: int) -> None:
    assert wire.delay_minutes(text) == minutes
    assert wire.delay_minutes(wire.delay(minutes)) == minutes


@pytest.mark.parametrize("text", ["25", "0075", "12:30", "00250"])
def test_an_expected_delay_in_another_form_is_not_read(text: str) -> None:
    assert wire.delay_minutes(text) is None


# Partners and signatures


async def test_a_partner_sees_only_its_own_reservations(
    booking: RailBooking, other: RailBooking
) -> None:
    train, _, _ = seoul_busan(1)
    ours = await hold(booking, train, "ours")
    theirs = await hold(other, train, "theirs")
    assert await other.reservation(ours.pnr) is None
    assert await booking.reservation(theirs.pnr) is None
    assert await refused(other.release(ours.pnr)) == Code.NOT_FOUND
    assert isinstance(booking, PartnerBooking)
    listed = await booking.reservations(train.run_date)
    assert [found.pnr for found in listed] == [ours.pnr]


async def test_a_call_signed_with_another_key_is_refused(served: RunningSandbox) -> None:
    forged = connect(served, partner_key="not-the-key")
    unknown = connect(served, partner_id="NOBODY001")
    try:
        with pytest.raises(UpstreamRejected, match=Code.BAD_SIGNATURE):
            await forged.health()
        with pytest.raises(UpstreamRejected, match=Code.UNKNOWN_PARTNER):
            await unknown.health()
        train, _, _ = seoul_busan(1)
        with pytest.raises(UpstreamRejected, match=Code.BAD_SIGNATURE):
            await hold(forged, train, "forged")
    finally:
        await forged.aclose()
        await unknown.aclose()
    assert await control(served, "reservations") == []


async def test_a_tampered_or_stale_request_is_refused(served: RunningSandbox) -> None:
    settings = served.settings()
    signed = wire.signed_query(
        settings["partner_id"],
        settings["partner_key"],
        "GET",
        wire.PARTNER,
        {},
        None,
        datetime.now(KST),
    )
    async with httpx.AsyncClient(base_url=served.url) as http:
        assert (await http.get(wire.PARTNER, params=signed)).status_code == 200
        tampered = signed | {"h_trn_no": "00101"}
        answer = await http.get(wire.PARTNER, params=tampered)
        assert (answer.status_code, answer.json()["h_msg_cd"]) == (401, Code.BAD_SIGNATURE)
        old = datetime.now(KST) - timedelta(minutes=6)
        stale = wire.signed_query(
            settings["partner_id"], settings["partner_key"], "GET", wire.PARTNER, {}, None, old
        )
        answer = await http.get(wire.PARTNER, params=stale)
        assert (answer.status_code, answer.json()["h_msg_cd"]) == (401, Code.STALE_SIGNATURE)


# The contract kit and the documentation


@pytest.mark.parametrize(
    "check",
    [
        checks.health_passes,
        checks.health_fails_on_5xx,
        checks.main_call_answers,
        checks.malformed_is_specific,
        checks.budget_honoured,
        checks.transient_failures_retried,
        checks.metrics_recorded,
    ],
)
async def test_the_contract_kit_passes(check: Callable[[Any], Awaitable[None]]) -> None:
    await check(adapter)


def test_every_message_code_is_documented() -> None:
    documented = WIRE_DOC.read_text()
    missing = [code.value for code in Code if f"`{code.value}`" not in documented]
    assert missing == []


async def test_dates_are_korean_days(booking: RailBooking) -> None:
    train, departs, _ = seoul_busan(1)
    held = await hold(booking, train, "dates")
    assert held.departs_at == departs
    assert held.run_date == train.run_date and isinstance(held.run_date, date)
