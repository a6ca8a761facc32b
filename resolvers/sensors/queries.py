"""The read side of sensors: areas as cells, series, heat maps, raw readings, air quality.

Aggregates come from the per-minute rollups: from the blocks the hub keeps in memory
(`segments`) or, for questions too wide for them, aggregated in PostgreSQL, where a series
takes whole 5-minute slots from their own rollups (rollup_levels); all give the same
answer (tests/sensors/test_rollup_cache.py, test_rollup_levels.py). Raw readings come
from the partitioned table. Every aggregate carries the number of distinct vehicles
behind it, so callers can apply k-anonymity.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
import numpy as np
from h3.api import basic_int as h3

from hub.core.errors import BadUserInput
from resolvers.platform import districts
from resolvers.sensors import rollup_cache, rollup_levels
from resolvers.sensors.catalog import Metric, by_name
from resolvers.sensors.message import H3_RESOLUTION, unpack

MAX_CELLS = 60_000  # about 6,000 km² at resolution 9
BUCKETS = {
    "MINUTE": timedelta(minutes=1),
    "FIVE_MINUTES": timedelta(minutes=5),
    "HOUR": timedelta(hours=1),
    "DAY": timedelta(days=1),
}
MAX_POINTS = 2000
# Buckets are counted from here (UTC), as date_bin does: days are UTC days.
BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Stats:
    count: int
    total: float
    total_sq: float
    low: float
    high: float
    vehicles: int  # at least this many distinct vehicles (exact below k)

    @property
    def mean(self) -> float:
        return self.total / self.count

    @property
    def stddev(self) -> float:
        """Population standard deviation from the count, sum and sum of squares."""
        variance = max(self.total_sq / self.count - self.mean**2, 0.0)
        return math.sqrt(variance)


def metric(name: str) -> Metric:
    found = by_name().get(name)
    if found is None:
        raise BadUserInput(f"unknown metric {name!r}; see the `metrics` query", argument="metric")
    return found


def check_range(start: datetime, end: datetime, bucket: timedelta | None = None) -> None:
    if end <= start:
        raise BadUserInput("'to' must be after 'from'", argument="to")
    if bucket is not None and (end - start) / bucket > MAX_POINTS:
        raise BadUserInput(
            f"that is more than {MAX_POINTS} buckets: use a coarser bucket or a shorter range",
            argument="bucket",
        )


def bucket_bounds(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window as the rollups see it. They are per minute, and a window takes the
    minutes that begin inside it: from `start` and before `end`, each rounded up to the
    minute. Windows with the same bounds have the same answer, so the aggregate cache
    serves every client that sends "the last hour" from its own clock, to the microsecond."""
    return _minute_ceiling(start), _minute_ceiling(end)


def _minute_ceiling(t: datetime) -> datetime:
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + timedelta(minutes=1)


# Areas


@lru_cache(maxsize=512)
def _polygon_cells(geojson_key: str) -> frozenset[int]:
    return frozenset(h3.geo_to_cells(json.loads(geojson_key), H3_RESOLUTION))


def cells_of_geometry(geometry: dict[str, Any]) -> frozenset[int]:
    """Resolution-9 cells whose centres lie in the geometry (cached: boundaries repeat)."""
    return _polygon_cells(json.dumps(geometry, sort_keys=True))


_DISTRICT_CELLS: dict[str, list[int]] = {}


async def district_cells(pool: asyncpg.Pool, code: str) -> list[int] | None:
    """A district's resolution-9 cells (by current or legacy code), worked out once per
    process: boundaries change only with the reference data, which loads at start."""
    if code not in _DISTRICT_CELLS:
        boundary = await districts.boundary(pool, code)
        if boundary is None:
            return None
        _DISTRICT_CELLS[code] = checked(cells_of_geometry(boundary))
    return _DISTRICT_CELLS[code]


MAX_BBOX_DEGREES = 1.0
KM_PER_DEGREE = 111.32  # of latitude; of longitude at the equator


