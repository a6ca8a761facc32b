"""Itineraries from parts: a local path to a station, a train, a local path onwards.

Pure functions over what the upstreams answered, so the ranking and the transfer rules
are tested without any server. A part that is missing (its upstream down or slow) is
estimated from the straight-line distance and marked, never silently assumed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from adapters.kinds import LocalPath, ScheduledTrain

# A missing local path is estimated at this door-to-door speed (walk, wait, ride) over
# the straight line times the detour, rounded up: pessimistic, so a train it reaches is
# a train a real path reaches too.
ESTIMATE_KMH = 15.0
ESTIMATE_DETOUR = 1.4
ESTIMATE_FIXED_MINUTES = 10


@dataclass(frozen=True)
class Rules:
    boarding: timedelta  # reach the station at least this long before the train leaves
    alighting: timedelta  # from the train's arrival to the next leg's start


@dataclass(frozen=True)
class Access:
    """How to get between an end of the journey and a station: a path or an estimate."""

    station: str
    km: float  # straight line
    path: LocalPath | None  # None: the local route service did not answer

    @property
    def minutes(self) -> int:
        if self.path is not None:
            return self.path.minutes
        return ESTIMATE_FIXED_MINUTES + math.ceil(self.km * ESTIMATE_DETOUR / ESTIMATE_KMH * 60)

    @property
    def fare(self) -> int | None:
        return self.path.fare if self.path is not None else None

    @property
    def walk_meters(self) -> int:
        return self.path.walk_meters if self.path is not None else 0

    @property
    def rides(self) -> int:
        """Buses and subways on the path: each is a vehicle to board."""
        if self.path is None:
            return 0
        return sum(1 for leg in self.path.legs if leg.mode != "walk")


@dataclass(frozen=True)
class Itinerary:
    leave_at: datetime  # from the origin
    arrive_at: datetime  # at the destination
    access: Access
    train: ScheduledTrain
    egress: Access

    @cached_property
    def fare(self) -> int | None:
        """Train plus local fares for one adult; None when a local fare is unknown."""
        if self.access.fare is None or self.egress.fare is None:
            return None
        return self.access.fare + self.train.adult_fare + self.egress.fare

    @cached_property
    def transfers(self) -> int:
        return self.access.rides + self.egress.rides  # vehicles besides the train

    @cached_property
    def walk_meters(self) -> int:
        return self.access.walk_meters + self.egress.walk_meters

    @cached_property
    def estimated(self) -> bool:
        return self.access.path is None or self.egress.path is None


def combine(
    accesses: Iterable[Access],
    trains: Mapping[tuple[str, str], Sequence[ScheduledTrain]],
    egresses: Iterable[Access],
    rules: Rules,
    *,
    depart_after: datetime | None = None,
    arrive_by: datetime | None = None,
    per_pair: int = 10,
) -> list[Itinerary]:
    """Itineraries that keep the transfer times and the time constraint, best first:
    earliest arrival after `depart_after`, or latest departure before `arrive_by`; then
    fare, transfers and walking. Per pair of stations only the `per_pair` trains nearest
    the constraint are weighed (a later one cannot rank higher, bar overtaking within
    them); an itinerary another one beats on leaving later, arriving sooner and costing
    no more is dropped."""
    if (depart_after is None) == (arrive_by is None):
        raise ValueError("give depart_after or arrive_by")
    to_station = {access.station: access for access in accesses}
    from_station = {egress.station: egress for egress in egresses}
    found: list[Itinerary] = []
    for (dep, arr), listed in trains.items():
        access, egress = to_station.get(dep), from_station.get(arr)
        if access is None or egress is None:
            continue
        ordered = sorted(listed, key=_departure)  # days merged: usually in order already
        before = rules.boarding + timedelta(minutes=access.minutes)
        after = rules.alighting + timedelta(minutes=egress.minutes)
        if depart_after is not None:
            # leaving = departure - `before`: the first train one can still reach onwards
            first = bisect.bisect_left(ordered, depart_after + before, key=_departure)
            chosen = ordered[first : first + per_pair]
        else:
            assert arrive_by is not None
            chosen = [t for t in ordered if t.arrives_at + after <= arrive_by][-per_pair:]
        found += [
            Itinerary(train.departs_at - before, train.arrives_at + after, access, train, egress)
            for train in chosen
        ]
    return rank(pareto(found), by_arrival=depart_after is not None)


def _departure(train: ScheduledTrain) -> datetime:
    return train.departs_at


def pareto(itineraries: Sequence[Itinerary]) -> list[Itinerary]:
    """Drop itineraries that leave no later and arrive no sooner than another, at no lower
    fare (a slower train at the same price is no choice at all)."""
    # (leave, arrive, fare) read once: the pairs are compared n² times (90 itineraries
    # for a search of nine station pairs)
    points = [(it.leave_at, it.arrive_at, it.fare or 0) for it in itineraries]
    kept = []
    for candidate, (leave, arrive, fare) in zip(itineraries, points, strict=True):
        if not any(
            other_leave >= leave
            and other_arrive <= arrive
            and other_fare <= fare
            and (other_leave, other_arrive, other_fare) != (leave, arrive, fare)
            for other_leave, other_arrive, other_fare in points
        ):
            kept.append(candidate)
    return kept


def rank(itineraries: Iterable[Itinerary], *, by_arrival: bool) -> list[Itinerary]:
    def key(it: Itinerary) -> tuple[float, int, int, int, int, str]:
        time = it.arrive_at.timestamp() if by_arrival else -it.leave_at.timestamp()
        fare = it.fare if it.fare is not None else 10**9
        return (time, fare, it.transfers, it.walk_meters, it.estimated, it.train.train_no)

    return sorted(itineraries, key=key)
