"""Rollups of one metric kept in the hub's memory by time slot and region, and the numpy
aggregation over them.

An hour of a district is about 2,300 per-minute rollup rows. PostgreSQL spends 4 to 7 ms
of CPU aggregating them, because every row carries all 54 metrics (1.7 KB), and that
capped the hub at about 250 uncached aggregates a second. Here a hub keeps what it read,
one metric's rows of a 10-minute slot and an H3 resolution-7 region (about 5 km²) as
numpy columns in a block, and aggregates any window and area over the blocks in about a
millisecond.

Blocks are never stale. Whatever writes rollups raises the version of their slots in the
same transaction (`sensor_rollup_slots`, see `ingest_store.upsert_rollups`), and every
query reads its slots' versions first and reloads the blocks whose version moved. Reading
the versions before the rows means a block may be newer than its version, never older.
Concurrent queries share their versions reads (`SlotVersions`), each waiting for a read
that began after it asked.

Queries wider than `MAX_BLOCKS` blocks (more than about a day of a district) are
aggregated in PostgreSQL instead (`queries`), so one request cannot fill the hub's memory.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import asyncpg
import numpy as np
from h3.api import basic_int as h3

from resolvers.sensors import monitoring
from resolvers.sensors.message import H3_RESOLUTION

SLOT_MINUTES = 10
REGION_RESOLUTION = 7
MAX_BLOCKS = 2_000  # per query: about a day of a district
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BlockKey = tuple[int, int, int]  # metric index, slot (minutes since the epoch), region


@dataclass(frozen=True)
class Columns:
    """Rollup rows of one metric (those with readings of it). Integers and floats are
    two matrices, so choosing rows is two copies rather than ten."""

    ints: np.ndarray  # int64 (rows, 5): the properties below
    floats: np.ndarray  # float64 (rows, 5): readings, sum, sum of squares, min, max
    vehicles: np.ndarray  # int64: every row's hashed vehicles one after another

    @property
    def cell(self) -> np.ndarray:  # H3 resolution 9
        return self.ints[:, 0]

    @property
    def minute(self) -> np.ndarray:  # minutes since the epoch
        return self.ints[:, 1]

    @property
    def first(self) -> np.ndarray:  # the row's first hashed vehicle, -1 for none
        return self.ints[:, 2]

    @property
    def vcount(self) -> np.ndarray:  # hashed vehicles the row keeps (at most 16)
        return self.ints[:, 3]

    @property
    def vstart(self) -> np.ndarray:  # where the row's vehicles begin in `vehicles`
        return self.ints[:, 4]

    @property
    def nbytes(self) -> int:
        return self.ints.nbytes + self.floats.nbytes + self.vehicles.nbytes

    def __len__(self) -> int:
        return len(self.ints)


def columns_of(records: list[asyncpg.Record]) -> Columns:
    """Columns of rows read as (cell, minute, n, sum, sum_sq, min, max, vehicles)."""
    if not records:
        return _EMPTY
    cell, minute, n, total, total_sq, low, high, vehicle_lists = zip(*records, strict=True)
    ints = np.empty((len(records), 5), dtype=np.int64)
    ints[:, 0], ints[:, 1] = cell, minute
    ints[:, 3] = np.fromiter(map(len, vehicle_lists), dtype=np.int64, count=len(records))
    ints[0, 4] = 0
    np.cumsum(ints[:-1, 3], out=ints[1:, 4])
    vehicles = np.fromiter(itertools.chain.from_iterable(vehicle_lists), dtype=np.int64)
    ints[:, 2] = [v[0] if v else -1 for v in vehicle_lists]
    floats = np.array([n, total, total_sq, low, high], dtype=np.float64).T.copy()
    return Columns(ints, floats, vehicles)


def joined(blocks: list[Columns]) -> Columns:
    """Several blocks' rows as one."""
    blocks = [b for b in blocks if len(b)]
    if not blocks:
        return _EMPTY
    if len(blocks) == 1:
        return blocks[0]
    ints = np.concatenate([b.ints for b in blocks])
    shifts = np.cumsum([0, *(len(b.vehicles) for b in blocks[:-1])])
    ints[:, 4] += np.repeat(shifts, [len(b) for b in blocks])
    return Columns(
        ints,
        np.concatenate([b.floats for b in blocks]),
        np.concatenate([b.vehicles for b in blocks]),
    )