def bbox_cells(south: float, west: float, north: float, east: float) -> frozenset[int]:
    """The box's cells, once its size allows them. Each side is bounded, not only the
    area: H3 sizes its work on a polygon's bounding box, so a box 45° tall and 1e-9°
    wide took gigabytes. The cells are estimated from the area before any are listed."""
    if not (south < north and west < east):
        raise BadUserInput("bbox needs south < north and west < east", argument="bbox")
    if north - south > MAX_BBOX_DEGREES or east - west > MAX_BBOX_DEGREES:
        raise BadUserInput(
            f"bbox is too large: each side at most {MAX_BBOX_DEGREES:g} degree", argument="bbox"
        )
    if south < -90 or north > 90:
        raise BadUserInput("bbox latitudes are -90 to 90", argument="bbox")
    middle = math.radians((south + north) / 2)
    km2 = (north - south) * (east - west) * KM_PER_DEGREE**2 * math.cos(middle)
    _check_count(km2 / h3.average_hexagon_area(H3_RESOLUTION, "km^2"), "bbox")
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return cells_of_geometry({"type": "Polygon", "coordinates": [ring]})


def given_cells(cells: list[str]) -> frozenset[int]:
    """The resolution-9 cells under the given ones, counted before any is listed (one
    resolution-0 cell has 40 million)."""
    parsed: set[int] = set()
    count = 0
    for text in cells:
        cell = _given_cell(text)
        if cell not in parsed:
            count += h3.cell_to_children_size(cell, H3_RESOLUTION)
            _check_count(count, "cells")
            parsed.add(cell)
    result: set[int] = set()
    for cell in parsed:
        result.update(h3.cell_to_children(cell, H3_RESOLUTION))
    return frozenset(result)


def _given_cell(text: str) -> int:
    try:
        cell = h3.str_to_int(text)
        valid = h3.is_valid_cell(cell)
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise BadUserInput(f"{text!r} is not an H3 cell", argument="cells")
    if h3.get_resolution(cell) > H3_RESOLUTION:
        raise BadUserInput(
            f"cells finer than resolution {H3_RESOLUTION} are not stored", argument="cells"
        )
    return cell


def checked(cells: frozenset[int]) -> list[int]:
    _check_count(len(cells))
    return sorted(cells)


def _check_count(count: float, argument: str | None = None) -> None:
    """Areas are bounded by their resolution-9 cells, counted or estimated."""
    if count > MAX_CELLS:
        raise BadUserInput(
            f"the area has more than {MAX_CELLS:,} cells (H3 resolution {H3_RESOLUTION}); "
            "choose a smaller one",
            **({"argument": argument} if argument else {}),
        )


# Aggregates


