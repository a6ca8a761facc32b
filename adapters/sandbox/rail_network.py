"""The rail network both rail sandboxes serve: the timetable (TAGO) and the partner booking
API list and sell the same trains, so a train the timetable lists is one the booking
system can sell.

The lines, their station order, distances (km, tenths) and running times are the real
network's, approximately: 경부고속선 and the conventional 경부선, the SRT line from 수서,
호남고속선 and 호남선 to 목포, 전라선 to 여수EXPO, 경전선 to 진주, the 포항 branch, 강릉선
and 중앙선 to 안동. Services run trains over them with plausible frequencies and stop
patterns. A train's times, grade and stops come from a seed of its service and slot, the
same every day as in a real timetable; Fridays to Sundays add trains. Every process sees
the same timetable for a date; it is cached per day.

Fares are distance-based and rounded to 100 won, calibrated on published fares: 서울→부산
KTX 59,800 (special 83,700), 서울→대전 KTX 23,700, 수서→부산 SRT 52,600, 서울→부산
ITX-새마을 42,600. Conventional-line kilometres count less than high-speed ones for the KTX
and SRT, as the operators' fares do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from fractions import Fraction
from functools import cache, lru_cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from resolvers.mobility import stations

KST = ZoneInfo("Asia/Seoul")

DWELL_MINUTES = 2  # at an intermediate stop
STOP_PENALTY_MINUTES = 2  # braking to and starting from a stop, per stop-to-stop run
CONVENTIONAL_WEIGHT = Fraction(78, 100)  # a conventional km in KTX/SRT fares
SPECIAL_FACTOR = Fraction(14, 10)  # special class over general


@dataclass(frozen=True, slots=True)
class Stop:
    station: str  # station code = TAGO nodeid, e.g. "NAT010000" (서울)
    arrives: datetime | None  # aware, KST; None at the origin
    departs: datetime | None  # aware, KST; None at the terminus


@dataclass(frozen=True, slots=True)
class NetworkTrain:
    train_no: str  # "101" (KTX), "301" (SRT) ... unique per running day
    grade: str  # "KTX", "KTX-산천", "KTX-이음", "SRT", "ITX-새마을"
    operator: str  # "KORAIL" or "SR"
    run_date: date  # the day it leaves its origin (KST)
    stops: tuple[Stop, ...]
    general_seats: int  # seats per class for the whole train (cars x seats per car)
    special_seats: int  # 0 when the grade has no special class
    cars: int


# Lines


@dataclass(frozen=True, slots=True)
class Line:
    """Stations in order with km (tenths) and a KTX's non-stop minutes from the first."""

    name: str
    high_speed: bool
    points: tuple[tuple[str, int, int], ...]  # (station code, km x 10, minutes)


def code_of(name: str) -> str:
    """The code of a station of rail_stations.csv, by name."""
    station = stations.by_name(name)
    if station is None:
        raise ValueError(f"no station {name!r} in rail_stations.csv")
    return station.code


def _line(name: str, high_speed: bool, points: str) -> Line:
    """`points`: "서울 0 0, 광명 21.9 11, …" (station, km, minutes), in order."""
    parsed = []
    for point in points.split(","):
        station, km, minutes = point.split()
        parsed.append((code_of(station), round(float(km) * 10), int(minutes)))
    return Line(name, high_speed, tuple(parsed))


