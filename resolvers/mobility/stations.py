"""Rail stations: the project's reference list (rail_stations.csv), found by code, name or
position. Codes are TAGO nodeids, the ones the timetable service and the network speak."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib.resources import files

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True)
class RailStation:
    code: str  # TAGO nodeid, e.g. "NAT010000"
    name: str  # "서울"
    name_en: str  # "Seoul"
    lat: float  # the station building, WGS84
    lng: float
    city_code: str  # TAGO cityCode: 11 서울, 21 부산, 25 대전 …
    operators: tuple[str, ...]  # ("KORAIL",), ("SR",) or both
    srt_code: str  # SR's 4-digit code ("0551" 수서), "" where SRT does not stop


def _load() -> tuple[tuple[RailStation, ...], dict[str, RailStation]]:
    text = files("resolvers.mobility").joinpath("rail_stations.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    stations: list[RailStation] = []
    names: dict[str, RailStation] = {}
    for row in rows:
        station = RailStation(
            code=row["code"],
            name=row["name"],
            name_en=row["name_en"],
            lat=float(row["lat"]),
            lng=float(row["lng"]),
            city_code=row["city_code"],
            operators=tuple(row["operators"].split("|")),
            srt_code=row["srt_code"],
        )
        stations.append(station)
        spoken = [station.name, station.name.split("(")[0], station.name_en]
        for name in spoken + [alias for alias in row["aliases"].split("|") if alias]:
            names.setdefault(_key(name), station)
    return tuple(stations), names


def _key(name: str) -> str:
    key = name.strip().casefold().replace(" ", "")
    return key.removesuffix("역") if len(key) > 2 else key


STATIONS, _BY_NAME = _load()
_BY_CODE = {station.code: station for station in STATIONS}


def by_code(code: str) -> RailStation | None:
    return _BY_CODE.get(code)


def by_name(name: str) -> RailStation | None:
    """By Korean or English name, with or without "역" or the parenthesised part
    ("울산", "울산역", "울산(통도사)", "Ulsan (Tongdosa)"), or a former name ("신경주")."""
    return _BY_NAME.get(_key(name))


def distance_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


KM_PER_DEGREE_LAT = math.pi * EARTH_RADIUS_KM / 180


def nearest(
    lat: float, lng: float, *, limit: int = 3, within_km: float = 40.0
) -> list[tuple[RailStation, float]]:
    """Stations within `within_km` of a point as the crow flies, nearest first, with km.
    Every journey search asks this twice: stations outside the latitude band that could
    hold them are skipped before any trigonometry."""
    band = within_km / KM_PER_DEGREE_LAT
    found = [
        (station, distance_km(lat, lng, station.lat, station.lng))
        for station in STATIONS
        if abs(station.lat - lat) <= band
    ]
    close = sorted((pair for pair in found if pair[1] <= within_km), key=lambda pair: pair[1])
    return close[:limit]
