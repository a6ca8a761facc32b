"""Journeys end to end: the hub over HTTP asking the timetable, booking and local-route
sandboxes over HTTP; each sandbox's faults degrade the answer instead of failing it."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.kinds import SeatClass
from resolvers.mobility.settings import MobilitySettings
from schema.mobility import journeys
from schema.mobility.state import adapters_of, state_of_process
from tests.mobility.helpers import (
    BUSAN_HAEUNDAE,
    DAEJEON_CITY_HALL,
    SEOUL_CITY_HALL,
    MobilityWorld,
    mobility_world,
)

pytestmark = pytest.mark.db
KST = ZoneInfo("Asia/Seoul")
BOARDING, ALIGHTING = 10, 5  # the settings' defaults
DAYS = itertools.count(2)  # each fault test plans another day: no cached timetable helps it
# A fault opens its upstream's breaker for 30 s (adapters/resilience.py): the fault tests
# come last, the timetable's last of all, since every other test needs trains.

JOURNEYS = """
query($from: PlaceInput!, $to: PlaceInput!, $after: DateTime, $by: DateTime, $n: Int!,
      $p: Int! = 1) {
  journeys(from: $from, to: $to, departAfter: $after, arriveBy: $by, limit: $n,
           passengers: $p) {
    itineraries {
      leaveAt arriveAt minutes fare transfers walkMeters estimated
      access { minutes fare legs { mode minutes departsAt from { name } to { name } } }
      egress { minutes fare legs { mode minutes } }
      train { trainNo grade runDate departsAt arrivesAt adultFare from { code name }
              to { code name } seats { generalLeft specialLeft generalFare } }
    }
    missing { upstream part reason kind }
  }
}
"""


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[MobilityWorld]:
    async with mobility_world(migrated_url, kafka_bootstrap, seats_cache_seconds=0) as world:
        yield world


@pytest.fixture(scope="module")
async def planner_token(world: MobilityWorld) -> str:
    return await world.hub.clients.token("mobility:plan sensors:read")


def korean(day: date, hour: int) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=KST).isoformat()


def day_ahead(days: int) -> date:
    return datetime.now(KST).date() + timedelta(days=days)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def plan(
    world: MobilityWorld, token: str, *, origin: dict[str, float] = SEOUL_CITY_HALL, **v: Any
) -> dict[str, Any]:
    variables = {"from": origin, "to": BUSAN_HAEUNDAE, "n": 5, **v}
    answer = await world.hub.gql(token, JOURNEYS, variables)
    assert answer.get("data") and answer["data"]["journeys"] is not None, answer
    return answer


async def test_seoul_to_busan_door_to_door_keeps_transfer_times_and_ranks_by_arrival(
    world: MobilityWorld, planner_token: str
) -> None:
    answer = await plan(world, planner_token, after=korean(day_ahead(1), 7))
    found = answer["data"]["journeys"]
    assert found["missing"] == [] and "errors" not in answer
    itineraries = found["itineraries"]
    assert 1 <= len(itineraries) <= 5
    for it in itineraries:
        train = it["train"]
        assert when(it["leaveAt"]) >= datetime(*day_ahead(1).timetuple()[:3], 7, tzinfo=KST)
        reach_station = when(it["leaveAt"]) + timedelta(minutes=it["access"]["minutes"])
        assert reach_station + timedelta(minutes=BOARDING) <= when(train["departsAt"])
        onwards = when(train["arrivesAt"]) + timedelta(minutes=ALIGHTING)
        assert when(it["arriveAt"]) == onwards + timedelta(minutes=it["egress"]["minutes"])
        assert it["fare"] == it["access"]["fare"] + train["adultFare"] + it["egress"]["fare"]
        assert train["seats"]["generalLeft"] >= 1
        assert train["from"]["name"] in {"서울", "용산", "수서", "광명", "영등포", "청량리"}
        assert train["to"]["name"] in {"부산", "울산", "신경주", "구포", "센텀", "부전"}
        assert not it["estimated"]
    arrivals = [when(it["arriveAt"]) for it in itineraries]
    assert arrivals == sorted(arrivals)


async def test_trains_from_a_station_beyond_the_nearest_ones_are_found(
    world: MobilityWorld, planner_token: str
) -> None:
    """By 서울역, the nearest stations (서울, 용산, 영등포) have no train to 안동's
    (안동, 영주, 풍기): those leave from 청량리, which a search asks about once the nearest
    stations share no train."""
    near_seoul_station = {"lat": 37.5477, "lng": 126.9628}
    andong = {"lat": 36.5684, "lng": 128.7294}
    answer = await plan(
        world, planner_token, origin=near_seoul_station, to=andong, after=korean(day_ahead(1), 7)
    )
    found = answer["data"]["journeys"]
    assert found["missing"] == [] and "errors" not in answer
    assert found["itineraries"]
    for it in found["itineraries"]:
        assert it["train"]["from"]["name"] in {"청량리", "상봉"}
        assert it["train"]["to"]["name"] in {"안동", "영주", "풍기"}
        assert not it["estimated"]


async def test_when_the_nearest_stations_have_no_train_left_farther_ones_are_asked(
    world: MobilityWorld, planner_token: str
) -> None:
    """From 천안 to 목포 late in the afternoon: 천안아산's last train to 목포 leaves about
    15:50 on a weekday, 오송's run into the evening."""
    cheonan, mokpo = {"lat": 36.8303, "lng": 127.1184}, {"lat": 34.7873, "lng": 126.3877}
    after = korean(day_ahead(1), 16)
    answer = await plan(world, planner_token, origin=cheonan, to=mokpo, after=after)
    found = answer["data"]["journeys"]
    assert found["missing"] == [] and "errors" not in answer
    assert found["itineraries"]
    for it in found["itineraries"]:
        assert when(it["leaveAt"]) >= when(after)
        assert it["train"]["to"]["name"] in {"목포", "나주"}


