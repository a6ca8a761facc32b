"""The 5-minute rollups: ingest keeps each slot the sum of its minutes, and a series read
through them answers as the minutes alone do (tests/sensors/test_rollup_cache.py compares
the same series with the hub's in-memory minutes too)."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
from h3.api import basic_int as h3

from hub.core import db
from hub.core.settings import Settings
from resolvers.sensors import catalog, copy_binary, ingest_store, queries, rollup_levels
from resolvers.sensors.message import H3_RESOLUTION
from resolvers.sensors.rollup import RollupColumns, RollupRow, rollup_columns

METRICS = catalog.metrics()
CELLS = sorted(h3.grid_disk(h3.latlng_to_cell(37.5665, 126.9780, H3_RESOLUTION), 3))
START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
MINUTES = 40
SLOT_COLUMNS = "cell, bucket, n, sum, sum_sq, min, max, vehicles, partial"


def test_slots_within_take_whole_slots_for_buckets_of_whole_slots() -> None:
    at = START + timedelta(minutes=3)
    five, hour = timedelta(minutes=5), timedelta(hours=1)
    assert rollup_levels.slots_within(at, at + hour, five) == (
        START + five,
        START + timedelta(minutes=60),
    )
    assert rollup_levels.slots_within(START, START + hour, timedelta(days=1)) == (
        START,
        START + hour,
    )
    # a bucket of one minute, or a window without a whole slot: minutes only
    assert rollup_levels.slots_within(at, at + hour, timedelta(minutes=1)) == (
        at + hour,
        at + hour,
    )
    assert rollup_levels.slots_within(at, at + five, five) == (at + five, at + five)


def batch(rng: random.Random, first_minute: int, minutes: int, readings: int) -> RollupColumns:
    """A batch of readings as the worker stages its rollups: a few cells, over `minutes`
    minutes (so some slots get minutes from several batches, and a batch several minutes
    of a slot), few vehicles (k matters), and metrics each reading may lack (NaN)."""
    cells = np.array([rng.choice(CELLS[:6]) for _ in range(readings)], dtype=np.int64)
    base = int(START.timestamp() * 1e6) + first_minute * 60_000_000
    ts = np.array([base + rng.randrange(minutes * 60_000_000) for _ in range(readings)])
    values = np.array(
        [
            [math.nan if rng.random() < 0.6 else rng.randrange(0, 400) / 4 for _ in METRICS]
            for _ in range(readings)
        ],
        dtype=np.float32,
    )
    vehicles = np.array([rng.randrange(1, 9) for _ in range(readings)], dtype=np.int64)
    return rollup_columns(cells, ts.astype(np.int64), values, vehicles)


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    rng = random.Random(5)
    conn = await db.connect(migrated_url, Settings())
    await ingest_store.prepare_connection(conn)
    for first in range(0, MINUTES, 2):
        async with conn.transaction():
            await ingest_store.merge_rollups(conn, batch(rng, first, 3, 8))
    await conn.close()
    pool = await db.create_pool(migrated_url, Settings())
    yield pool
    await pool.close()


async def test_ingest_keeps_each_slot_the_sum_of_its_minutes(pool: asyncpg.Pool) -> None:
    """What the worker merged batch by batch is what the slots are rebuilt to from the
    minutes (the migration's backfill), but for `partial`, which can only mark more."""
    query = f"SELECT {SLOT_COLUMNS} FROM sensor_rollups_5min ORDER BY cell, bucket"
    merged = await pool.fetch(query)
    async with pool.acquire() as conn:
        rebuilding = conn.transaction()
        await rebuilding.start()
        await conn.execute(rollup_levels.REBUILD)
        rebuilt = await conn.fetch(query)
        await rebuilding.rollback()  # the other tests read what ingest merged
    assert len(merged) == len(rebuilt) > MINUTES // 5
    for a, b in zip(merged, rebuilt, strict=True):
        assert (a["cell"], a["bucket"], a["n"], a["min"], a["max"]) == (
            b["cell"],
            b["bucket"],
            b["n"],
            b["min"],
            b["max"],
        )
        assert a["sum"] == pytest.approx(b["sum"], rel=1e-12)
        assert a["sum_sq"] == pytest.approx(b["sum_sq"], rel=1e-12)
        assert a["vehicles"] == b["vehicles"]
        assert a["partial"] & b["partial"] == b["partial"]
    assert any(row["partial"] & 1 for row in merged)  # some slots lack metrics
    assert any(not row["partial"] & 1 for row in merged)  # and some do not


async def test_worker_merges_as_the_sql_functions(migrated_url: str) -> None:
    """Batches merged by the worker (rollup_merge.py) leave both rollup tables as the SQL
    merge of 0004 leaves them, stored rows of another shape included (arrays of another
    length, from an older catalog, which the worker leaves to the SQL merge)."""
    conn = await db.connect(migrated_url, Settings())
    try:
        await ingest_store.prepare_connection(conn)
        tables = []
        for worker in (False, True):
            rng = random.Random(11)
            test = conn.transaction()
            await test.start()
            new = [batch(rng, first, 3, 30) for first in range(0, 12, 2)]
            # a stored row from a catalog 3 metrics shorter, where the first batch writes
            key = (int(new[0].cell[0]), datetime.fromtimestamp(int(new[0].minute[0]) * 60, UTC))
            short = [1] * (len(METRICS) - 3)
            old = RollupRow(*key, short, [2.0] * len(short), [4.0] * len(short),
                            [2.0] * len(short), [2.0] * len(short), [7])  # fmt: skip
            batches = [[old], *new]
            for rows in batches:
                if worker and isinstance(rows, RollupColumns):
                    await ingest_store.merge_rollups(conn, rows)
                else:
                    await ingest_store.upsert_rollups(conn, as_rows(rows))
                await conn.execute("TRUNCATE ingest_rollups, ingest_rollups_5min")  # as commits do
            tables.append(
                [
                    await conn.fetch(f"SELECT {columns} FROM {table} ORDER BY cell, bucket")
                    for table, columns in (
                        ("sensor_rollups", SLOT_COLUMNS.removesuffix(", partial")),
                        ("sensor_rollups_5min", SLOT_COLUMNS),
                    )
                ]
            )
            await test.rollback()
    finally:
        await conn.close()
    by_sql, by_worker = tables
    assert_same_tables(by_sql, by_worker)
    (merged,) = [r for r in by_worker[0] if (r["cell"], r["bucket"]) == key]
    assert len(merged["n"]) == len(METRICS) and merged["n"][0] > 1


async def test_workers_merging_the_same_rows_at_once_lose_nothing(migrated_url: str) -> None:
    """Two workers merging batches of the same cells and minutes at the same time neither
    deadlock nor lose a reading: the tables end as the SQL merge of all the batches."""
    rng = random.Random(17)
    later = 24 * 60  # a day after the other tests' rows, removed at the end
    work = [[batch(rng, later + first, 3, 30) for first in range(0, 12, 2)] for _ in range(2)]
    conns = [await db.connect(migrated_url, Settings()) for _ in work]
    since = START + timedelta(minutes=later)
    tables = {
        "sensor_rollups": SLOT_COLUMNS.removesuffix(", partial"),
        "sensor_rollups_5min": SLOT_COLUMNS,
    }

    async def worker(conn: asyncpg.Connection, batches: list[RollupColumns]) -> None:
        for rows in batches:
            async with conn.transaction():
                await ingest_store.merge_rollups(conn, rows)

    async def read(conn: asyncpg.Connection) -> list[list[asyncpg.Record]]:
        return [
            await conn.fetch(
                f"SELECT {columns} FROM {table} WHERE bucket >= $1 ORDER BY cell, bucket", since
            )
            for table, columns in tables.items()
        ]

    try:
        for conn in conns:
            await ingest_store.prepare_connection(conn)
        await asyncio.gather(
            *(worker(conn, batches) for conn, batches in zip(conns, work, strict=True))
        )
        by_workers = await read(conns[0])
        serial = conns[0].transaction()
        await serial.start()
        for table in tables:
            await conns[0].execute(f"DELETE FROM {table} WHERE bucket >= $1", since)
        for rows in (rows for batches in work for rows in batches):
            await ingest_store.upsert_rollups(conns[0], as_rows(rows))
            await conns[0].execute("TRUNCATE ingest_rollups")
        by_sql = await read(conns[0])
        await serial.rollback()
    finally:
        for table in tables:
            await conns[0].execute(f"DELETE FROM {table} WHERE bucket >= $1", since)
        for conn in conns:
            await conn.close()
    assert_same_tables(by_sql, by_workers)


def assert_same_tables(
    by_sql: list[list[asyncpg.Record]], by_worker: list[list[asyncpg.Record]]
) -> None:
    """Each table's rows alike, the sums to float rounding (the worker adds in another
    order than PostgreSQL)."""
    for sql_rows, worker_rows in zip(by_sql, by_worker, strict=True):
        assert len(sql_rows) == len(worker_rows) > 10
        for a, b in zip(sql_rows, worker_rows, strict=True):
            assert {**dict(a), "sum": 0, "sum_sq": 0} == {**dict(b), "sum": 0, "sum_sq": 0}
            assert a["sum"] == pytest.approx(b["sum"], rel=1e-12)
            assert a["sum_sq"] == pytest.approx(b["sum_sq"], rel=1e-12)


def as_rows(columns: RollupColumns | list[RollupRow]) -> list[RollupRow]:
    """Rows of columns as upsert_rollups takes them."""
    if isinstance(columns, list):
        return columns
    return [
        RollupRow(
            cell=int(columns.cell[i]),
            bucket=datetime.fromtimestamp(int(columns.minute[i]) * 60, UTC),
            n=columns.n[i].tolist(),
            sum=columns.sums[i].tolist(),
            sum_sq=columns.sums_sq[i].tolist(),
            min=columns.mins[i].tolist(),
            max=columns.maxs[i].tolist(),
            vehicles=[v for v in columns.vehicles[i].tolist() if v != copy_binary.NO_VEHICLE],
        )
        for i in range(len(columns))
    ]


async def minutes_only(
    pool: asyncpg.Pool,
    cells: list[int],
    metric: catalog.Metric,
    start: datetime,
    end: datetime,
    width: int,
    k: int,
) -> list[tuple[datetime, int, float, float, float, bool]]:
    """The series from the minute rows with the metric, summed here."""
    rows = await pool.fetch(
        "SELECT date_bin($5, bucket, TIMESTAMPTZ '2000-01-01 00:00+00') AS b, n[$2] AS n,"
        " sum[$2] AS s, min[$2] AS lo, max[$2] AS hi, vehicles FROM sensor_rollups"
        " WHERE cell = ANY($1::bigint[]) AND bucket >= $3 AND bucket < $4 AND n[$2] > 0",
        cells,
        metric.id + 1,
        queries._minute_ceiling(start),
        queries._minute_ceiling(end),
        timedelta(minutes=width),
    )
    buckets: dict[datetime, list[asyncpg.Record]] = {}
    for row in rows:
        buckets.setdefault(row["b"], []).append(row)
    return [
        (
            b,
            sum(r["n"] for r in group),
            sum(r["s"] for r in group),
            min(r["lo"] for r in group),
            max(r["hi"] for r in group),
            len({v for r in group for v in r["vehicles"]}) >= k,
        )
        for b, group in sorted(buckets.items())
    ]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
async def test_series_through_slots_answer_as_the_minutes(pool: asyncpg.Pool, k: int) -> None:
    rng = random.Random(k)
    store = queries.rollup_cache.RollupCache(0)  # every series from PostgreSQL
    checked = 0
    for _ in range(20):
        start = START + timedelta(minutes=rng.randrange(-5, MINUTES), seconds=rng.random() * 9)
        end = start + timedelta(minutes=rng.randrange(1, MINUTES))
        metric = rng.choice(METRICS)
        cells = rng.choice([CELLS, CELLS[:2], CELLS[:4]])
        for width in (1, 5, 60, 1440):
            got = await queries.series(
                pool, store, cells, metric, *queries.bucket_bounds(start, end),
                timedelta(minutes=width), k,
            )  # fmt: skip
            want = await minutes_only(pool, cells, metric, start, end, width, k)
            # values are multiples of 1/4: their sums are exact in any order
            assert [(b, s.count, s.total, s.low, s.high, s.vehicles >= k) for b, s in got] == want
            assert all(s.vehicles <= k for _, s in got)
            checked += len(got)
    assert checked > 50
