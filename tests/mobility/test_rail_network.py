"""The rail network both rail sandboxes serve, and the station reference data it runs on:
consistent timetables, fares the operators would charge, stations found by name and place."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest

from adapters.sandbox import rail_network as network
from resolvers.mobility import stations

WEDNESDAY = date(2026, 8, 12)
FRIDAY = date(2026, 8, 14)
DAYS = (WEDNESDAY, FRIDAY, date(2026, 8, 16), date(2027, 1, 1))


def code(name: str) -> str:
    found = stations.by_name(name)
    assert found is not None, name
    return found.code


SEOUL, BUSAN, SUSEO = code("서울"), code("부산"), code("수서")


def at(moment: datetime | None) -> datetime:
    assert moment is not None
    return moment


@pytest.mark.parametrize("day", DAYS)
def test_every_train_runs_forward_in_time_and_korean_time(day: date) -> None:
    for train in network.trains_on(day):
        first, last = train.stops[0], train.stops[-1]
        assert first.arrives is None and last.departs is None, train.train_no
        assert first.departs is not None and first.departs.date() == train.run_date
        assert first.departs.utcoffset() == timedelta(hours=9)
        for before, after in itertools.pairwise(train.stops):
            assert before.departs is not None and after.arrives is not None
            assert before.departs < after.arrives, (train.train_no, after.station)
            if after.departs is not None:
                assert after.arrives < after.departs <= after.arrives + timedelta(minutes=5)
        assert len({stop.station for stop in train.stops}) == len(train.stops)


@pytest.mark.parametrize("day", DAYS)
def test_train_numbers_are_unique_per_day_and_found_again(day: date) -> None:
    trains = network.trains_on(day)
    assert len({train.train_no for train in trains}) == len(trains)
    for train in trains[::17]:
        assert network.train(train.train_no, day) == train
    assert network.train("9999", day) is None


def test_every_station_of_the_network_is_in_the_reference_data_and_served() -> None:
    served = {stop.station for train in network.trains_on(WEDNESDAY) for stop in train.stops}
    listed = {station.code for station in stations.STATIONS}
    assert served == listed
    assert network.station_codes() == listed
    assert len(listed) == len(stations.STATIONS)  # no code twice


def test_seats_and_operators_follow_the_grade() -> None:
    seen = {}
    for train in network.trains_on(WEDNESDAY):
        seen[train.grade] = (train.operator, train.cars, train.general_seats, train.special_seats)
        for stop in train.stops:
            station = stations.by_code(stop.station)
            assert station is not None and train.operator in station.operators, stop.station
    assert seen["KTX"] == ("KORAIL", 18, 808, 127)  # 935 seats
    assert sum(seen["KTX-산천"][2:]) == 363
    assert sum(seen["SRT"][2:]) == 410 and seen["SRT"][0] == "SR"
    assert seen["ITX-새마을"][3] == 0
    assert set(seen) == {"KTX", "KTX-산천", "KTX-이음", "SRT", "ITX-새마을"}


def test_the_timetable_is_the_same_for_a_day_whoever_asks_and_busier_on_fridays() -> None:
    first = network.trains_on(WEDNESDAY)
    network._day.cache_clear()
    assert network.trains_on(WEDNESDAY) == first
    first.clear()  # a caller's list is its own
    assert network.trains_on(WEDNESDAY)
    assert len(network.trains_on(FRIDAY)) > len(network.trains_on(WEDNESDAY))
    wednesday = {t.train_no: at(t.stops[0].departs).time() for t in network.trains_on(WEDNESDAY)}
    next_week = network.trains_on(WEDNESDAY + timedelta(days=7))
    assert {t.train_no: at(t.stops[0].departs).time() for t in next_week} == wednesday


def test_seoul_to_busan_is_a_ktx_every_half_hour_at_the_published_fares() -> None:
    found = network.between(WEDNESDAY, SEOUL, BUSAN)
    ktx = [(train, dep, arr) for train, dep, arr in found if train.grade.startswith("KTX")]
    departures = [at(dep.departs) for _, dep, _ in ktx]
    assert departures == sorted(departures)
    assert f"{departures[0]:%H:%M}" < "05:30" and f"{departures[-1]:%H:%M}" > "21:00"
    assert max(b - a for a, b in itertools.pairwise(departures)) <= timedelta(minutes=40)
    fastest = min(at(arr.arrives) - at(dep.departs) for _, dep, arr in ktx)
    assert timedelta(hours=2, minutes=15) <= fastest <= timedelta(hours=2, minutes=40)
    train = next(t for t, _, _ in ktx if int(t.train_no) < 200)  # 경부고속선, not via 수원
    assert network.fare(train, SEOUL, BUSAN, "general") == 59_800
    assert network.fare(train, SEOUL, BUSAN, "special") == 83_700
    assert network.fare(train, SEOUL, code("대전"), "general") == 23_700
    (srt, *_), *_ = network.between(WEDNESDAY, SUSEO, BUSAN)
    assert srt.grade == "SRT" and network.fare(srt, SUSEO, BUSAN, "general") == 52_600
    itx = next(t for t, _, _ in found if t.grade == "ITX-새마을")
    assert network.fare(itx, SEOUL, BUSAN, "general") == 42_600
    assert network.fare(itx, SEOUL, BUSAN, "special") == 0  # no special class


def test_between_lists_trains_stopping_at_both_in_that_order_by_departure() -> None:
    daejeon = code("대전")
    found = network.between(WEDNESDAY, SEOUL, daejeon)
    assert found
    for train, dep, arr in found:
        assert dep.station == SEOUL and arr.station == daejeon
        assert dep in train.stops and arr in train.stops
        assert train.stops.index(dep) < train.stops.index(arr)
        assert dep.departs is not None and dep.departs.date() == WEDNESDAY
    back = {train.train_no for train, _, _ in network.between(WEDNESDAY, daejeon, SEOUL)}
    assert not back & {train.train_no for train, _, _ in found}
    assert network.between(WEDNESDAY, code("강릉"), code("목포")) == []


def test_a_train_past_midnight_is_listed_on_the_day_it_reaches_the_station() -> None:
    late = [
        (train, stop)
        for train in network.trains_on(WEDNESDAY)
        for stop in train.stops[1:-1]
        if stop.departs is not None and stop.departs.date() > WEDNESDAY
    ]
    assert late, "some evening train passes a station after midnight"
    train, stop = late[0]
    terminus = train.stops[-1].station
    on_next_day = network.between(WEDNESDAY + timedelta(days=1), stop.station, terminus)
    assert train in [found for found, _, _ in on_next_day]
    assert train not in [
        found for found, _, _ in network.between(WEDNESDAY, stop.station, terminus)
    ]


@pytest.mark.parametrize("day", (WEDNESDAY, FRIDAY))
def test_fares_grow_with_distance_and_are_the_same_both_ways(day: date) -> None:
    for train in network.trains_on(day):
        origin = train.stops[0].station
        previous = (0.0, 0)
        for stop in train.stops[1:]:
            km = network.distance_km(train, origin, stop.station)
            general = network.fare(train, origin, stop.station, "general")
            assert km > previous[0] and general >= previous[1], train.train_no
            assert general % 100 == 0 and general >= 4_800
            special = network.fare(train, origin, stop.station, "special")
            assert special == 0 if not train.special_seats else special > general
            previous = (km, general)
    for a, b in [("서울", "대전"), ("용산", "광주송정"), ("수서", "동대구"), ("청량리", "안동")]:
        there = {
            (t.grade, network.fare(t, code(a), code(b), "general"))
            for t, _, _ in network.between(day, code(a), code(b))
        }
        back = {
            (t.grade, network.fare(t, code(b), code(a), "general"))
            for t, _, _ in network.between(day, code(b), code(a))
        }
        assert there == back, (a, b)


def test_fares_are_refused_for_trips_a_train_does_not_make() -> None:
    train, _, _ = network.between(WEDNESDAY, SEOUL, BUSAN)[0]
    with pytest.raises(ValueError, match="does not run from"):
        network.fare(train, BUSAN, SEOUL, "general")
    with pytest.raises(ValueError, match="does not run from"):
        network.fare(train, SEOUL, code("목포"), "general")
    with pytest.raises(ValueError, match="seat class"):
        network.fare(train, SEOUL, BUSAN, "first")


def test_stations_are_found_by_code_and_by_the_names_people_use() -> None:
    seoul = stations.by_code("NAT010000")
    assert seoul is not None and (seoul.name, seoul.name_en, seoul.city_code) == (
        "서울",
        "Seoul",
        "11",
    )
    assert stations.by_code("NAT011668") == stations.by_name("대전역")
    for name in ("울산", "울산역", "울산(통도사)", "Ulsan (Tongdosa)"):
        assert stations.by_name(name) == stations.by_code("NATH13717"), name
    assert stations.by_name("신경주") == stations.by_name("경주")
    suseo = stations.by_name("수서")
    assert suseo is not None and (suseo.operators, suseo.srt_code) == (("SR",), "0551")
    assert stations.by_name("평양") is None and stations.by_code("NAT999999") is None


def test_every_station_is_in_korea_with_an_srt_code_where_srt_stops() -> None:
    for station in stations.STATIONS:
        assert 33.0 < station.lat < 38.7 and 124.5 < station.lng < 130.0, station.name
        assert station.code.startswith("NAT") and len(station.code) == 9
        assert bool(station.srt_code) == ("SR" in station.operators), station.name
        assert station.city_code in {"11", "12", "21", "22", "24", "25", "26"} | {
            str(n) for n in range(31, 39)
        }


def test_nearest_finds_seoul_station_from_city_hall() -> None:
    (first, km), *others = stations.nearest(37.5663, 126.9779)
    assert first.name == "서울" and 1.0 < km < 2.0
    assert len(others) == 2 and all(km <= other_km for _, other_km in others)
    assert [s.name for s, _ in stations.nearest(35.1040, 129.0345, limit=2)] == ["부산", "구포"]
    assert stations.nearest(37.5663, 126.9779, within_km=1.0) == []
    assert stations.nearest(33.4996, 126.5312) == []  # 제주: no railway