async def series(
    pool: asyncpg.Pool,
    store: rollup_cache.RollupCache,
    cells: list[int],
    m: Metric,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    k: int,
) -> list[tuple[datetime, Stats]]:
    """Stats per time bucket (whole minutes from `start` to before `end`). Their vehicles
    are counted up to k (exact below it, k at or above it): the bound a bucket reaches
    depends on the rows it is summed from, minutes in memory or also 5-minute slots in
    PostgreSQL, and the answer must not."""
    rows = await store.rows(pool, cells, m.id + 1, start, end)
    if rows is None:
        points = await _series_in_sql(pool, cells, m, start, end, bucket, k)
    else:
        origin = rollup_cache.minutes(BUCKET_ORIGIN)
        width = bucket // timedelta(minutes=1)
        groups = rollup_cache.group(rows, origin + (rows.minute - origin) // width * width, k)
        points = [
            (rollup_cache.at(key), stats)
            for key, stats in zip(groups.keys.tolist(), _all_stats(groups), strict=True)
        ]
    return [
        (b, stats if stats.vehicles <= k else replace(stats, vehicles=k)) for b, stats in points
    ]


async def _series_in_sql(
    pool: asyncpg.Pool,
    cells: list[int],
    m: Metric,
    start: datetime,
    end: datetime,
    bucket: timedelta,
    k: int,
) -> list[tuple[datetime, Stats]]:
    """The whole 5-minute slots inside the window from their own rows (rollup_levels),
    the minutes at its ends from the minute rows: the same sums from a fraction of the
    rows. Two kinds of bucket are asked again, whole and from their minutes: those whose
    cheap vehicle bound stays below k (few, where data is dense: the rows go straight into
    the grouping instead of being kept for a second pass rarely needed), and those with a
    slot that merged minutes without the metric (its vehicles are not all the metric's).
    Each bucket's numbers and vehicles come from one statement, so from one snapshot."""
    index = m.id + 1
    first, last = rollup_levels.slots_within(start, end, bucket)
    source, slots = (
        (_MINUTE_ROWS, ())
        if first == last
        else (_SERIES_ROWS, (first, last, rollup_levels.lacking_bit(index)))
    )
    rows = await pool.fetch(
        f"SELECT b, {_TOTALS}, greatest(max(vc), count(DISTINCT v1)) AS vehicles,"
        f" bool_or(p) AS partial FROM ({source} OFFSET 0) r WHERE ieum_serial()"
        " GROUP BY b ORDER BY b",
        cells,
        index,
        start,
        end,
        bucket,
        *slots,
    )
    points = {row["b"]: _stats(row) for row in rows}
    again = [row["b"] for row in rows if row["partial"] or row["vehicles"] < k]
    if again:
        exact = await pool.fetch(
            f"WITH r AS (SELECT {_SERIES_ROW} FROM sensor_rollups"
            f" WHERE {_SERIES_WHERE.format('$3', '$4')} AND"
            " date_bin($5, bucket, TIMESTAMPTZ '2000-01-01 00:00+00') = ANY($6::timestamptz[])),"
            f" g AS ({_GROUPED.format(key='b')}),"
            f" v AS ({_SPARSE_COUNT.format(key='b').replace('$6', '$7')})"
            " SELECT g.b, g.n, g.s, g.ss, g.lo, g.hi, coalesce(v.vehicles, g.vmax) AS vehicles"
            " FROM g LEFT JOIN v USING (b)",
            cells,
            index,
            start,
            end,
            bucket,
            again,
            k,
        )
        points.update((row["b"], _stats(row)) for row in exact)
    return sorted(points.items())


# A series' rows: $3 to $6 and $7 to $4 from the minutes, the slots $6 to $7 in between
# (p: the slot merged minutes without the metric, whose bit is $8); without whole slots,
# the minutes $3 to $4.
_SERIES_ROW = (
    "date_bin($5, bucket, TIMESTAMPTZ '2000-01-01 00:00+00') AS b, n[$2] AS n,"
    " sum[$2] AS s, sum_sq[$2] AS ss, min[$2] AS lo, max[$2] AS hi, vehicles"
)
_SERIES_WHERE = "cell = ANY($1::bigint[]) AND bucket >= {} AND bucket < {} AND n[$2] > 0"
# The first pass takes of the vehicles only what their bound needs; the rows are narrow
# before they are sorted by bucket (OFFSET 0: not the whole rollup rows, 1.7 kB each),
# and read without parallel workers (ieum_serial, 0026: their start-up cost more).
_FIRST_ROW = _SERIES_ROW.replace(", vehicles", ", cardinality(vehicles) AS vc, vehicles[1] AS v1")
_MINUTE_ROWS = (
    f"SELECT {_FIRST_ROW}, false AS p FROM sensor_rollups WHERE {_SERIES_WHERE.format('$3', '$4')}"
)
_SERIES_ROWS = (
    f"SELECT {_FIRST_ROW}, false AS p FROM sensor_rollups"
    f" WHERE {_SERIES_WHERE.format('$3', '$6')}"
    f" UNION ALL SELECT {_FIRST_ROW}, partial & $8 <> 0 FROM sensor_rollups_5min"
    f" WHERE {_SERIES_WHERE.format('$6', '$7')}"
    f" UNION ALL SELECT {_FIRST_ROW}, false FROM sensor_rollups"
    f" WHERE {_SERIES_WHERE.format('$7', '$4')}"
)


# k-anonymity needs distinct vehicles across rollup rows, and a union of the per-row sets
# is the costly part of a query. Two cheap lower bounds come first: the most vehicles in
# one row, and the distinct first vehicles of the rows; the union is computed only for
# groups where both stay below k.
_TOTALS = "sum(n)::bigint AS n, sum(s) AS s, sum(ss) AS ss, min(lo) AS lo, max(hi) AS hi"
_VEHICLE_FLOOR = "greatest(max(cardinality(vehicles)), count(DISTINCT vehicles[1]))"
_GROUPED = "SELECT {key}, " + _TOTALS + ", " + _VEHICLE_FLOOR + " AS vmax FROM r GROUP BY {key}"
_SPARSE_COUNT = (
    "SELECT r.{key}, count(DISTINCT x) AS vehicles FROM r JOIN g USING ({key}),"
    " unnest(r.vehicles) x WHERE g.vmax < $6 GROUP BY r.{key}"
)
_SPARSE_SET = (
    "SELECT r.{key}, array_agg(DISTINCT x) AS vehicle_set FROM r JOIN g USING ({key}),"
    " unnest(r.vehicles) x WHERE g.vmax < $5 GROUP BY r.{key}"
)


@dataclass(frozen=True)
class Vehicles:
    """As much about the contributing vehicles as k-anonymity needs: at least `floor`
    distinct ones, and, when `exact`, their complete (hashed) set."""

    floor: int
    exact: bool
    known: frozenset[int] = frozenset()


def union(groups: list[Vehicles]) -> Vehicles:
    if all(g.exact for g in groups):
        known = frozenset().union(*(g.known for g in groups))
        return Vehicles(len(known), True, known)
    return Vehicles(max(g.floor for g in groups), False)


async def per_cell(
    pool: asyncpg.Pool,
    store: rollup_cache.RollupCache,
    cells: list[int],
    m: Metric,
    start: datetime,
    end: datetime,
    k: int,
    resolution: int = H3_RESOLUTION,
) -> dict[int, tuple[Stats, Vehicles]]:
    """Stats per cell of `resolution` (5 to 9) over the given resolution-9 cells, with
    what is known of their vehicles."""
    rows = await store.rows(pool, cells, m.id + 1, start, end)
    if rows is None:
        return await _per_cell_in_sql(pool, cells, m, start, end, k, resolution)
    groups = rollup_cache.group(rows, rollup_cache.parent(rows.cell, resolution), k)
    result = {}
    for g, (key, stats) in enumerate(zip(groups.keys.tolist(), _all_stats(groups), strict=True)):
        known = groups.sets.get(g)
        vehicles = (
            Vehicles(len(known), True, known)
            if known is not None
            else Vehicles(stats.vehicles, False)
        )
        result[key] = (stats, vehicles)
    return result


async def _per_cell_in_sql(
    pool: asyncpg.Pool,
    cells: list[int],
    m: Metric,
    start: datetime,
    end: datetime,
    k: int,
    resolution: int,
) -> dict[int, tuple[Stats, Vehicles]]:
    """PostgreSQL groups the rows by parent cell, so a heat map of 30 cells sends 30 rows
    here, not one per resolution-9 cell."""
    rows = await pool.fetch(
        "WITH r AS ("
        f"  SELECT {_PARENT} AS map_cell, n[$2] AS n, sum[$2] AS s, sum_sq[$2] AS ss,"
        "         min[$2] AS lo, max[$2] AS hi, vehicles"
        "  FROM sensor_rollups"
        "  WHERE cell = ANY($1::bigint[]) AND bucket >= $3 AND bucket < $4 AND n[$2] > 0),"
        f" g AS ({_GROUPED.format(key='map_cell')}),"
        f" v AS ({_SPARSE_SET.format(key='map_cell')})"
        " SELECT g.*, v.vehicle_set FROM g LEFT JOIN v USING (map_cell)",
        cells,
        m.id + 1,
        start,
        end,
        k,
        resolution,
    )
    result = {}
    for row in rows:
        if row["vehicle_set"] is None:
            vehicles = Vehicles(row["vmax"], False)
        else:
            known = frozenset(row["vehicle_set"])
            vehicles = Vehicles(len(known), True, known)
        result[row["map_cell"]] = (_stats(row, vehicles.floor), vehicles)
    return result


# An H3 cell's parent, as H3's cellToParent computes it: the resolution field (bits 52-55)
# set to $6 and the digits of the finer resolutions (3 bits each, lowest bits) set to 7.
# (PostgreSQL gives & | << one precedence, left to right: hence every parenthesis.)
_PARENT = (
    "(((cell & ~(15::bigint << 52)) | ($6::int::bigint << 52))"
    " | ((1::bigint << (3 * (15 - $6::int))) - 1))"
)


async def window(
    pool: asyncpg.Pool,
    store: rollup_cache.RollupCache,
    cells: list[int],
    m: Metric,
    start: datetime,
    end: datetime,
    k: int,
) -> Stats | None:
    """One metric over the whole window and area; None without readings."""
    start, end = bucket_bounds(start, end)
    rows = await store.rows(pool, cells, m.id + 1, start, end)
    if rows is None:
        return await _window_in_sql(pool, cells, m, start, end, k)
    groups = rollup_cache.group(rows, np.zeros(len(rows), dtype=np.int64), k)
    return _all_stats(groups)[0] if len(groups.keys) else None


async def _window_in_sql(
    pool: asyncpg.Pool, cells: list[int], m: Metric, start: datetime, end: datetime, k: int
) -> Stats | None:
    row = await pool.fetchrow(
        "WITH r AS ("
        "  SELECT 1 AS one, n[$2] AS n, sum[$2] AS s, sum_sq[$2] AS ss, min[$2] AS lo,"
        "         max[$2] AS hi, vehicles FROM sensor_rollups"
        "  WHERE cell = ANY($1::bigint[]) AND bucket >= $3 AND bucket < $4 AND n[$2] > 0),"
        f" g AS ({_GROUPED.format(key='one')}),"
        f" v AS ({_SPARSE_COUNT.format(key='one').replace('$6', '$5')})"
        " SELECT g.n, g.s, g.ss, g.lo, g.hi, coalesce(v.vehicles, g.vmax) AS vehicles"
        " FROM g LEFT JOIN v USING (one)",
        cells,
        m.id + 1,
        start,
        end,
        k,
    )
    return _stats(row) if row and row["n"] else None


def _stats(row: asyncpg.Record, vehicles: int | None = None) -> Stats:
    count = row["vehicles"] if vehicles is None else vehicles
    return Stats(row["n"], row["s"], row["ss"], row["lo"], row["hi"], count)


def _all_stats(groups: rollup_cache.Groups) -> list[Stats]:
    """Each group's Stats (converted column by column: numpy scalars one by one cost more
    than the aggregation)."""
    columns = (groups.n, groups.total, groups.total_sq, groups.low, groups.high, groups.floor)
    return [
        Stats(int(n), total, total_sq, low, high, int(vehicles))
        for n, total, total_sq, low, high, vehicles in zip(
            *(column.tolist() for column in columns), strict=True
        )
    ]


def combine(entries: list[tuple[Stats, Vehicles]]) -> tuple[Stats, Vehicles]:
    """Statistics of several cells together; vehicles are counted once across them."""
    vehicles = union([v for _, v in entries])
    return (
        Stats(
            count=sum(s.count for s, _ in entries),
            total=sum(s.total for s, _ in entries),
            total_sq=sum(s.total_sq for s, _ in entries),
            low=min(s.low for s, _ in entries),
            high=max(s.high for s, _ in entries),
            vehicles=vehicles.floor,
        ),
        vehicles,
    )


# Raw readings


@dataclass(frozen=True)
class RawReading:
    ts: datetime
    device_id: str
    vehicle_id: str
    lat: float
    lng: float
    cell: int
    speed_kmh: float | None
    heading_deg: float | None
    values: tuple[float, ...]


RAW_COLUMNS = (
    "ts", "device_id", "vehicle_id", "lat", "lng", "cell", "speed_kmh", "heading_deg"
)  # fmt: skip


async def readings(
    pool: asyncpg.Pool,
    cells: list[int],
    start: datetime,
    end: datetime,
    first: int,
    after: tuple[datetime, str] | None,
) -> list[RawReading]:
    """The readings after `after` (time, unit) in that order: up to `first + 1`, the
    one more saying that a next page exists. (ts, device_id) is the table's key."""
    after_ts, after_device = after or (start - timedelta(microseconds=1), "")
    rows = await pool.fetch(
        "SELECT ts, device_id, vehicle_id, lat, lng, cell, speed_kmh, heading_deg, metrics"
        " FROM sensor_readings WHERE cell = ANY($1::bigint[]) AND ts >= $2 AND ts < $3"
        " AND (ts, device_id) > ($4, $5) ORDER BY ts, device_id LIMIT $6",
        cells,
        start,
        end,
        after_ts,
        after_device,
        first + 1,
    )
    return [RawReading(**{k: r[k] for k in RAW_COLUMNS}, values=unpack(r["metrics"])) for r in rows]


# Air quality, by the Ministry of Environment's breakpoints (µg/m³, upper bounds inclusive).
GRADES = ("좋음", "보통", "나쁨", "매우나쁨")
BREAKPOINTS = {"pm10": (30, 80, 150), "pm2_5": (15, 35, 75)}
AIR_QUALITY_WINDOW = timedelta(hours=1)


def grade(metric_name: str, value: float) -> str:
    good, moderate, bad = BREAKPOINTS[metric_name]
    rounded = round(value)
    if rounded <= good:
        return GRADES[0]
    if rounded <= moderate:
        return GRADES[1]
    if rounded <= bad:
        return GRADES[2]
    return GRADES[3]