async def test_arrive_by_offers_the_latest_departures_that_arrive_in_time(
    world: MobilityWorld, planner_token: str
) -> None:
    by = datetime(*day_ahead(1).timetuple()[:3], 18, tzinfo=KST)
    answer = await plan(world, planner_token, by=by.isoformat())
    itineraries = answer["data"]["journeys"]["itineraries"]
    assert itineraries
    assert all(when(it["arriveAt"]) <= by for it in itineraries)
    leaving = [when(it["leaveAt"]) for it in itineraries]
    assert leaving == sorted(leaving, reverse=True)


async def test_a_sold_out_train_is_not_offered_and_the_next_one_is(
    world: MobilityWorld, planner_token: str
) -> None:
    after = korean(day_ahead(1), 9)
    first = (await plan(world, planner_token, after=after))["data"]["journeys"]["itineraries"]
    gone = first[0]["train"]
    await world.control(
        world.booking,
        "/_sandbox/seats",
        {"train_no": gone["trainNo"], "run_date": gone["runDate"], "left": 0},
    )
    again = (await plan(world, planner_token, after=after))["data"]["journeys"]["itineraries"]
    assert gone["trainNo"] not in [it["train"]["trainNo"] for it in again]
    assert len(again) == len(first)


async def test_more_passengers_than_seats_left_skips_the_train(
    world: MobilityWorld, planner_token: str
) -> None:
    after = korean(day_ahead(1), 13)
    first = (await plan(world, planner_token, after=after))["data"]["journeys"]["itineraries"]
    train = first[0]["train"]
    await world.control(
        world.booking,
        "/_sandbox/seats",
        {"train_no": train["trainNo"], "run_date": train["runDate"], "left": 2},
    )
    three = await plan(world, planner_token, after=after, p=3)
    assert train["trainNo"] not in [
        it["train"]["trainNo"] for it in three["data"]["journeys"]["itineraries"]
    ]
    two = await plan(world, planner_token, after=after, p=2)
    offered = {
        it["train"]["trainNo"]: it["train"]["seats"]
        for it in two["data"]["journeys"]["itineraries"]
    }
    assert offered[train["trainNo"]]["generalLeft"] == 2


async def test_walking_legs_carry_the_air_along_them(
    world: MobilityWorld, planner_token: str
) -> None:
    answer = await world.hub.gql(
        planner_token,
        """query($from: PlaceInput!, $to: PlaceInput!, $after: DateTime) {
             journeys(from: $from, to: $to, departAfter: $after, limit: 1) {
               itineraries { access { legs {
                 mode meters airQuality { metric coverage } } } } } }""",
        {"from": SEOUL_CITY_HALL, "to": DAEJEON_CITY_HALL, "after": korean(day_ahead(1), 10)},
    )
    assert "errors" not in answer, answer
    legs = answer["data"]["journeys"]["itineraries"][0]["access"]["legs"]
    for leg in legs:
        if leg["mode"] == "WALK" and leg["meters"] > 0:
            assert leg["airQuality"]["metric"] == "pm2_5"
        else:
            assert leg["airQuality"] is None
    assert any(leg["mode"] == "WALK" for leg in legs)


