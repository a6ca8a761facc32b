"""Rollups kept in the hub's memory give the answers PostgreSQL gives, and never stale ones.

Random rollups are written through ingest's own upsert (which raises the slot versions);
every aggregate is then asked both of the blocks in memory and of PostgreSQL.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
from h3.api import basic_int as h3

from hub.core import db
from hub.core.settings import Settings
from resolvers.sensors import catalog, ingest_store, queries, rollup_cache
from resolvers.sensors.message import H3_RESOLUTION
from resolvers.sensors.rollup import RollupRow

pytestmark = pytest.mark.db

METRICS = catalog.metrics()
PM25 = queries.metric("pm2_5")
CENTRE = h3.latlng_to_cell(37.5665, 126.9780, H3_RESOLUTION)
# Two resolution-6 regions' worth of cells, so areas cross region borders.
CELLS = sorted(h3.grid_disk(CENTRE, 12))
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
HOURS = 3


def random_row(rng: random.Random, cell: int, bucket: datetime) -> RollupRow:
    """A rollup row where some metrics have no readings and few vehicles are seen."""
    n, total, total_sq, low, high = [], [], [], [], []
    for _ in METRICS:
        count = rng.choice((0, 0, 1, 2, 5))
        values = [round(rng.uniform(0, 100), 2) for _ in range(count)]
        n.append(count)
        total.append(sum(values))
        total_sq.append(sum(v * v for v in values))
        low.append(min(values, default=float("inf")))
        high.append(max(values, default=float("-inf")))
    vehicles = sorted(rng.sample(range(1, 40), rng.choice((1, 1, 2, 3))))
    return RollupRow(cell, bucket, n, total, total_sq, low, high, vehicles)


async def write(conn: asyncpg.Connection, rows: list[RollupRow]) -> None:
    """Through ingest's upsert, in one transaction, as a worker writes a batch."""
    async with conn.transaction():
        await ingest_store.upsert_rollups(conn, rows)


async def write_pm25(
    pool: asyncpg.Pool,
    seed: int,
    cell: int,
    at: datetime,
    count: int,
    value: float,
    vehicles: list[int] | None = None,
) -> None:
    """A rollup row with `count` PM2.5 readings of `value` (other metrics random), written
    as ingest writes it."""
    row = random_row(random.Random(seed), cell, at)
    row.n[PM25.id], row.sum[PM25.id] = count, count * value
    row.sum_sq[PM25.id] = count * value * value
    row.min[PM25.id] = row.max[PM25.id] = value
    if vehicles is not None:
        row.vehicles[:] = vehicles
    async with pool.acquire() as conn:
        await ingest_store.prepare_connection(conn)
        await write(conn, [row])


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    rng = random.Random(11)
    rows = [
        random_row(rng, cell, START + timedelta(minutes=minute))
        for minute in range(HOURS * 60)
        for cell in rng.sample(CELLS, 12)
    ]
    conn = await db.connect(migrated_url, Settings())
    await ingest_store.prepare_connection(conn)
    await write(conn, rows)
    await conn.close()
    pool = await db.create_pool(migrated_url, Settings())
    yield pool
    await pool.close()


def areas(rng: random.Random) -> list[list[int]]:
    ring = sorted(h3.grid_disk(CENTRE, 5))
    corner = sorted(h3.grid_disk(CELLS[0], 4))
    return [CELLS, ring, corner, sorted(rng.sample(CELLS, 30)), [CENTRE]]


def windows(rng: random.Random) -> list[tuple[datetime, datetime]]:
    """Whole-minute windows inside, across and beyond the data, slot-aligned or not."""
    result = [
        (START, START + timedelta(hours=HOURS)),
        (START - timedelta(minutes=30), START + timedelta(minutes=7)),
        (START + timedelta(minutes=10), START + timedelta(minutes=20)),
        (START + timedelta(hours=5), START + timedelta(hours=6)),
    ]
    for _ in range(6):
        first = START + timedelta(minutes=rng.randrange(0, HOURS * 60))
        result.append((first, first + timedelta(minutes=rng.randrange(1, 95))))
    return result


def same_stats(a: queries.Stats, b: queries.Stats) -> None:
    assert (a.count, a.low, a.high, a.vehicles) == (b.count, b.low, b.high, b.vehicles)
    assert a.total == pytest.approx(b.total, rel=1e-12)
    assert a.total_sq == pytest.approx(b.total_sq, rel=1e-12)


