"""The sandbox's cities, apartment complexes and what their RFID bins weigh each day.

Volumes are generated from a hash of the complex and the day, so every run (and the
tests' expectations) see the same grams. A city's day is the sum of its complexes' days.
W01 중구 and W07 중랑구 are agency codes seen in public code; the others are the
sandbox's own. Data exists from June 2013 (when volume-based fees became mandatory) to
yesterday in Korea: a day is published after it ends.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from adapters.rfidwaste.wire import KG_PER_UNIT

FIRST_DAY = date(2013, 6, 1)


@dataclass(frozen=True)
class Complex:
    apt_code: str
    name: str
    households: int


@dataclass(frozen=True)
class City:
    city_code: str
    sido: str
    sigungu: str
    district_code: str  # the 5-digit 시군구 code it is (not part of the service's answers)
    complexes: tuple[Complex, ...]


CITIES = (
    City(
        "W01",
        "서울특별시",
        "중구",
        "11140",
        (Complex("W01001", "신당 이음 1단지", 1240), Complex("W01002", "황학 이음 2단지", 860)),
    ),
    City(
        "W07",
        "서울특별시",
        "중랑구",
        "11260",
        (
            Complex("W07001", "면목 이음 1단지", 1520),
            Complex("W07002", "상봉 이음 2단지", 980),
            Complex("W07003", "묵동 이음 3단지", 430),
        ),
    ),
    City("W2B", "부산광역시", "해운대구", "26350", (Complex("W2B001", "우동 이음 1단지", 2110),)),
    City(
        "W3C",
        "대구광역시",
        "수성구",
        "27260",
        (Complex("W3C001", "범어 이음 1단지", 1730), Complex("W3C002", "만촌 이음 2단지", 640)),
    ),
)
BY_CODE = {city.city_code: city for city in CITIES}


@dataclass(frozen=True)
class Weighed:
    grams: int
    disposals: int

    def __add__(self, other: Weighed) -> Weighed:
        return Weighed(self.grams + other.grams, self.disposals + other.disposals)

    @property
    def kg(self) -> Decimal:
        return self.grams * KG_PER_UNIT


def weighed(complex_: Complex, day: date) -> Weighed:
    """One complex's day: about 0.4-0.7 disposals and 120-320 g per household."""
    seed = zlib.crc32(f"{complex_.apt_code}|{day:%Y%m%d}".encode())
    disposals = complex_.households * (40 + seed % 31) // 100
    grams = complex_.households * (120 + (seed >> 8) % 201) + (seed >> 16) % 1000
    return Weighed(grams, disposals)


def city_day(city: City, day: date) -> Weighed:
    total = Weighed(0, 0)
    for complex_ in city.complexes:
        total += weighed(complex_, day)
    return total


def published_days(year: int, month: int, today: date) -> list[date]:
    """The days of a month that have data on `today` (Korean date)."""
    first = date(year, month, 1)
    if first >= today:
        return []
    following = date(year + month // 12, month % 12 + 1, 1)
    last = min(following, today) - timedelta(days=1)
    start = max(first, FIRST_DAY)
    return [start + timedelta(days=n) for n in range((last - start).days + 1)]