LINES = {
    line.name: line
    for line in (
        _line(
            "경부고속선",
            True,
            "서울 0 0, 광명 21.9 11, 천안아산 96.0 28, 오송 127.0 38, 대전 159.8 49, "
            "김천구미 238.3 70, 서대구 284.0 83, 동대구 293.0 86, 경주 342.1 103, "
            "울산(통도사) 371.7 112, 부산 417.5 128",
        ),
        _line(  # the conventional line; km as TAGO's nodeids count them
            "경부선",
            False,
            "서울 0 0, 영등포 9.1 7, 수원 41.5 21, 평택 75.4 37, 천안 97.1 48, 조치원 129.8 63, "
            "대전 166.8 80, 김천 254.6 120, 구미 277.5 131, 서대구 318.9 149, 대구 323.9 152, "
            "동대구 327.1 156, 밀양 384.1 188, 구포 428.1 213, 부산 444.5 222",
        ),
        _line("수원–천안아산 연결선", False, "수원 0 0, 천안아산 60.0 22"),
        _line("용산–광명", False, "용산 0 0, 광명 18.0 13"),
        _line("수서평택고속선", True, "수서 0 0, 동탄 32.6 12, 평택지제 53.6 19, 천안아산 86.0 28"),
        _line(
            "호남고속선",
            True,
            "오송 0 0, 공주 43.8 12, 익산 88.6 23, 정읍 132.5 34, 광주송정 182.3 46",
        ),
        _line("호남선", False, "광주송정 0 0, 나주 14.7 8, 목포 66.3 30"),
        _line(
            "전라선",
            False,
            "익산 0 0, 전주 24.6 14, 남원 80.3 36, 곡성 98.6 45, 구례구 116.8 54, "
            "순천 147.6 69, 여천 171.2 81, 여수EXPO 180.4 87",
        ),
        _line(
            "경전선",
            False,
            "밀양 0 0, 진영 29.0 17, 창원중앙 43.5 26, 창원 50.8 32, 마산 56.2 37, 진주 120.0 70",
        ),
        _line("동해선 연결선", False, "경주 0 0, 포항 38.0 20"),
        _line("경원선", False, "서울 0 0, 청량리 12.8 15"),
        _line(
            "중앙선",
            False,
            "청량리 0 0, 상봉 4.6 5, 양평 43.6 23, 서원주 82.3 35, 원주 90.0 40, 제천 134.8 55, "
            "단양 163.0 67, 풍기 197.0 82, 영주 210.0 88, 안동 247.0 100",
        ),
        _line(
            "강릉선",
            False,
            "서원주 0 0, 만종 6.5 4, 횡성 23.8 11, 둔내 49.2 21, 평창 71.9 30, "
            "진부(오대산) 88.2 36, 강릉 131.2 50",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Waypoint:
    station: str
    hs_km10: int  # high-speed km (tenths) from the path's origin
    conv_km10: int  # conventional km (tenths) from the path's origin
    minutes: int  # a KTX's non-stop minutes from the path's origin


def _path(legs: str) -> tuple[Waypoint, ...]:
    """Waypoints along legs run in order ("경부고속선 서울-동대구, 경부선 동대구-밀양");
    each leg starts where the one before ended."""
    path: list[Waypoint] = []
    for leg in legs.split(","):
        name, ends = leg.strip().rsplit(" ", 1)
        line = LINES[name]
        start, end = (code_of(station) for station in ends.split("-"))
        codes = [code for code, _, _ in line.points]
        i, j = codes.index(start), codes.index(end)
        points = line.points[i : j + 1] if i <= j else line.points[j : i + 1][::-1]
        if not path:
            path.append(Waypoint(start, 0, 0, 0))
        elif path[-1].station != start:
            raise ValueError(f"leg {line.name} starts at {start}, not at {path[-1].station}")
        origin = path[-1]
        _, km0, min0 = points[0]
        for code, km, minutes in points[1:]:
            run = abs(km - km0)
            path.append(
                Waypoint(
                    code,
                    origin.hs_km10 + (run if line.high_speed else 0),
                    origin.conv_km10 + (0 if line.high_speed else run),
                    origin.minutes + abs(minutes - min0),
                )
            )
    return tuple(path)


def _reverse(path: tuple[Waypoint, ...]) -> tuple[Waypoint, ...]:
    end = path[-1]
    return tuple(
        Waypoint(
            p.station, end.hs_km10 - p.hs_km10, end.conv_km10 - p.conv_km10, end.minutes - p.minutes
        )
        for p in reversed(path)
    )


# Grades and fares


@dataclass(frozen=True, slots=True)
class Grade:
    name: str
    operator: str
    cars: int
    general_seats: int
    special_seats: int
    pace: Fraction  # running time over a KTX's
    fare: str  # the fare rule


GRADES = {
    grade.name: grade
    for grade in (
        Grade("KTX", "KORAIL", 18, 808, 127, Fraction(1), "KTX"),
        Grade("KTX-산천", "KORAIL", 8, 333, 30, Fraction(1), "KTX"),
        Grade("KTX-이음", "KORAIL", 6, 335, 46, Fraction(1), "KTX"),
        Grade("SRT", "SR", 10, 374, 36, Fraction(1), "SRT"),
        Grade("ITX-새마을", "KORAIL", 6, 376, 0, Fraction(115, 100), "ITX"),
    )
}


@dataclass(frozen=True, slots=True)
class FareRule:
    """A linear fare through a published anchor: base + k x fare-km, at least `minimum`."""

    base: int
    anchor_fare: int
    anchor: tuple[str, str, str]  # (service, from, to): the published fare's trip
    minimum: int


FARE_RULES = {
    "KTX": FareRule(1_300, 59_800, ("ktx-gyeongbu", "서울", "부산"), 8_400),
    "SRT": FareRule(1_200, 52_600, ("srt-gyeongbu", "수서", "부산"), 7_000),
    "ITX": FareRule(1_000, 42_600, ("itx-gyeongbu", "서울", "부산"), 4_800),
}


def _fare_km(a: Waypoint, b: Waypoint) -> Fraction:
    hs, conv = abs(b.hs_km10 - a.hs_km10), abs(b.conv_km10 - a.conv_km10)
    return hs + conv * CONVENTIONAL_WEIGHT


def _round100(value: Fraction) -> int:
    return int((value + 50) // 100) * 100


@cache
def _anchor_km(rule: str) -> Fraction:
    service, start, end = FARE_RULES[rule].anchor
    path = {point.station: point for point in SERVICES[service].path}
    return _fare_km(path[code_of(start)], path[code_of(end)])


@lru_cache(maxsize=65536)
def _fare_between(rule_name: str, a: Waypoint, b: Waypoint) -> int:
    """The general fare between two points of a path (exact fractions: worth keeping)."""
    return _general_fare(rule_name, _fare_km(a, b))


def _general_fare(rule_name: str, km: Fraction) -> int:
    rule = FARE_RULES[rule_name]
    value = rule.base + (rule.anchor_fare - rule.base) * km / _anchor_km(rule_name)
    return max(rule.minimum, _round100(value))


# Services


@dataclass(frozen=True, slots=True)
class Service:
    """Trains run over one path, both ways: `count` a day each way from `first` (minutes
    after midnight, from either end) every `headway` minutes; `stops` gives the chance
    that a train stops at a station between the ends (never where it is absent)."""

    key: str
    number: int  # odd: down trains number + 2k, up trains number + 1 + 2k
    grades: tuple[tuple[str, int], ...]  # (grade, weight)
    path: tuple[Waypoint, ...]
    stops: dict[str, float]  # station code -> chance a train stops there
    first: int
    count: int
    headway: int
    weekend_extra: int = 0  # more trains Friday to Sunday
    short_end: str = ""  # some trains end (or start) here instead
    short_share: float = 0.0


def _service(
    key: str,
    number: int,
    grades: str,
    legs: str,
    stops: str,
    first: str,
    count: int,
    headway: int,
    **extra: Any,
) -> Service:
    """`grades` "KTX 8, KTX-산천 2" (weights); `stops` "광명 .8, 대전 1" (chances)."""
    weighted = tuple((grade, int(weight)) for grade, weight in map(str.split, grades.split(",")))
    chances = {code_of(name): float(chance) for name, chance in map(str.split, stops.split(","))}
    hours, minutes = first.split(":")
    if "short_end" in extra:
        extra["short_end"] = code_of(extra["short_end"])
    return Service(
        key,
        number,
        weighted,
        _path(legs),
        chances,
        int(hours) * 60 + int(minutes),
        count,
        headway,
        **extra,
    )


GYEONGBU_STOPS = "대전 .95, 김천구미 .3, 서대구 .25, 동대구 1, 경주 .5, 울산(통도사) .7"
SRT_NORTH = "수서평택고속선 수서-천안아산"
SRT_TO_OSONG = f"{SRT_NORTH}, 경부고속선 천안아산-오송"
SRT_NORTH_STOPS = "동탄 .8, 평택지제 .55, 천안아산 .4, 오송 .6"
YONGSAN_TO_OSONG = "용산–광명 용산-광명, 경부고속선 광명-오송"
HONAM_STOPS = "공주 .3, 익산 .9, 정읍 .6, 광주송정 1, 나주 .6"
JEOLLA_STOPS = "익산 1, 전주 1, 남원 .9, 곡성 .6, 구례구 .6, 순천 1, 여천 .9"
GYEONGJEON = "경부선 동대구-밀양, 경전선 밀양-진주"
GYEONGJEON_STOPS = "대전 1, 동대구 1, 밀양 1, 진영 .7, 창원중앙 1, 창원 1, 마산 1"

SERVICES = {
    service.key: service
    for service in (
        _service(
            "ktx-gyeongbu",
            101,
            "KTX 8, KTX-산천 2",
            "경부고속선 서울-부산",
            f"광명 .8, 천안아산 .45, 오송 .5, {GYEONGBU_STOPS}",
            "05:13",
            36,
            28,
            weekend_extra=4,
        ),
        _service(
            "ktx-gyeongjeon",
            201,
            "KTX-산천 1",
            f"경부고속선 서울-동대구, {GYEONGJEON}",
            f"광명 .8, 천안아산 .3, 오송 .4, 김천구미 .3, {GYEONGJEON_STOPS}",
            "05:55",
            8,
            120,
        ),
        _service(
            "ktx-pohang",
            231,
            "KTX-산천 1",
            "경부고속선 서울-경주, 동해선 연결선 경주-포항",
            "광명 .8, 천안아산 .3, 오송 .4, 대전 1, 김천구미 .2, 동대구 1, 경주 1",
            "05:30",
            7,
            150,
        ),
        _service(
            "ktx-gyeongbu-suwon",
            261,
            "KTX 1",
            "경부선 서울-수원, 수원–천안아산 연결선 수원-천안아산, 경부고속선 천안아산-동대구, "
            "경부선 동대구-부산",
            "영등포 1, 수원 1, 천안아산 .5, 오송 .5, 대전 1, 김천구미 .5, 동대구 1, 밀양 1, 구포 1",
            "06:40",
            4,
            260,
        ),
        _service(
            "srt-gyeongbu",
            301,
            "SRT 1",
            f"{SRT_NORTH}, 경부고속선 천안아산-부산",
            f"{SRT_NORTH_STOPS}, {GYEONGBU_STOPS}",
            "05:30",
            19,
            55,
            weekend_extra=2,
        ),
        _service(
            "srt-gyeongjeon",
            381,
            "SRT 1",
            f"{SRT_NORTH}, 경부고속선 천안아산-동대구, {GYEONGJEON}",
            f"{SRT_NORTH_STOPS}, {GYEONGJEON_STOPS}",
            "07:00",
            2,
            540,
        ),
        _service(
            "srt-pohang",
            391,
            "SRT 1",
            f"{SRT_NORTH}, 경부고속선 천안아산-경주, 동해선 연결선 경주-포항",
            f"{SRT_NORTH_STOPS}, 대전 1, 동대구 1, 경주 1",
            "08:00",
            2,
            540,
        ),
        _service(
            "ktx-honam",
            401,
            "KTX 1, KTX-산천 1",
            f"{YONGSAN_TO_OSONG}, 호남고속선 오송-광주송정, 호남선 광주송정-목포",
            f"광명 1, 천안아산 .4, 오송 .9, {HONAM_STOPS}",
            "05:07",
            18,
            55,
            weekend_extra=2,
            short_end="광주송정",
            short_share=0.3,
        ),
        _service(
            "ktx-jeolla",
            501,
            "KTX-산천 3, KTX 2",
            f"{YONGSAN_TO_OSONG}, 호남고속선 오송-익산, 전라선 익산-여수EXPO",
            f"광명 1, 천안아산 .3, 오송 .7, 공주 .2, {JEOLLA_STOPS}",
            "05:20",
            10,
            100,
        ),
        _service(
            "srt-honam",
            601,
            "SRT 1",
            f"{SRT_TO_OSONG}, 호남고속선 오송-광주송정, 호남선 광주송정-목포",
            f"{SRT_NORTH_STOPS}, {HONAM_STOPS}",
            "05:10",
            10,
            100,
            short_end="광주송정",
            short_share=0.4,
        ),
        _service(
            "srt-jeolla",
            661,
            "SRT 1",
            f"{SRT_TO_OSONG}, 호남고속선 오송-익산, 전라선 익산-여수EXPO",
            f"{SRT_NORTH_STOPS}, {JEOLLA_STOPS}",
            "07:30",
            2,
            540,
        ),
        _service(
            "ktx-eum-jungang",
            701,
            "KTX-이음 1",
            "중앙선 청량리-안동",
            "상봉 .5, 양평 .9, 서원주 .5, 원주 1, 제천 1, 단양 .8, 풍기 .7, 영주 1",
            "06:00",
            8,
            120,
        ),
        _service(
            "ktx-gangneung",
            801,
            "KTX-산천 1",
            "경원선 서울-청량리, 중앙선 청량리-서원주, 강릉선 서원주-강릉",
            "청량리 1, 상봉 .6, 양평 .6, 서원주 .3, 만종 .7, 횡성 .3, 둔내 .4, 평창 .6, 진부 .7",
            "05:11",
            11,
            95,
            weekend_extra=2,
        ),
        _service(
            "itx-gyeongbu",
            1001,
            "ITX-새마을 1",
            "경부선 서울-부산",
            "영등포 1, 수원 1, 평택 .7, 천안 1, 조치원 .6, 대전 1, 김천 1, 구미 .8, 서대구 .8, "
            "대구 1, 동대구 1, 밀양 1, 구포 1",
            "06:20",
            7,
            120,
        ),
    )
}


# A day's trains


@dataclass(frozen=True, slots=True)
class _Day:
    trains: tuple[NetworkTrain, ...]
    by_no: dict[str, NetworkTrain]
    paths: dict[str, tuple[Waypoint, ...]]  # train_no -> the path it runs
    # station -> the trains stopping there, each with the index of its (first) stop there
    calls: dict[str, dict[str, int]]


def _trains_of(service: Service, day: date) -> list[tuple[NetworkTrain, tuple[Waypoint, ...]]]:
    weekend = day.isoweekday() in (5, 6, 7)
    made = []
    for direction in (0, 1):
        slots = list(range(service.count))
        departures = [service.first + k * service.headway for k in slots]
        if weekend and service.weekend_extra:
            # extra trains halfway between regular ones, in the busy middle of the day
            middle = service.count // 2
            for n in range(service.weekend_extra):
                k = middle - service.weekend_extra // 2 + n
                departures.append(service.first + k * service.headway + service.headway // 2)
                slots.append(service.count + n)
        for slot, departure in zip(slots, departures, strict=True):
            # the train's own character is the same every day; the date only adds extras
            rng = random.Random(f"{service.key}|{direction}|{slot}")  # noqa: S311 (simulated)
            departure += rng.randint(-4, 4)
            names, weights = zip(*service.grades, strict=True)
            grade = GRADES[rng.choices(names, weights)[0]]
            path = service.path
            if service.short_end and rng.random() < service.short_share:
                codes = [point.station for point in path]
                path = path[: codes.index(service.short_end) + 1]
            if direction:
                path = _reverse(path)
            chosen = [path[0]]
            chosen += [p for p in path[1:-1] if rng.random() < service.stops.get(p.station, 0)]
            chosen.append(path[-1])
            number = service.number + direction + 2 * slot
            made.append((_train(str(number), grade, day, departure, chosen), path))
    return made


def _train(
    number: str, grade: Grade, day: date, departure: int, chosen: list[Waypoint]
) -> NetworkTrain:
    start = datetime.combine(day, time(), KST) + timedelta(minutes=departure)
    stops = [Stop(chosen[0].station, None, start)]
    clock = start
    for previous, point in pairwise(chosen):
        run = (point.minutes - previous.minutes) * grade.pace + STOP_PENALTY_MINUTES
        arrives = clock + timedelta(minutes=round(run))
        last = point is chosen[-1]
        clock = arrives + timedelta(minutes=DWELL_MINUTES)
        stops.append(Stop(point.station, arrives, None if last else clock))
    return NetworkTrain(
        train_no=number,
        grade=grade.name,
        operator=grade.operator,
        run_date=day,
        stops=tuple(stops),
        general_seats=grade.general_seats,
        special_seats=grade.special_seats,
        cars=grade.cars,
    )


@lru_cache(maxsize=64)
def _day(day: date) -> _Day:
    made = [pair for service in SERVICES.values() for pair in _trains_of(service, day)]
    made.sort(key=lambda pair: (_leaves(pair[0].stops[0]), int(pair[0].train_no)))
    trains = tuple(train for train, _ in made)
    calls: dict[str, dict[str, int]] = {}
    for train in trains:
        for index, stop in enumerate(train.stops):
            calls.setdefault(stop.station, {}).setdefault(train.train_no, index)
    return _Day(
        trains=trains,
        by_no={train.train_no: train for train in trains},
        paths={train.train_no: path for train, path in made},
        calls=calls,
    )


def _leaves(stop: Stop) -> datetime:
    assert stop.departs is not None
    return stop.departs


def trains_on(day: date) -> list[NetworkTrain]:
    """Every train leaving its origin on `day` (KST), by departure. Deterministic, cached."""
    return list(_day(day).trains)


def train(train_no: str, day: date) -> NetworkTrain | None:
    """The train with this number leaving its origin on `day`, None if none runs."""
    return _day(day).by_no.get(train_no)


def between(day: date, dep: str, arr: str) -> list[tuple[NetworkTrain, Stop, Stop]]:
    """Trains stopping at `dep` then at `arr`, leaving `dep` on `day` (KST; a train that
    left its origin the evening before counts on the day it reaches `dep`), by departure."""
    found = []
    for run_date in (day - timedelta(days=1), day):
        known = _day(run_date)
        # the trains calling at both (an index: scanning the day's trains for each of a
        # search's nine timetable calls was the sandboxes' largest cost in bench/journeys.py)
        at_arr = known.calls.get(arr, {})
        for train_no, i in known.calls.get(dep, {}).items():
            j = at_arr.get(train_no)
            if j is None:
                continue
            candidate = known.by_no[train_no]
            leaving = candidate.stops[i].departs
            if i < j and leaving is not None and leaving.date() == day:
                found.append((candidate, candidate.stops[i], candidate.stops[j]))
    found.sort(key=lambda item: (_leaves(item[1]), int(item[0].train_no)))
    return found


def fare(train: NetworkTrain, dep: str, arr: str, seat_class: str) -> int:
    """One adult's fare in won between two of the train's stations; `seat_class` "general"
    or "special" (0 for a train without a special class). ValueError for stations the
    train does not run between, in that order."""
    known = _day(train.run_date)
    path = known.paths.get(train.train_no)
    if path is None or known.by_no[train.train_no].stops != train.stops:
        raise ValueError(f"train {train.train_no} does not run on {train.run_date}")
    codes = [point.station for point in path]
    if dep not in codes or arr not in codes or codes.index(dep) >= codes.index(arr):
        raise ValueError(f"train {train.train_no} does not run from {dep} to {arr}")
    general = _fare_between(
        GRADES[train.grade].fare, path[codes.index(dep)], path[codes.index(arr)]
    )
    if seat_class == "general":
        return general
    if seat_class == "special":
        return _round100(general * SPECIAL_FACTOR) if train.special_seats else 0
    raise ValueError(f"seat class {seat_class!r} is not general or special")


def distance_km(train: NetworkTrain, dep: str, arr: str) -> float:
    """Track kilometres the train runs between two of its stations."""
    path = _day(train.run_date).paths[train.train_no]
    points = {point.station: point for point in path}
    a, b = points[dep], points[arr]
    return (abs(b.hs_km10 - a.hs_km10) + abs(b.conv_km10 - a.conv_km10)) / 10


def station_codes() -> frozenset[str]:
    """Every station some line of the network passes."""
    return frozenset(code for line in LINES.values() for code, _, _ in line.points)