@pytest.mark.parametrize("k", [1, 3, 5])
async def test_memory_and_sql_agree(pool: asyncpg.Pool, k: int) -> None:
    rng = random.Random(k)
    sql = rollup_cache.RollupCache(0)
    for cells in areas(rng):
        memory = rollup_cache.RollupCache(64 * 2**20)
        for start, end in windows(rng):
            m = rng.choice(METRICS)
            for bucket in queries.BUCKETS.values():
                got = await queries.series(pool, memory, cells, m, start, end, bucket, k)
                want = await queries.series(pool, sql, cells, m, start, end, bucket, k)
                assert [b for b, _ in got] == [b for b, _ in want]
                for (_, a), (_, b) in zip(got, want, strict=True):
                    same_stats(a, b)
            for resolution in (5, 7, 8, 9):
                got_cells = await queries.per_cell(
                    pool, memory, cells, m, start, end, k, resolution
                )
                want_cells = await queries.per_cell(pool, sql, cells, m, start, end, k, resolution)
                assert got_cells.keys() == want_cells.keys()
                for cell, (stats, vehicles) in got_cells.items():
                    same_stats(stats, want_cells[cell][0])
                    assert vehicles == want_cells[cell][1]
            got_window = await queries.window(pool, memory, cells, m, start, end, k)
            want_window = await queries.window(pool, sql, cells, m, start, end, k)
            assert (got_window is None) == (want_window is None)
            if got_window and want_window:
                same_stats(got_window, want_window)
        assert memory.bytes > 0


async def test_a_new_write_is_seen_at_once(pool: asyncpg.Pool) -> None:
    """A block read before a write is read again after it: the slot's version moved."""
    store = rollup_cache.RollupCache(64 * 2**20)
    at = START + timedelta(minutes=42)
    window = (at.replace(minute=40), at.replace(minute=50))
    before = await queries.window(pool, store, CELLS, PM25, *window, 1)
    loaded = store.loads

    await write_pm25(pool, 5, CELLS[3], at, 4, 100.0)
    after = await queries.window(pool, store, CELLS, PM25, *window, 1)

    assert after is not None
    assert after.count == (before.count if before else 0) + 4
    assert after.total == pytest.approx((before.total if before else 0) + 400)
    assert after.high == 100.0
    assert store.loads > loaded
    # the other slots of a wider window are still held
    wider = (window[0] - timedelta(minutes=30), window[1])
    await queries.window(pool, store, CELLS, PM25, *wider, 1)
    loaded = store.loads
    await queries.window(pool, store, CELLS, PM25, *wider, 1)
    assert store.loads == loaded


async def test_concurrent_askers_share_one_read(pool: asyncpg.Pool) -> None:
    store = rollup_cache.RollupCache(64 * 2**20)
    end = START + timedelta(hours=1)
    answers = await asyncio.gather(
        *(queries.window(pool, store, CELLS, PM25, START, end, 3) for _ in range(10))
    )
    assert len(set(answers)) == 1
    regions = len(rollup_cache.area_of(tuple(CELLS)).regions)
    assert store.loads == 6 * regions  # six slots in each region, read once


async def test_concurrent_askers_share_versions_reads(pool: asyncpg.Pool) -> None:
    store = rollup_cache.RollupCache(64 * 2**20)
    await queries.window(pool, store, CELLS, PM25, START, START + timedelta(hours=2), 3)
    reads = store.version_reads
    # a write to a slot only the later askers cover: one read must ask for all their slots
    await write_pm25(pool, 7, CELLS[2], START + timedelta(minutes=55), 3, 10.0, [1, 2, 3])
    windows = [(START + timedelta(minutes=m), START + timedelta(minutes=m + 50)) for m in range(10)]
    answers = await asyncio.gather(
        *(queries.window(pool, store, CELLS, PM25, *w, 3) for w in windows)
    )
    fresh = rollup_cache.RollupCache(64 * 2**20)
    for w, answer in zip(windows, answers, strict=True):
        expected = await queries.window(pool, fresh, CELLS, PM25, *w, 3)
        assert answer is not None and expected is not None
        same_stats(answer, expected)
    # all ten asked before a read began: one read for them all
    assert store.version_reads - reads == 1