def chosen(rows: Columns, which: np.ndarray) -> Columns:
    """Some rows; they still point into the same vehicles."""
    return Columns(rows.ints[which], rows.floats[which], rows.vehicles)


def compacted(rows: Columns, which: np.ndarray) -> Columns:
    """Some rows with only their own vehicles, for keeping."""
    ints = rows.ints[which]
    vehicles = rows.vehicles[_vehicle_positions(ints[:, 4], ints[:, 3])]
    ints[:, 4] = np.cumsum(ints[:, 3]) - ints[:, 3]
    return Columns(ints, rows.floats[which], vehicles)


def _vehicle_positions(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Where in `vehicles` the vehicles of rows beginning at `starts` lie, row after row."""
    before = np.cumsum(counts) - counts  # vehicles of the earlier rows
    return np.repeat(starts - before, counts) + np.arange(counts.sum())


_EMPTY = Columns(
    np.empty((0, 5), dtype=np.int64), np.empty((0, 5), dtype=np.float64), np.empty(0, np.int64)
)


# Areas


@dataclass(frozen=True, eq=False)  # compared by identity: area_of makes one per area
class Area:
    """An area's resolution-9 cells and the regions they lie in."""

    cells: np.ndarray  # sorted
    regions: tuple[int, ...]
    whole: bool  # every cell of every region is in the area


@lru_cache(maxsize=128)  # an area of 60,000 cells takes about 2 MB here
def area_of(cells: tuple[int, ...]) -> Area:
    array = np.unique(np.array(cells, dtype=np.int64))
    regions, counts = np.unique(parent(array, REGION_RESOLUTION), return_counts=True)
    whole = all(
        count == h3.cell_to_children_size(region, H3_RESOLUTION)
        for region, count in zip(regions.tolist(), counts.tolist(), strict=True)
    )
    return Area(array, tuple(regions.tolist()), whole)


def parent(cells: np.ndarray, resolution: int) -> np.ndarray:
    """H3's cellToParent for resolution-9 cells: the resolution field (bits 52 to 55) set,
    the digits of finer resolutions (3 bits each, lowest bits) set to 7."""
    cleared = (cells & ~np.int64(15 << 52)) | np.int64(resolution << 52)
    return cleared | np.int64((1 << (3 * (15 - resolution))) - 1)


def children_range(region: int) -> tuple[int, int]:
    """The lowest and highest resolution-9 cell of a region: its children are the valid
    cells between (the digits finer than the region's run from 0 to 6)."""
    low = h3.cell_to_center_child(region, H3_RESOLUTION)
    spread = sum(6 << (3 * (15 - r)) for r in range(REGION_RESOLUTION + 1, H3_RESOLUTION + 1))
    return low, low + spread


def _inside(cells: np.ndarray, sorted_area: np.ndarray) -> np.ndarray:
    at = np.searchsorted(sorted_area, cells)
    at[at == len(sorted_area)] = 0
    return sorted_area[at] == cells


# A block: one metric, slot and region. A view: one metric and slot of an area (the
# blocks' rows in the area), so an area asked about again is not filtered again.
Key = tuple[int, int, int] | tuple[int, int, Area]


# Grouping


@dataclass(frozen=True)
class Groups:
    """Statistics of rows grouped by a key; `floor` is at least the number of distinct
    vehicles, and exactly that number wherever it is below k (`sets` then has them)."""

    keys: np.ndarray
    n: np.ndarray
    total: np.ndarray
    total_sq: np.ndarray
    low: np.ndarray
    high: np.ndarray
    floor: np.ndarray
    sets: dict[int, frozenset[int]]  # group position -> its vehicles, where floor < k


def group(rows: Columns, keys: np.ndarray, k: int) -> Groups:
    """Group rows by key as the SQL aggregates do: the most vehicles in one row and the
    distinct first vehicles are lower bounds; where both stay below k the union of the
    rows' vehicles is worked out exactly."""
    if not len(rows):
        empty = np.empty(0)
        return Groups(empty, empty, empty, empty, empty, empty, empty, {})
    order = np.lexsort((rows.first, keys))
    keys, first = keys[order], rows.first[order]
    new_key = np.empty(len(keys), dtype=bool)
    new_key[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new_key[1:])
    starts = np.flatnonzero(new_key)
    new_first = new_key.copy()
    new_first[1:] |= first[1:] != first[:-1]
    floor = np.maximum(
        np.maximum.reduceat(rows.vcount[order], starts),
        np.add.reduceat(new_first.astype(np.int64), starts),
    )
    sparse = np.flatnonzero(floor < k)
    sets: dict[int, frozenset[int]] = {}
    if len(sparse):
        sizes = np.diff(np.append(starts, len(keys)))
        group_of = np.repeat(np.arange(len(starts)), sizes)
        in_sparse = np.isin(group_of, sparse)
        chosen = order[in_sparse]
        counts = rows.vcount[chosen]
        vehicles = rows.vehicles[_vehicle_positions(rows.vstart[chosen], counts)]
        owners = np.repeat(group_of[in_sparse], counts)  # in order: rows are sorted by key
        present, begins = np.unique(owners, return_index=True)
        split = np.split(vehicles, begins[1:]) if len(owners) else []
        by_group = dict(zip(present.tolist(), split, strict=True))
        for g in sparse.tolist():
            sets[g] = frozenset(by_group.get(g, np.empty(0, dtype=np.int64)).tolist())
            floor[g] = len(sets[g])
    floats = rows.floats[order]
    sums = np.add.reduceat(floats[:, :3], starts, axis=0)
    return Groups(
        keys=keys[starts],
        n=sums[:, 0],
        total=sums[:, 1],
        total_sq=sums[:, 2],
        low=np.minimum.reduceat(floats[:, 3], starts),
        high=np.maximum.reduceat(floats[:, 4], starts),
        floor=floor,
        sets=sets,
    )


# The store


class RollupCache:
    """Blocks of rollups by (metric, slot, region) and views of them by (metric, slot,
    area), least recently used dropped first once they take more than `max_bytes`.
    `max_bytes = 0` keeps nothing: every aggregate is then computed in PostgreSQL."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.loads = 0  # blocks read from PostgreSQL
        self._blocks: OrderedDict[Key, tuple[int, Columns]] = OrderedDict()
        self._loading: dict[tuple[BlockKey, int], asyncio.Future[Columns]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._versions: dict[asyncpg.Pool, SlotVersions] = {}

    @property
    def version_reads(self) -> int:
        return sum(reader.reads for reader in self._versions.values())

    async def rows(
        self,
        pool: asyncpg.Pool,
        cells: list[int],
        metric_index: int,
        start: datetime,
        end: datetime,
    ) -> Columns | None:
        """Rows of the metric (1-based catalog index) in the cells with a minute in
        [start, end), both whole minutes; None when the store is off or the question is
        too wide for it."""
        if self.max_bytes <= 0 or not cells:
            return None
        first, stop = minutes(start), minutes(end)
        slots = range(first - first % SLOT_MINUTES, stop, SLOT_MINUTES)
        if not slots:
            return _EMPTY
        area = area_of(tuple(cells))
        if len(slots) * len(area.regions) > MAX_BLOCKS:
            return None
        reader = self._versions.get(pool) or self._versions.setdefault(pool, SlotVersions())
        versions = await reader.get(pool, slots)
        held = {slot: self._held((metric_index, slot, area), versions[slot]) for slot in slots}
        views = {slot: view for slot, view in held.items() if view is not None}
        missing = [slot for slot, view in held.items() if view is None]
        if missing:
            wanted = [
                ((metric_index, slot, region), versions[slot])
                for slot in missing
                for region in area.regions
            ]
            blocks = iter(await self._get(pool, wanted))
            for slot in missing:
                view = joined([next(blocks) for _ in area.regions])
                if not area.whole:
                    view = compacted(view, _inside(view.cell, area.cells))
                self._keep((metric_index, slot, area), versions[slot], view)
                views[slot] = view
        parts = [views[slot] for slot in slots]
        for at_edge in {0, len(parts) - 1}:
            view = parts[at_edge]
            if len(view) and (slots[at_edge] < first or slots[at_edge] + SLOT_MINUTES > stop):
                parts[at_edge] = chosen(view, (view.minute >= first) & (view.minute < stop))
        return joined(parts)

    def _held(self, key: Key, version: int) -> Columns | None:
        held = self._blocks.get(key)
        if held is None or held[0] < version:
            return None
        self._blocks.move_to_end(key)
        return held[1]

    async def _get(self, pool: asyncpg.Pool, wanted: list[tuple[BlockKey, int]]) -> list[Columns]:
        found: list[Columns | asyncio.Future[Columns]] = []
        mine: list[tuple[BlockKey, int]] = []
        for key, version in wanted:
            held = self._held(key, version)
            if held is not None:
                found.append(held)
            elif (key, version) in self._loading:
                found.append(self._loading[(key, version)])
            else:
                future = asyncio.get_running_loop().create_future()
                self._loading[(key, version)] = future
                mine.append((key, version))
                found.append(future)
        monitoring.ROLLUP_BLOCKS.labels("held").inc(len(wanted) - len(mine))
        if mine:
            monitoring.ROLLUP_BLOCKS.labels("loaded").inc(len(mine))
            self.loads += len(mine)
            # A task of its own: a caller that goes away must not fail the others' blocks.
            loading = asyncio.ensure_future(self._load(pool, mine))
            self._tasks.add(loading)
            loading.add_done_callback(self._tasks.discard)
        return [item if isinstance(item, Columns) else await asyncio.shield(item) for item in found]

    async def _load(self, pool: asyncpg.Pool, mine: list[tuple[BlockKey, int]]) -> None:
        """Read the blocks a caller found missing, one query per metric, region and run of
        consecutive slots, at once on several connections; hand them to everyone waiting."""
        await asyncio.gather(*(self._load_run(pool, place, run) for place, run in _runs(mine)))

    async def _load_run(
        self, pool: asyncpg.Pool, place: tuple[int, int], run: list[tuple[BlockKey, int]]
    ) -> None:
        metric_index, region = place
        try:
            blocks = await _read(pool, metric_index, region, run[0][0][1], run[-1][0][1])
        except BaseException as exc:
            for item in run:
                future = self._loading.pop(item)
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
                    future.exception()  # retrieved: no warning when no one waits any more
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for key, version in run:
            block = blocks.get(key[1], _EMPTY)
            self._keep(key, version, block)
            self._loading.pop((key, version)).set_result(block)

    def _keep(self, key: Key, version: int, block: Columns) -> None:
        held = self._blocks.get(key)
        if held is not None:
            if held[0] > version:  # a newer read finished first
                return
            del self._blocks[key]
            self.bytes -= held[1].nbytes
        self._blocks[key] = (version, block)
        self.bytes += block.nbytes
        while self.bytes > self.max_bytes and self._blocks:
            _, (_, dropped) = self._blocks.popitem(last=False)
            self.bytes -= dropped.nbytes


def _runs(
    mine: list[tuple[BlockKey, int]],
) -> Iterable[tuple[tuple[int, int], list[tuple[BlockKey, int]]]]:
    """The missing blocks by (metric, region), split where slots stop being consecutive."""
    ordered = sorted(mine, key=lambda item: (item[0][0], item[0][2], item[0][1]))
    for place, items in itertools.groupby(ordered, key=lambda item: (item[0][0], item[0][2])):
        run: list[tuple[BlockKey, int]] = []
        for item in items:
            if run and item[0][1] != run[-1][0][1] + SLOT_MINUTES:
                yield place, run
                run = []
            run.append(item)
        yield place, run


def minutes(t: datetime) -> int:
    return int((t - EPOCH).total_seconds()) // 60


def at(minutes: int) -> datetime:
    return EPOCH + timedelta(minutes=minutes)


class SlotVersions:
    """Slots' versions for concurrent questions, read for many at once.

    Each asker waits for a read that starts after it asked, so it sees every write
    committed before its question: never stale. Askers who arrive while a read runs share
    the next one, so a busy hub sends one small query per round trip instead of one per
    question (on the benchmark's misses, PostgreSQL's CPU per question halved).
    """

    def __init__(self) -> None:
        self.reads = 0
        self._wanted: set[int] = set()  # slots for the next read
        self._next: asyncio.Future[dict[int, int]] | None = None
        self._reading: asyncio.Future[None] | None = None

    async def get(self, pool: asyncpg.Pool, slots: range) -> dict[int, int]:
        """Each slot's version; 0 for a slot no write has touched."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        self._wanted.update(slots)
        answer = self._next
        if self._reading is None or self._reading.done():
            # A task of its own: an asker that goes away must not fail the others' read.
            self._reading = asyncio.ensure_future(self._read_while_asked(pool))
            self._reading.add_done_callback(self._stopped)
        written = await asyncio.shield(answer)
        return {slot: written.get(slot, 0) for slot in slots}

    async def _read_while_asked(self, pool: asyncpg.Pool) -> None:
        while self._next is not None:
            answer, wanted = self._next, sorted(self._wanted)
            self._next, self._wanted = None, set()
            self.reads += 1
            try:
                rows = await pool.fetch(
                    "SELECT slot, version FROM sensor_rollup_slots"
                    " WHERE slot = ANY($1::timestamptz[])",
                    [at(slot) for slot in wanted],
                )
            except Exception as exc:  # handed to this read's askers; the next read may work
                answer.set_exception(exc)
                answer.exception()  # retrieved: no warning when no one waits any more
                continue
            except BaseException:
                answer.cancel()
                raise
            answer.set_result({minutes(row["slot"]): row["version"] for row in rows})

    def _stopped(self, reading: asyncio.Future[None]) -> None:
        """A reading task cancelled, even before it ran, leaves no asker waiting."""
        if reading is self._reading and self._next is not None:
            self._next.cancel()
            self._next, self._wanted = None, set()


async def _read(
    pool: asyncpg.Pool, metric_index: int, region: int, first_slot: int, last_slot: int
) -> dict[int, Columns]:
    """One metric's rows of a region from `first_slot` to `last_slot`, as a block a slot."""
    low, high = children_range(region)
    records = await pool.fetch(
        "SELECT cell, (extract(epoch FROM bucket) / 60)::bigint AS minute, n[$1], sum[$1],"
        " sum_sq[$1], min[$1], max[$1], vehicles FROM sensor_rollups"
        " WHERE bucket >= $2 AND bucket < $3 AND cell BETWEEN $4 AND $5 AND n[$1] > 0"
        " ORDER BY bucket",
        metric_index,
        at(first_slot),
        at(last_slot + SLOT_MINUTES),
        low,
        high,
    )
    slot_of = [r["minute"] - r["minute"] % SLOT_MINUTES for r in records]
    return {
        slot: columns_of([record for _, record in chunk])
        for slot, chunk in itertools.groupby(zip(slot_of, records, strict=True), lambda x: x[0])
    }
