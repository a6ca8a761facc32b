"""The planner's rules on hand-made parts: transfer times, time constraints, ranking and
estimates for missing local paths."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from adapters.kinds import LegMode, LocalLeg, LocalPath, ScheduledTrain
from schema.mobility import planner
from schema.mobility.planner import Access

KST = ZoneInfo("Asia/Seoul")
RULES = planner.Rules(boarding=timedelta(minutes=10), alighting=timedelta(minutes=5))


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, tzinfo=KST)


def path(minutes: int, fare: int = 1_400, walk: int = 300) -> LocalPath:
    leg = LocalLeg(LegMode.SUBWAY, minutes, 5_000, "a", "b", 37.5, 127.0, 37.6, 127.1, "1호선", 5)
    return LocalPath(minutes, fare, walk, 0, (leg,))


def train(no: str, dep: datetime, arr: datetime, fare: int = 59_800) -> ScheduledTrain:
    return ScheduledTrain(no, "KTX", "A", "B", dep, arr, fare)


def test_an_itinerary_keeps_the_boarding_time_after_reaching_the_station() -> None:
    trains = {("A", "B"): [train("1", at(8, 0), at(10, 40)), train("2", at(8, 30), at(11, 10))]}
    found = planner.combine(
        [Access("A", 5, path(25))],
        trains,
        [Access("B", 3, path(15))],
        RULES,
        depart_after=at(7, 30),
    )
    # train 1 needs leaving at 07:25 (25 min + 10 min boarding): too early
    assert [it.train.train_no for it in found] == ["2"]
    [it] = found
    assert it.leave_at == at(7, 55)
    assert it.arrive_at == at(11, 10) + timedelta(minutes=5 + 15)
    assert it.fare == 1_400 + 59_800 + 1_400


def test_arrive_by_takes_the_latest_departure_that_arrives_in_time() -> None:
    trains = {
        ("A", "B"): [
            train("1", at(7, 0), at(9, 40)),
            train("2", at(8, 0), at(10, 40)),
            train("3", at(9, 0), at(11, 40)),
        ]
    }
    found = planner.combine(
        [Access("A", 5, path(20))], trains, [Access("B", 3, path(10))], RULES, arrive_by=at(11)
    )
    assert [it.train.train_no for it in found] == ["2", "1"]


def test_a_slower_train_that_leaves_earlier_and_arrives_later_is_dropped() -> None:
    trains = {
        ("A", "B"): [train("slow", at(8, 0), at(11, 30)), train("fast", at(8, 20), at(10, 50))]
    }
    found = planner.combine(
        [Access("A", 5, path(10))], trains, [Access("B", 3, path(10))], RULES, depart_after=at(7)
    )
    assert [it.train.train_no for it in found] == ["fast"]


def test_a_missing_local_path_is_estimated_pessimistically_and_marked() -> None:
    trains = {("A", "B"): [train("1", at(9, 0), at(11, 40))]}
    unknown = Access("A", 12.0, None)
    [it] = planner.combine([unknown], trains, [Access("B", 3, path(10))], RULES, depart_after=at(6))
    assert it.estimated and it.fare is None
    # 10 fixed + 12 km x 1.4 at 15 km/h (67.2 → 68) minutes, then 10 minutes to board
    assert it.leave_at == at(9, 0) - timedelta(minutes=10 + 68 + 10)


def test_ranking_breaks_equal_arrivals_by_fare() -> None:
    trains = {
        ("A", "B"): [train("dear", at(8, 0), at(10, 0), 70_000)],
        ("C", "B"): [train("cheap", at(8, 0), at(10, 0), 50_000)],
    }
    found = planner.combine(
        [Access("A", 5, path(10)), Access("C", 6, path(10))],
        trains,
        [Access("B", 3, path(10))],
        RULES,
        depart_after=at(7),
    )
    assert [it.train.train_no for it in found] == ["cheap"]  # the dearer one is dominated


def test_one_time_constraint_is_required() -> None:
    with pytest.raises(ValueError):
        planner.combine([], {}, [], RULES)