class HeldFirstAnswer:
    """The pool, except that the first query's rows are held until `release` is set: a
    versions read that has read, and not yet answered."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def fetch(self, *args: object) -> list[asyncpg.Record]:
        rows = await self.pool.fetch(*args)
        if not self.held.is_set():
            self.held.set()
            await self.release.wait()
        return rows

    def __getattr__(self, name: str) -> object:
        return getattr(self.pool, name)


async def test_an_asker_during_a_versions_read_waits_for_the_next(pool: asyncpg.Pool) -> None:
    """Sharing the read under way would hand a question asked after a write the versions
    read before it."""
    store = rollup_cache.RollupCache(64 * 2**20)
    at = START + timedelta(minutes=75)
    window = (at.replace(minute=10), at.replace(minute=20))
    before = await queries.window(pool, store, CELLS, PM25, *window, 1)
    held = HeldFirstAnswer(pool)
    first = asyncio.create_task(queries.window(held, store, CELLS, PM25, *window, 1))  # type: ignore[arg-type]
    await held.held.wait()

    await write_pm25(pool, 6, CELLS[5], at, 2, 10.0)
    second = asyncio.create_task(queries.window(held, store, CELLS, PM25, *window, 1))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    held.release.set()

    answered_first, after = await first, await second
    assert before is not None and answered_first is not None and after is not None
    same_stats(answered_first, before)  # asked before the write
    assert after.count == before.count + 2
    assert store.version_reads == 3  # the warm-up's, the held one, the second's own


async def test_a_versions_read_cancelled_before_it_ran_leaves_no_one_waiting(
    pool: asyncpg.Pool,
) -> None:
    """As at shutdown, when every task is cancelled, the read of an asker just arrived."""
    reader = rollup_cache.SlotVersions()
    slots = range(
        rollup_cache.minutes(START), rollup_cache.minutes(START) + 30, rollup_cache.SLOT_MINUTES
    )
    asker = asyncio.create_task(reader.get(pool, slots))
    await asyncio.sleep(0)  # the asker has started the read, which has not run yet
    assert reader._reading is not None
    reader._reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asker, 10)
    versions = await asyncio.wait_for(reader.get(pool, slots), 10)
    assert set(versions) == set(slots) and min(versions.values()) > 0


async def test_memory_is_bounded(pool: asyncpg.Pool) -> None:
    roomy = rollup_cache.RollupCache(64 * 2**20)
    await queries.window(pool, roomy, CELLS, PM25, START, START + timedelta(hours=HOURS), 3)
    assert roomy.bytes > 0
    tight = rollup_cache.RollupCache(roomy.bytes // 4)
    got = await queries.window(pool, tight, CELLS, PM25, START, START + timedelta(hours=HOURS), 3)
    assert got == await queries.window(
        pool, roomy, CELLS, PM25, START, START + timedelta(hours=HOURS), 3
    )
    assert 0 < tight.bytes <= tight.max_bytes


async def test_too_wide_a_question_goes_to_sql(pool: asyncpg.Pool) -> None:
    store = rollup_cache.RollupCache(64 * 2**20)
    weeks = (START - timedelta(days=14), START + timedelta(hours=HOURS))
    assert await store.rows(pool, CELLS, PM25.id + 1, *weeks) is None
    assert await queries.window(pool, store, CELLS, PM25, *weeks, 3) == await queries.window(
        pool, rollup_cache.RollupCache(0), CELLS, PM25, *weeks, 3
    )
    assert store.bytes == 0


def test_parent_and_children_range_are_h3s() -> None:
    rng = random.Random(3)
    cells = np.array(
        [
            h3.latlng_to_cell(rng.uniform(33, 39), rng.uniform(124, 132), H3_RESOLUTION)
            for _ in range(2000)
        ],
        dtype=np.int64,
    )
    for resolution in range(H3_RESOLUTION + 1):
        assert rollup_cache.parent(cells, resolution).tolist() == [
            h3.cell_to_parent(int(c), resolution) for c in cells
        ]
    for region in {h3.cell_to_parent(int(c), rollup_cache.REGION_RESOLUTION) for c in cells[:50]}:
        low, high = rollup_cache.children_range(region)
        children = h3.cell_to_children(region, H3_RESOLUTION)
        assert (min(children), max(children)) == (low, high)
        # every cell in the range is a child: the neighbours' cells all fall outside it
        nearby = h3.grid_disk(h3.cell_to_center_child(region, H3_RESOLUTION), 40)
        for cell in nearby:
            is_child = h3.cell_to_parent(cell, rollup_cache.REGION_RESOLUTION) == region
            assert (low <= cell <= high) == is_child


async def test_a_failed_read_fails_its_askers_and_is_not_kept(
    pool: asyncpg.Pool, migrated_url: str
) -> None:
    """A role that may read the versions but not the rollups: the read of the blocks
    fails for every concurrent asker, and the next ask reads again."""
    role = "ieum_versions_only"
    await pool.execute(
        f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;"
        f" GRANT SELECT ON sensor_rollup_slots TO {role}"
    )
    limited = await asyncpg.create_pool(migrated_url, user=role, min_size=1, max_size=4)
    store = rollup_cache.RollupCache(64 * 2**20)
    end = START + timedelta(minutes=30)
    try:
        answers = await asyncio.gather(
            *(queries.window(limited, store, CELLS, PM25, START, end, 3) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(a, asyncpg.InsufficientPrivilegeError) for a in answers)
        assert store.bytes == 0
        # reads of other regions still under way fail too (the store has no event for it)
        while store._loading:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        again = await queries.window(pool, store, CELLS, PM25, START, end, 3)
        sql = rollup_cache.RollupCache(0)
        in_sql = await queries.window(pool, sql, CELLS, PM25, START, end, 3)
        assert again and in_sql
        same_stats(again, in_sql)
    finally:
        await limited.close()
        await pool.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
