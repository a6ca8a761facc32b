"""City services derived from the sensor data: exposure along a route and a safety index.

Both read the per-minute rollups. The safety index is deliberately a transparent sum of
named factors (docs/sensors.md), returned with each factor's contribution, so a city can
explain every number it publishes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import asyncpg
from h3.api import basic_int as h3

from hub.core.errors import BadUserInput
from resolvers.sensors import queries, rollup_cache
from resolvers.sensors.catalog import Metric
from resolvers.sensors.message import H3_RESOLUTION, KOREA

MAX_ROUTE_POINTS = 500


@dataclass(frozen=True)
class Segment:
    start: tuple[float, float]
    end: tuple[float, float]
    length_m: float
    cells: tuple[int, ...]
    stats: queries.Stats | None  # None: no data, or too few vehicles to show


@dataclass(frozen=True)
class Exposure:
    segments: list[Segment]
    average: float | None  # length-weighted over the segments with a value
    worst: Segment | None
    coverage: float  # share of the route length that has a value


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between (lat, lng) points."""
    lat1, lng1, lat2, lng2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    )
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


@lru_cache(maxsize=8192)  # routes are asked about again (a school run, a dashboard's)
def segment_cells(a: tuple[float, float], b: tuple[float, float]) -> tuple[int, ...]:
    """The resolution-9 cells a straight segment passes through (H3's grid path): 9 % of
    a route exposure's CPU when worked out anew for every request, twice a segment."""
    start = h3.latlng_to_cell(*a, H3_RESOLUTION)
    end = h3.latlng_to_cell(*b, H3_RESOLUTION)
    try:
        return tuple(h3.grid_path_cells(start, end))
    except ValueError:  # across a pentagon or too far apart: fall back to sampling
        steps = max(1, int(metres(a, b) // 50))
        return tuple(
            dict.fromkeys(
                h3.latlng_to_cell(
                    a[0] + (b[0] - a[0]) * i / steps,
                    a[1] + (b[1] - a[1]) * i / steps,
                    H3_RESOLUTION,
                )
                for i in range(steps + 1)
            )
        )


def check_path(path: Sequence[tuple[float, float]]) -> None:
    if not 2 <= len(path) <= MAX_ROUTE_POINTS:
        raise BadUserInput(f"a path needs 2 to {MAX_ROUTE_POINTS} points", argument="path")
    lat_min, lng_min, lat_max, lng_max = KOREA
    for lat, lng in path:
        if not (lat_min <= lat <= lat_max and lng_min <= lng <= lng_max):
            raise BadUserInput(f"point {lat}, {lng} is outside Korea", argument="path")
    if sum(metres(a, b) for a, b in itertools.pairwise(path)) > 50_000:
        raise BadUserInput("the path is longer than 50 km", argument="path")


async def exposure(
    pool: asyncpg.Pool,
    store: rollup_cache.RollupCache,
    path: Sequence[tuple[float, float]],
    m: Metric,
    start: datetime,
    end: datetime,
    k: int,
) -> Exposure:
    check_path(path)
    pairs = list(itertools.pairwise(path))
    all_cells = sorted({c for a, b in pairs for c in segment_cells(a, b)})
    per_cell = await queries.per_cell(pool, store, all_cells, m, start, end, k)
    segments = []
    for a, b in pairs:
        cells = segment_cells(a, b)
        entries = [per_cell[c] for c in cells if c in per_cell]
        stats = queries.combine(entries)[0] if entries else None
        if stats is not None and stats.vehicles < k:
            stats = None
        segments.append(Segment(a, b, metres(a, b), cells, stats))
    valued = [(s, s.stats.mean) for s in segments if s.stats is not None and s.length_m > 0]
    covered = sum(s.length_m for s, _ in valued)
    total = sum(s.length_m for s in segments)
    average = sum(mean * s.length_m for s, mean in valued) / covered if covered else None
    worst = max(valued, key=lambda pair: pair[1], default=(None, 0.0))[0]
    return Exposure(segments, average, worst, covered / total if total else 0.0)


# Safety index: 100 minus the sum of these factor contributions (each 0..weight).


@dataclass(frozen=True)
class Factor:
    name: str
    metric: str | None
    weight: float
    explanation: str


FACTORS = (
    Factor("darkness", "illuminance", 35, "below 20 lx at night; full weight at 0 lx"),
    Factor("isolation", "pedestrian_count", 20, "fewer than 5 pedestrians in view; full at 0"),
    Factor("broken_lights", "streetlight_outages", 15, "street lights seen off, per reading"),
    Factor("no_cctv", "cctv_visible", 10, "fewer than 2 CCTV cameras in view; full at 0"),
    Factor("noise", "noise_laeq", 10, "LAeq above 70 dB(A); full weight at 90 dB(A)"),
    Factor("night", None, 10, "share of the window between 22:00 and 05:00 KST"),
)


def _share(value: float, low: float, high: float, rising: bool) -> float:
    """0..1: how far `value` is into the bad range between `low` and `high`."""
    span = (value - low) / (high - low)
    return min(1.0, max(0.0, span if rising else 1.0 - span))


def contribution(factor: Factor, value: float) -> float:
    if factor.name == "darkness":
        share = _share(value, 0, 20, rising=False)
    elif factor.name == "isolation":
        share = _share(value, 0, 5, rising=False)
    elif factor.name == "broken_lights":
        share = min(1.0, max(0.0, value))
    elif factor.name == "no_cctv":
        share = _share(value, 0, 2, rising=False)
    elif factor.name == "noise":
        share = _share(value, 70, 90, rising=True)
    else:  # night: value is already a share
        share = value
    return round(share * factor.weight, 2)


def night_share(start: datetime, end: datetime) -> float:
    """Share of [start, end) between 22:00 and 05:00 in Korea (UTC+9), by the minute."""
    minutes = max(1, int((end - start).total_seconds() // 60))
    step = max(1, minutes // 1440)
    night = 0
    counted = 0
    for i in range(0, minutes, step):
        hour = ((start + timedelta(minutes=i)).hour + 9) % 24
        night += hour >= 22 or hour < 5
        counted += 1
    return night / counted


@dataclass(frozen=True)
class FactorScore:
    factor: Factor
    value: float | None  # the measured mean (or the night share); None: no data
    contribution: float  # points taken off 100


@dataclass(frozen=True)
class SafetyScore:
    cell: int
    index: float
    complete: bool  # every factor had data
    factors: list[FactorScore]


def safety_scores(
    by_factor: dict[str, dict[int, tuple[queries.Stats, queries.Vehicles]]],
    night: float,
    k: int,
) -> list[SafetyScore]:
    """The index of every cell some factor has data for, if enough distinct vehicles
    (k-anonymity) contributed across its factors; cells in index order of their ids."""
    scores = []
    for cell in sorted({c for found in by_factor.values() for c in found}):
        vehicles = queries.union([f[cell][1] for f in by_factor.values() if cell in f])
        if vehicles.floor < k:
            continue
        factors = []
        for factor in FACTORS:
            if factor.metric is None:
                value: float | None = night
            else:
                entry = by_factor[factor.name].get(cell)
                value = entry[0].mean if entry else None
            points = contribution(factor, value) if value is not None else 0
            factors.append(FactorScore(factor, value, points))
        index = round(100 - sum(f.contribution for f in factors), 2)
        complete = all(f.value is not None for f in factors)
        scores.append(SafetyScore(cell, index, complete, factors))
    return scores