async def test_journeys_need_the_plan_scope(world: MobilityWorld) -> None:
    token = await world.hub.clients.token("sensors:read")
    answer = await world.hub.gql(
        token,
        JOURNEYS,
        {"from": SEOUL_CITY_HALL, "to": BUSAN_HAEUNDAE, "n": 1},
    )
    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_slow_upstream_is_cut_at_the_time_budget(world: MobilityWorld) -> None:
    """A search with a 0.3 s budget against local routes answering after 0.9 s (within the
    adapter's own timeout): it answers at the budget, the paths listed as timed out and
    estimated, whatever the adapter would have waited."""
    section = world.hub.settings.section(MobilitySettings).model_copy(
        update={"journey_budget_seconds": 0.3}
    )
    day = day_ahead(1)
    search = journeys.Search(
        origin=journeys.Point(37.5665, 126.9780 + next(DAYS) / 1000),
        destination=journeys.Point(DAEJEON_CITY_HALL["lat"], DAEJEON_CITY_HALL["lng"]),
        depart_after=datetime(day.year, day.month, day.day, 8, tzinfo=KST),
        arrive_by=None,
        seat_class=SeatClass.GENERAL,
        passengers=1,
        limit=3,
    )
    world.faults(world.routes, latency_seconds=0.9)
    try:
        async with adapters_of(section) as adapters:
            started = time.perf_counter()
            found = await journeys.plan(state_of_process(section, adapters), search)
            took = time.perf_counter() - started
    finally:
        world.faults(world.routes)
    assert took < 0.8
    routes = [gap for gap in found.missing if gap.upstream == "local routes"]
    assert routes and all(gap.kind == "timeout" for gap in routes)
    assert all(gap.reason == "no answer within the time budget" for gap in routes)
    assert found.options and all(option.itinerary.estimated for option in found.options)


@pytest.mark.parametrize("fault", ["5xx", "hang", "malformed"])
async def test_local_routes_down_still_answers_with_estimates(
    world: MobilityWorld, planner_token: str, fault: str
) -> None:
    origin = {"lat": 37.5665 + next(DAYS) / 1000, "lng": 126.9780}  # nothing cached for it
    world.faults(world.routes, error=fault)
    try:
        answer = await plan(world, planner_token, origin=origin, after=korean(day_ahead(1), 8))
    finally:
        world.faults(world.routes)
    found = answer["data"]["journeys"]
    assert found["itineraries"], [(gap["upstream"], gap["reason"]) for gap in found["missing"]]
    assert {gap["upstream"] for gap in found["missing"]} == {"odsay"}
    assert all(it["estimated"] and it["access"] is None for it in found["itineraries"])
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"UPSTREAM_UNAVAILABLE"}
    assert all(e["path"][-1] == "access" for e in answer["errors"])


@pytest.mark.parametrize("fault", ["5xx", "hang", "malformed"])
async def test_booking_system_down_leaves_seats_null(
    world: MobilityWorld, planner_token: str, fault: str
) -> None:
    world.faults(world.booking, error=fault)
    try:
        answer = await plan(world, planner_token, after=korean(day_ahead(next(DAYS)), 8))
    finally:
        world.faults(world.booking)
    found = answer["data"]["journeys"]
    assert found["itineraries"], [(gap["upstream"], gap["reason"]) for gap in found["missing"]]
    assert all(it["train"]["seats"] is None for it in found["itineraries"])
    assert {gap["upstream"] for gap in found["missing"]} == {"railbooking"}
    assert all(e["path"][-1] == "seats" for e in answer["errors"])


@pytest.mark.parametrize("fault", ["5xx", "hang", "malformed"])
async def test_timetable_down_answers_without_trains_and_says_so(
    world: MobilityWorld, planner_token: str, fault: str
) -> None:
    world.faults(world.timetable, error=fault)
    try:
        answer = await plan(world, planner_token, after=korean(day_ahead(next(DAYS)), 8))
    finally:
        world.faults(world.timetable)
    found = answer["data"]["journeys"]
    assert found["itineraries"] == []
    assert found["missing"] and {gap["upstream"] for gap in found["missing"]} == {"tago"}
    assert all(gap["part"].startswith("trains ") for gap in found["missing"])
