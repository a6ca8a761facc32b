"""Journey search: local paths to stations near both ends and the trains between them,
asked concurrently within the request's time budget, combined and ranked by the planner,
with live seats for the itineraries kept.

Whatever did not answer in time or failed is listed in `Plan.missing` (upstream, what,
why) and the plan is made from the rest: a missing local path is estimated (marked so),
a missing timetable means fewer trains, missing seats are null. Upstream answers are
cached (`MobilityState`), and a call still running when the budget ends keeps running
for the next request (the caches are single-flight and shielded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from adapters.kinds import LocalPath, ScheduledTrain, SeatAvailability, SeatClass
from hub.core.errors import UpstreamUnavailable
from resolvers.mobility import stations
from resolvers.mobility.settings import MobilitySettings
from schema.mobility import planner
from schema.mobility.planner import Access, Itinerary
from schema.mobility.state import MobilityState

KST = ZoneInfo("Asia/Seoul")
LATE_EVENING = 18  # a search after this hour also looks at the next day's trains
EARLY_MORNING = 10  # an arrive-by before this hour also looks at the day before's trains
COORDINATE_DECIMALS = 4  # local paths are cached per ~10 m
WIDER = 2  # times the stations near each end asked about when the nearest give nothing


@dataclass(frozen=True)
class Point:
    lat: float
    lng: float


@dataclass(frozen=True)
class Search:
    origin: Point
    destination: Point
    depart_after: datetime | None
    arrive_by: datetime | None
    seat_class: SeatClass
    passengers: int
    limit: int


@dataclass(frozen=True)
class Gap:
    """A part of the answer that is missing: which upstream, for what, and why."""

    upstream: str
    part: str  # "local path 서울 → destination", "trains 서울 → 부산 on 2026-12-01" …
    reason: str
    kind: str  # "timeout", "5xx", "malformed", "rejected" … (adapters.errors), "unavailable"


@dataclass(frozen=True)
class Option:
    itinerary: Itinerary
    seats: SeatAvailability | None  # None: the operator did not answer (see the gaps)


@dataclass
class Plan:
    options: list[Option] = field(default_factory=list)
    missing: list[Gap] = field(default_factory=list)


async def plan(state: MobilityState, search: Search) -> Plan:
    settings = state.settings
    deadline = asyncio.get_running_loop().time() + settings.journey_budget_seconds
    limit, within = settings.station_candidates, settings.station_radius_km
    starts = stations.nearest(search.origin.lat, search.origin.lng, limit=limit, within_km=within)
    ends = stations.nearest(
        search.destination.lat, search.destination.lng, limit=limit, within_km=within
    )
    result = Plan()
    calls = _first_round(state, search, starts, ends)
    answers = await _within(calls, deadline, result.missing)
    ranked = _ranked(settings, search, starts, ends, answers)
    if not ranked and _every_timetable_answered(calls, answers):
        # Nothing from the nearest stations: they share no train (서울역's neighbours and
        # 안동, whose trains leave from 청량리) or none is left that day (천안아산 → 목포
        # after 15:49, while 오송's run until 21:32). The next nearest are asked too.
        starts = stations.nearest(
            search.origin.lat, search.origin.lng, limit=limit * WIDER, within_km=within
        )
        ends = stations.nearest(
            search.destination.lat, search.destination.lng, limit=limit * WIDER, within_km=within
        )
        more = _first_round(state, search, starts, ends)
        answers |= await _within(
            {key: call for key, call in more.items() if key not in calls}, deadline, result.missing
        )
        ranked = _ranked(settings, search, starts, ends, answers)
    result.options = await _with_seats(state, search, ranked, deadline, result.missing)
    return result


Call = Callable[[], Awaitable[Any]]
Near = list[tuple[stations.RailStation, float]]


def _first_round(
    state: MobilityState, search: Search, starts: Near, ends: Near
) -> dict[tuple[Any, ...], Call]:
    """Local paths to and from the stations near both ends, and the trains between them."""
    calls: dict[tuple[Any, ...], Call] = {}
    for station, _ in starts:
        calls["access", station.code] = _paths(state, search.origin, station, towards=True)
    for station, _ in ends:
        calls["egress", station.code] = _paths(state, search.destination, station, towards=False)
    pairs = [(a, b) for a, _ in starts for b, _ in ends if a.code != b.code]
    for a, b in pairs:
        for day in _days(search):
            calls["trains", a.code, b.code, day] = _trains(state, a, b, day)
    return calls


def _every_timetable_answered(
    calls: dict[tuple[Any, ...], Call], answers: dict[tuple[Any, ...], Any]
) -> bool:
    """No timetable call is missing: an empty plan is then the stations' doing, not a
    timetable down or slow (which is a gap, and asking it more would not help)."""
    return all(key in answers for key in calls if key[0] == "trains")


def _ranked(
    settings: MobilitySettings,
    search: Search,
    starts: Near,
    ends: Near,
    answers: dict[tuple[Any, ...], Any],
) -> list[Itinerary]:
    """The itineraries the answers make, best first (the planner's rules)."""
    accesses = [
        Access(station.code, km, _best(answers.get(("access", station.code))))
        for station, km in starts
    ]
    egresses = [
        Access(station.code, km, _best(answers.get(("egress", station.code))))
        for station, km in ends
    ]
    trains: dict[tuple[str, str], list[ScheduledTrain]] = {}
    for key, answer in answers.items():
        if key[0] == "trains":
            trains.setdefault((key[1], key[2]), []).extend(answer)
    rules = planner.Rules(
        boarding=timedelta(minutes=settings.boarding_minutes),
        alighting=timedelta(minutes=settings.alighting_minutes),
    )
    return planner.combine(
        accesses,
        trains,
        egresses,
        rules,
        depart_after=search.depart_after,
        arrive_by=search.arrive_by,
        per_pair=search.limit * 2,
    )


def _paths(
    state: MobilityState, end: Point, station: stations.RailStation, *, towards: bool
) -> Call:
    here = (round(end.lat, COORDINATE_DECIMALS), round(end.lng, COORDINATE_DECIMALS))
    there = (station.lat, station.lng)
    start, finish = (here, there) if towards else (there, here)
    label = f"local path to {station.name}" if towards else f"local path from {station.name}"

    async def call() -> list[LocalPath]:
        routes = await state.local_routes()
        return await state.routes.get(
            ("paths", start, finish), lambda: routes.paths(*start, *finish, limit=1)
        )

    call.__qualname__ = label
    return call


def _trains(
    state: MobilityState, a: stations.RailStation, b: stations.RailStation, day: date
) -> Call:
    async def call() -> list[ScheduledTrain]:
        timetable = await state.timetable()
        return await state.timetables.get(
            ("trains", a.code, b.code, day), lambda: timetable.trains(a.code, b.code, day)
        )

    call.__qualname__ = f"trains {a.name} → {b.name} on {day.isoformat()}"
    return call


async def _within(
    calls: dict[tuple[Any, ...], Call], deadline: float, missing: list[Gap]
) -> dict[tuple[Any, ...], Any]:
    """The answers that came by the deadline; a gap for each other call."""
    if not calls:
        return {}
    tasks = {key: asyncio.ensure_future(call()) for key, call in calls.items()}
    timeout = max(0.0, deadline - asyncio.get_running_loop().time())
    await asyncio.wait(tasks.values(), timeout=timeout)
    answers = {}
    for key, task in tasks.items():
        part = calls[key].__qualname__
        if not task.done():
            task.cancel()  # the cached call itself goes on (shielded) for the next search
            missing.append(
                Gap(_upstream_of(key), part, "no answer within the time budget", "timeout")
            )
        elif isinstance(task.exception(), UpstreamUnavailable):
            error = task.exception()
            assert isinstance(error, UpstreamUnavailable)
            upstream = str(error.extensions.get("upstream", _upstream_of(key)))
            kind = str(getattr(error, "kind", "unavailable"))
            missing.append(Gap(upstream, part, str(error), kind))
        elif task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # a bug of ours: not a gap
        else:
            answers[key] = task.result()
    return answers


def _upstream_of(key: tuple[Any, ...]) -> str:
    return {"trains": "timetable", "seats": "booking"}.get(key[0], "local routes")


def _best(paths: list[LocalPath] | None) -> LocalPath | None:
    """The service's recommended path (its first, the only one asked for); None when it
    did not answer."""
    if paths is None:
        return None
    return paths[0] if paths else None


async def _with_seats(
    state: MobilityState,
    search: Search,
    ranked: list[Itinerary],
    deadline: float,
    missing: list[Gap],
) -> list[Option]:
    """The best `limit` itineraries whose train has the seats asked for; seats are asked
    for a few more than `limit` at once, so sold-out trains are replaced in one round."""
    options: list[Option] = []
    window = search.limit + max(2, search.limit // 2)
    start = 0
    while len(options) < search.limit and start < len(ranked):
        batch = ranked[start : start + window]
        start += window
        calls: dict[tuple[Any, ...], Call] = {}
        for index, it in enumerate(batch):
            calls["seats", index] = _seats(state, it.train)
        answers = await _within(calls, deadline, missing)
        for index, it in enumerate(batch):
            seats = answers.get(("seats", index))
            if seats is not None and _left(seats, search.seat_class) < search.passengers:
                continue
            options.append(Option(it, seats))
            if len(options) == search.limit:
                break
    return options


def run_date(train: ScheduledTrain) -> date:
    """The date a train is booked under: its departure's Korean date (a train crossing
    midnight before this station is not told apart: the timetable lists by this date)."""
    return train.departs_at.astimezone(KST).date()


def _seats(state: MobilityState, train: ScheduledTrain) -> Call:
    day = run_date(train)
    key = ("seats", train.train_no, day, train.dep_station, train.arr_station)

    async def call() -> SeatAvailability:
        booking = await state.booking()
        return await state.seats.get(
            key,
            lambda: booking.availability(train.train_no, day, train.dep_station, train.arr_station),
        )

    call.__qualname__ = f"seats on train {train.train_no} of {day.isoformat()}"
    return call


def _left(seats: SeatAvailability, seat_class: SeatClass) -> int:
    return seats.general_left if seat_class == SeatClass.GENERAL else seats.special_left


def _days(search: Search) -> list[date]:
    if search.depart_after is not None:
        at = search.depart_after.astimezone(KST)
        return [at.date()] + ([at.date() + timedelta(days=1)] if at.hour >= LATE_EVENING else [])
    assert search.arrive_by is not None
    at = search.arrive_by.astimezone(KST)
    return ([at.date() - timedelta(days=1)] if at.hour < EARLY_MORNING else []) + [at.date()]
