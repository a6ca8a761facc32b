"""The sandbox's ways between two points, in searchPubTransPath's shape.

Any two points in Korea get up to three paths — subway first, bus first, bus then subway —
drawn from a generator seeded by the coordinates, so a request is answered the same way
every time. Stops lie near the points, towards each other; distances are straight lines
lengthened by a detour factor; walks go at 4.5 km/h, buses at 18 km/h with a stop every
450 m, subways at 33 km/h (2 minutes a station, one every 1.1 km). Subways run only
between two points of the same metropolitan area below; elsewhere buses alone. Fares
follow the capital area's card fares: 1,400 won a subway ride, 1,500 a bus ride, 100 won
more per 5 km beyond 10 km (per 8 km beyond 50 km) over the whole trip when it takes the
subway or transfers (a transfer costs nothing more); one bus alone is the flat fare.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from typing import Any

from adapters.odsay import walking
from adapters.odsay.wire import RECOMMENDED, SEARCH_RADIUS_M, WITHIN_CITY, PathType, Traffic

BASE_FARES = {Traffic.SUBWAY: 1400, Traffic.BUS: 1500}
BUS_M_PER_MIN = 300.0  # 18 km/h
BUS_STOP_SPACING_M = 450.0
STATION_SPACING_M = 1100.0  # at 2 minutes a station: 33 km/h
BUS_DETOUR, RAIL_DETOUR = 1.25, 1.15
M_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Region:
    """A metropolitan area with a subway (codes and lines are the sandbox's, unverified)."""

    name: str
    south: float
    west: float
    north: float
    east: float
    city_code: int  # subwayCityCode and busCityCode
    lines: tuple[int, ...]  # subwayCode of line 1, 2 …: lane name f"{name} {n}호선"
    stations: tuple[str, ...]
    bus_kinds: tuple[int, ...]

    def holds(self, lat: float, lng: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lng <= self.east


REGIONS = (
    Region(
        "수도권", 37.20, 126.60, 37.80, 127.25, 1000, tuple(range(1, 10)),
        ("시청", "서울역", "종각", "을지로입구", "충정로", "신촌", "합정", "당산", "문래",
         "신도림", "대림", "신림", "봉천", "사당", "교대", "역삼", "선릉", "삼성", "잠실",
         "성수", "왕십리", "동대문", "혜화", "수유", "창동", "노원", "공덕", "마포", "여의도",
         "목동", "오목교", "양재", "수서", "천호", "군자", "약수", "삼각지", "이태원", "불광"),
        (11, 12),
    ),
    Region(
        "부산", 35.00, 128.85, 35.30, 129.25, 7000, (71, 72, 73, 74),
        ("서면", "부산역", "남포", "중앙", "연산", "동래", "해운대", "센텀시티", "사상",
         "덕천", "대연", "수영", "광안", "부산대", "범일", "온천장"),
        (1, 11),
    ),
    Region(
        "대구", 35.75, 128.45, 35.98, 128.75, 4000, (41, 42, 43),
        ("반월당", "동대구", "중앙로", "명덕", "범어", "대구역", "칠성시장", "두류", "신남",
         "만촌", "교대", "수성구민운동장"),
        (1, 11),
    ),
    Region(
        "대전", 36.25, 127.30, 36.45, 127.50, 3000, (31,),
        ("대전역", "시청", "정부청사", "유성온천", "중앙로", "서대전네거리", "월드컵경기장",
         "갈마", "용문", "판암"),
        (1, 11),
    ),
    Region(
        "광주", 35.08, 126.75, 35.25, 126.95, 5000, (51,),
        ("금남로4가", "문화전당", "양동시장", "상무", "광주송정", "농성", "화정", "쌍촌",
         "운천", "남광주"),
        (1, 11),
    ),
)  # fmt: skip
PLACES = ("중앙", "신흥", "대흥", "남산", "동문", "서문", "교동", "명륜", "송정", "월곡",
          "장안", "용두", "도원", "신월", "호수", "삼천", "금암", "효자", "평화")  # fmt: skip
STOP_KINDS = ("사거리", "입구", "시장", "주민센터", "초등학교", "우체국", "공원", "아파트",
              "삼거리")  # fmt: skip
REGIONAL_CITY_CODE = 9000  # busCityCode outside the areas above
BUS_NUMBERS = {11: (100, 799), 12: (1000, 7999)}  # 간선 3 digits, 지선 4; others 1-300
ID_LOW, ID_SPAN = 100_000, 200_000  # stop and station ids: 100000-299999


Point = tuple[float, float]


@dataclass(frozen=True)
class Stop:
    name: str
    lat: float
    lng: float
    id: int

    @property
    def point(self) -> Point:
        return self.lat, self.lng


def answer(
    from_lat: float, from_lng: float, to_lat: float, to_lng: float, opt: int = RECOMMENDED
) -> dict[str, Any]:
    """The `result` for two points at least SEARCH_RADIUS_M apart."""
    seed = zlib.crc32(f"{from_lat:.6f},{from_lng:.6f},{to_lat:.6f},{to_lng:.6f}".encode())
    region = next((r for r in REGIONS if r.holds(from_lat, from_lng)), None)
    subway = region is not None and region.holds(to_lat, to_lng)
    rng = random.Random(seed)  # noqa: S311 (seeded sandbox data, not a secret)
    trip = _Trip(rng, region, (from_lat, from_lng), (to_lat, to_lng))
    built = [trip.subway(), trip.bus(), trip.mixed()] if subway else [trip.bus(), trip.buses()]
    paths = [path for path in built if path is not None]
    paths.sort(key=lambda path: _rank(opt, path))
    kinds = [path["pathType"] for path in paths]
    return {
        "searchType": WITHIN_CITY,
        "outTrafficCheck": 0,
        "busCount": kinds.count(PathType.BUS),
        "subwayCount": kinds.count(PathType.SUBWAY),
        "subwayBusCount": kinds.count(PathType.MIXED),
        "pointDistance": round(walking.straight_m(from_lat, from_lng, to_lat, to_lng)),
        "startRadius": SEARCH_RADIUS_M,
        "endRadius": SEARCH_RADIUS_M,
        "path": paths,
    }


def fare(rides: list[tuple[Traffic, int]]) -> int:
    """Card fare of a trip's rides (kind, metres) under the integrated transfer fare."""
    base = max(BASE_FARES[kind] for kind, _ in rides)
    if len(rides) == 1 and rides[0][0] == Traffic.BUS:
        return base
    km = sum(meters for _, meters in rides) / 1000
    extra = math.ceil(max(0.0, min(km, 50) - 10) / 5) + math.ceil(max(0.0, km - 50) / 8)
    return base + 100 * extra


def _rank(opt: int, path: dict[str, Any]) -> tuple[int, int]:
    """OPT: 0 recommended and 1 by time (then fare), 2 by rides, 3 by walking (then time)."""
    info = path["info"]
    rides = info["busTransitCount"] + info["subwayTransitCount"]
    first = {2: rides, 3: info["totalWalk"]}.get(opt, info["totalTime"])
    return first, info["totalTime"] if opt in (2, 3) else info["payment"]


class _Trip:
    def __init__(self, rng: random.Random, region: Region | None, start: Point, end: Point):
        self.rng, self.region, self.start, self.end = rng, region, start, end
        self.distance = walking.straight_m(*start, *end)
        self.names = list(region.stations if region else ())
        rng.shuffle(self.names)

    def subway(self) -> dict[str, Any] | None:
        if self.distance < 1500:
            return None
        board = self._station(self.start, self.end)
        alight = self._station(self.end, self.start)
        apart = _straight(board, alight)
        if apart < 1000:
            return None
        line = self.rng.choice(self._region().lines)
        legs: list[dict[str, Any]] = []
        if apart > 8000:
            middle = self._station(self._between(board.point, alight.point), self.end, 0, 400)
            other = self.rng.choice([n for n in self._region().lines if n != line] or [line])
            legs += [self._subway(board, middle, line, ("start",)), self._transfer()]
            legs.append(self._subway(middle, alight, other, ("end",)))
        else:
            legs.append(self._subway(board, alight, line, ("start", "end")))
        return self._path(PathType.SUBWAY, legs)

    def bus(self) -> dict[str, Any]:
        board, alight = self._stop(self.start, self.end), self._stop(self.end, self.start)
        return self._path(PathType.BUS, [self._bus(board, alight)])

    def buses(self) -> dict[str, Any] | None:
        """Two buses and a short walk between them, for longer trips without a subway."""
        if self.distance < 4000:
            return None
        board, alight = self._stop(self.start, self.end), self._stop(self.end, self.start)
        off = self._stop(self._between(board.point, alight.point), self.end, 0, 150)
        on = self._stop(off.point, self.end, 40, 150)
        legs = [self._bus(board, off), self._walk(off.point, on.point)]
        return self._path(PathType.BUS, [*legs, self._bus(on, alight)])

    def mixed(self) -> dict[str, Any] | None:
        """A bus to a subway station on the way, then the subway."""
        if self.distance < 3000:
            return None
        board = self._stop(self.start, self.end)
        station = self._station(self._between(board.point, self.end), self.end, 0, 300)
        alight = self._station(self.end, self.start)
        near = self._toward(station.point, self.start, 60, 200)
        stop = Stop(f"{station.name}역{self.rng.randint(1, 12)}번출구", *near, self._id())
        line = self.rng.choice(self._region().lines)
        ride = self._subway(station, alight, line, ("start", "end"))
        walk = self._walk(stop.point, _meeting(ride, "start"))
        return self._path(PathType.MIXED, [self._bus(board, stop), walk, ride])

    # Building blocks

    def _path(self, kind: PathType, rides: list[dict[str, Any]]) -> dict[str, Any]:
        first, last = rides[0], rides[-1]
        steps = [self._walk(self.start, _meeting(first, "start")), *rides]
        steps.append(self._walk(_meeting(last, "end"), self.end))
        transit = [s for s in steps if s["trafficType"] != Traffic.WALK]
        walks = [s for s in steps if s["trafficType"] == Traffic.WALK]
        riding = sum(s["distance"] for s in transit)
        walked = sum(s["distance"] for s in walks)
        counts = {kind: sum(s["stationCount"] for s in transit if s["trafficType"] == kind)
                  for kind in (Traffic.BUS, Traffic.SUBWAY)}  # fmt: skip
        info = {
            "trafficDistance": float(riding),
            "totalWalk": walked,
            "totalTime": sum(s["sectionTime"] for s in steps),
            "payment": fare([(Traffic(s["trafficType"]), s["distance"]) for s in transit]),
            "busTransitCount": sum(1 for s in transit if s["trafficType"] == Traffic.BUS),
            "subwayTransitCount": sum(1 for s in transit if s["trafficType"] == Traffic.SUBWAY),
            "mapObj": "@".join(map(_map_object, transit)),
            "firstStartStation": first["startName"],
            "lastEndStation": last["endName"],
            "totalStationCount": counts[Traffic.BUS] + counts[Traffic.SUBWAY],
            "busStationCount": counts[Traffic.BUS],
            "subwayStationCount": counts[Traffic.SUBWAY],
            "totalDistance": float(riding + walked),
            "totalWalkTime": -1,
            "checkIntervalTime": 100,
            "checkIntervalTimeOverYn": "N",
            "totalIntervalTime": sum(s["intervalTime"] for s in transit),
        }
        return {"pathType": kind.value, "info": info, "subPath": steps}

    def _walk(self, start: Point, end: Point) -> dict[str, Any]:
        meters = walking.walk_m(*start, *end)
        return {"trafficType": Traffic.WALK.value, "distance": meters,
                "sectionTime": walking.minutes(meters) if meters else 0}  # fmt: skip

    def _transfer(self) -> dict[str, Any]:
        """Changing lines inside a station: no distance, a few minutes."""
        minutes = self.rng.randint(2, 4)
        return {"trafficType": Traffic.WALK.value, "distance": 0, "sectionTime": minutes}

    def _subway(
        self, board: Stop, alight: Stop, line: int, exits: tuple[str, ...]
    ) -> dict[str, Any]:
        """A ride with the exits named where a walk leaves or enters the station."""
        region = self._region()
        meters = round(_straight(board, alight) * RAIL_DETOUR, -2)
        count = max(1, round(meters / STATION_SPACING_M))
        stations = self._passed(board, alight, count, subway=True)
        named: dict[str, Any] = {}
        for side, stop, away in (("start", board, self.start), ("end", alight, self.end)):
            if side in exits:
                lat, lng = self._toward(stop.point, away, 40, 120)
                named |= {f"{side}ExitNo": str(self.rng.randint(1, 12)),
                          f"{side}ExitX": lng, f"{side}ExitY": lat}  # fmt: skip
        return {
            "trafficType": Traffic.SUBWAY.value,
            "distance": int(meters),
            "sectionTime": 2 * count,
            "stationCount": count,
            "lane": [
                {
                    "name": f"{region.name} {region.lines.index(line) + 1}호선",
                    "subwayCode": line,
                    "subwayCityCode": region.city_code,
                }
            ],
            "intervalTime": self.rng.randint(4, 10),
            **_ends(board, alight),
            "way": alight.name,
            "wayCode": self.rng.choice((1, 2)),
            "door": "null",
            "startID": board.id,
            "endID": alight.id,
            **named,
            "passStopList": {"stations": stations},
        }

    def _bus(self, board: Stop, alight: Stop) -> dict[str, Any]:
        meters = round(_straight(board, alight) * BUS_DETOUR)
        count = max(1, round(meters / BUS_STOP_SPACING_M))
        kind = self.rng.choice(self.region.bus_kinds if self.region else (1,))
        number = self.rng.randint(*BUS_NUMBERS.get(kind, (1, 300)))
        city = self.region.city_code if self.region else REGIONAL_CITY_CODE
        bus_id = self.rng.randint(1000, 99999)
        return {
            "trafficType": Traffic.BUS.value,
            "distance": meters,
            "sectionTime": max(1, math.ceil(meters / BUS_M_PER_MIN)),
            "stationCount": count,
            "lane": [
                {
                    "busNo": str(number),
                    "type": kind,
                    "busID": bus_id,
                    "busLocalBlID": str(self.rng.randint(100_000_000, 999_999_999)),
                    "busCityCode": city,
                    "busProviderCode": 4,
                }
            ],
            "intervalTime": self.rng.randint(6, 20),
            **_ends(board, alight),
            "startID": board.id,
            "startArsID": str(board.id % 100_000).zfill(5),
            "endID": alight.id,
            "endArsID": str(alight.id % 100_000).zfill(5),
            "passStopList": {"stations": self._passed(board, alight, count, subway=False)},
        }

    def _passed(self, board: Stop, alight: Stop, count: int, subway: bool) -> list[dict[str, Any]]:
        """The stations from `board` to `alight`, both included, along the way between.
        (Written out for speed: a bus leg passes dozens. The draws are as they always were,
        so an answer stays the same: uniform(-8, 8) is -8 + 16 * random(), and a stop's
        name and id are choice()'s and randint()'s draws (Random._randbelow) inlined.)"""
        random, bits = self.rng.random, self.rng.getrandbits
        lat0, lng0 = board.lat, board.lng
        d_lat, d_lng = alight.lat - lat0, alight.lng - lng0
        places, kinds = len(PLACES), len(STOP_KINDS)
        place_bits, kind_bits, id_bits = (n.bit_length() for n in (places, kinds, ID_SPAN))
        passed = []
        for index in range(count + 1):
            if index == 0 or index == count:
                stop = board if index == 0 else alight
                stop_id, stop_name, lat, lng = stop.id, stop.name, stop.lat, stop.lng
            else:
                share = index / count
                lat = lat0 + d_lat * share + (-8 + 16 * random()) * 1e-4
                lng = lng0 + d_lng * share + (-8 + 16 * random()) * 1e-4
                if subway:
                    stop_name = self._name()
                else:  # choice(PLACES) + choice(STOP_KINDS)
                    drawn = bits(place_bits)
                    while drawn >= places:
                        drawn = bits(place_bits)
                    stop_name = PLACES[drawn]
                    drawn = bits(kind_bits)
                    while drawn >= kinds:
                        drawn = bits(kind_bits)
                    stop_name += STOP_KINDS[drawn]
                stop_id = bits(id_bits)  # randint(ID_LOW, ID_LOW + ID_SPAN - 1)
                while stop_id >= ID_SPAN:
                    stop_id = bits(id_bits)
                stop_id += ID_LOW
            if subway:
                passed.append({"index": index, "stationID": stop_id, "stationName": stop_name,
                               "x": f"{lng:.6f}", "y": f"{lat:.6f}"})  # fmt: skip
            else:
                passed.append({"index": index, "stationID": stop_id, "stationName": stop_name,
                               "arsID": f"{stop_id % 100_000:05d}", "x": f"{lng:.6f}",
                               "y": f"{lat:.6f}", "isNonStop": "N"})  # fmt: skip
        return passed

    def _station(self, near: Point, toward: Point, low: int = 300, high: int = 900) -> Stop:
        return Stop(self._name(), *self._toward(near, toward, low, high), self._id())

    def _stop(self, near: Point, toward: Point, low: int = 80, high: int = 400) -> Stop:
        return Stop(self._stop_name(), *self._toward(near, toward, low, high), self._id())

    def _name(self) -> str:
        if not self.names:
            self.names = list(self._region().stations)
            self.rng.shuffle(self.names)
        return self.names.pop()

    def _stop_name(self) -> str:
        return self.rng.choice(PLACES) + self.rng.choice(STOP_KINDS)

    def _id(self) -> int:
        return self.rng.randint(ID_LOW, ID_LOW + ID_SPAN - 1)

    def _region(self) -> Region:
        assert self.region is not None, "subways run only within a region"
        return self.region

    def _between(self, a: Point, b: Point) -> Point:
        share = self.rng.uniform(0.35, 0.65)
        return a[0] + (b[0] - a[0]) * share, a[1] + (b[1] - a[1]) * share

    def _toward(self, near: Point, toward: Point, low: float, high: float) -> Point:
        """A point `low`-`high` metres from `near`, roughly in the direction of `toward`."""
        lat, lng = near
        scale = math.cos(math.radians(lat))
        heading = math.atan2((toward[1] - lng) * scale, toward[0] - lat)
        heading += math.radians(self.rng.uniform(-50, 50))
        meters = self.rng.uniform(low, high)
        return (
            round(lat + meters * math.cos(heading) / M_PER_DEGREE, 6),
            round(lng + meters * math.sin(heading) / (M_PER_DEGREE * scale), 6),
        )


def _map_object(ride: dict[str, Any]) -> str:
    """mapObj's part for a ride (the key of ODsay's loadLane call, here for show)."""
    if ride["trafficType"] == Traffic.SUBWAY:
        return f"{ride['lane'][0]['subwayCode']}:2:{ride['startID']}:{ride['endID']}"
    return f"{ride['lane'][0]['busID']}:1:0:{ride['stationCount']}"


def _straight(a: Stop, b: Stop) -> float:
    return walking.straight_m(a.lat, a.lng, b.lat, b.lng)


def _ends(board: Stop, alight: Stop) -> dict[str, Any]:
    return {
        "startName": board.name,
        "startX": board.lng,
        "startY": board.lat,
        "endName": alight.name,
        "endX": alight.lng,
        "endY": alight.lat,
    }


def _meeting(ride: dict[str, Any], side: str) -> Point:
    """Where the walk to or from a ride meets it: its exit, else its stop."""
    if f"{side}ExitY" in ride:
        return ride[f"{side}ExitY"], ride[f"{side}ExitX"]
    return ride[f"{side}Y"], ride[f"{side}X"]
