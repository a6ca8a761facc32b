"""A batch's rollups merged into the stored ones by the worker, with numpy.

Merging a staged rollup row into a stored one in SQL calls the element-wise functions of
0004 five times and a capped union once, each 10 to 25 µs of PostgreSQL's time: about
100 µs a row for the minutes and as much again for their 5-minute slot, 40% of its CPU
per message. So the worker reads the stored rows its batch meets (ingest_store.
merge_rollups), merges them here and writes the results as they are, where the row is
still the version it read. A stored row in another shape (arrays of another length, from
an older catalog), one another worker wrote after the read, and one inserted meanwhile
are left to the SQL merge; both give the same values, the SQL functions being what these
follow:
ieum_array_add (+), ieum_array_least (NaN only if both are), ieum_array_greatest (NaN if
either is), ieum_capped_union (the smallest distinct hashes), ieum_rollup_lacking.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from resolvers.sensors.copy_binary import NO_VEHICLE, OIDS, VEHICLE_SLOTS, WIDTH
from resolvers.sensors.rollup import RollupColumns, smallest_distinct

SLOT_MINUTES = 5  # rollup_levels.SLOT
_HEAD = (
    20  # an array's header in binary form: dimensions, NULLs?, element type, length, lower bound
)


@dataclass(frozen=True)
class Level:
    """Rows of one rollup table to merge: `rows.minute` is the bucket's start (minutes
    since the epoch); `partial` is sensor_rollups_5min's column, None for the minutes."""

    rows: RollupColumns
    partial: np.ndarray | None


def slots(minutes: RollupColumns) -> Level:
    """The batch's 5-minute rows from its minute rows (sorted by cell and minute, as
    rollup_columns makes them): what rollup_levels.MERGE_STAGED groups in SQL."""
    slot = minutes.minute // SLOT_MINUTES * SLOT_MINUTES
    boundary = np.empty(len(slot), dtype=bool)
    boundary[:1] = True
    boundary[1:] = (minutes.cell[1:] != minutes.cell[:-1]) | (slot[1:] != slot[:-1])
    starts = np.flatnonzero(boundary)
    group = np.cumsum(boundary) - 1
    return Level(
        RollupColumns(
            cell=minutes.cell[starts],
            minute=slot[starts],
            n=np.add.reduceat(minutes.n, starts, axis=0),
            sums=np.add.reduceat(minutes.sums, starts, axis=0),
            sums_sq=np.add.reduceat(minutes.sums_sq, starts, axis=0),
            mins=np.fmin.reduceat(minutes.mins, starts, axis=0),
            maxs=np.maximum.reduceat(minutes.maxs, starts, axis=0),
            vehicles=_union(np.repeat(group, VEHICLE_SLOTS), minutes.vehicles, len(starts)),
        ),
        np.bitwise_or.reduceat(lacking(minutes.n), starts),
    )


def lacking(n: np.ndarray) -> np.ndarray:
    """ieum_rollup_lacking of each row of counts: bit min(i, 62) for a metric i without
    readings, and every bit from the row's length up when it is shorter than 63."""
    width = n.shape[1]
    bits = np.array([1 << min(i, 62) for i in range(width)], dtype=np.int64)
    short = -(1 << width) if width < 63 else 0
    return np.bitwise_or.reduce(np.where(n == 0, bits, 0), axis=1) | np.int64(short)


@dataclass(frozen=True)
class Stored:
    """The stored rows met by a batch, in the shape the batch has: `at` is each one's
    index in the batch's rows, `seen` the transaction that wrote the version read."""

    at: np.ndarray
    seen: np.ndarray
    n: np.ndarray
    sums: np.ndarray
    sums_sq: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    vehicles: np.ndarray  # padded with NO_VEHICLE to VEHICLE_SLOTS
    partial: np.ndarray | None


# The arrays of a stored row as the lock query sends them (array_send): element type and
# length, the vehicles padded to VEHICLE_SLOTS.
ARRAYS = {
    "n": ("i4", WIDTH),
    "sum": ("f8", WIDTH),
    "sum_sq": ("f8", WIDTH),
    "min": ("f4", WIDTH),
    "max": ("f4", WIDTH),
    "vehicles": ("i8", VEHICLE_SLOTS),
}


def stored(records: Sequence[Mapping[str, Any]], has_partial: bool) -> Stored:
    """Stored rows from the read (ingest_store): `i` (from 1), `seen` (xmin) and each
    array in PostgreSQL's binary form. Only rows of the batch's shape are kept: one-dimensional
    arrays from 1 of WIDTH metrics (VEHICLE_SLOTS vehicles) without NULLs."""
    sized = np.ones(len(records), dtype=bool)
    for name, (kind, size) in ARRAYS.items():
        lengths = np.fromiter((len(r[name]) for r in records), dtype=np.int64, count=len(records))
        sized &= lengths == _HEAD + size * (4 + np.dtype(kind).itemsize)
    kept = [r for r, good in zip(records, sized.tolist(), strict=True) if good]
    raw = {
        name: np.frombuffer(b"".join(r[name] for r in kept), dtype=np.uint8).reshape(len(kept), -1)
        if kept
        else np.zeros((0, _HEAD), dtype=np.uint8)
        for name in ARRAYS
    }
    shaped = np.ones(len(kept), dtype=bool)
    for name, (kind, size) in ARRAYS.items():
        head = np.frombuffer(struct.pack(">5i", 1, 0, OIDS[kind], size, 1), dtype=np.uint8)
        shaped &= (raw[name][:, :_HEAD] == head).all(axis=1)
    arrays = {name: _values(raw[name][shaped], *ARRAYS[name]) for name in ARRAYS}
    rows = np.flatnonzero(shaped).tolist()
    return Stored(
        at=np.array([kept[i]["i"] for i in rows], dtype=np.int64) - 1,
        seen=np.array([kept[i]["seen"] for i in rows], dtype=np.int64),
        n=arrays["n"],
        sums=arrays["sum"],
        sums_sq=arrays["sum_sq"],
        mins=arrays["min"],
        maxs=arrays["max"],
        vehicles=arrays["vehicles"],
        partial=np.array([kept[i]["partial"] for i in rows], dtype=np.int64)
        if has_partial
        else None,
    )


NOT_SEEN = -1  # a row of the batch not merged here (never a transaction id)


def merged(level: Level, old: Stored) -> tuple[Level, np.ndarray]:
    """The batch's rows with the stored ones they meet merged in, and for each the
    transaction that wrote the stored version merged (NOT_SEEN: none)."""
    rows, at = level.rows, old.at
    seen = np.full(len(rows), NOT_SEEN, dtype=np.int64)
    seen[at] = old.seen
    vehicles = rows.vehicles.copy()
    both = np.concatenate([old.vehicles, rows.vehicles[at]], axis=1)
    vehicles[at] = _union(np.repeat(np.arange(len(at)), both.shape[1]), both, len(at))
    partial = level.partial
    if partial is not None and old.partial is not None:
        partial = partial.copy()
        partial[at] |= old.partial
    return Level(
        RollupColumns(
            cell=rows.cell,
            minute=rows.minute,
            n=_at(rows.n, at, rows.n[at] + old.n),
            sums=_at(rows.sums, at, rows.sums[at] + old.sums),
            sums_sq=_at(rows.sums_sq, at, rows.sums_sq[at] + old.sums_sq),
            mins=_at(rows.mins, at, np.fmin(rows.mins[at], old.mins)),
            maxs=_at(rows.maxs, at, np.maximum(rows.maxs[at], old.maxs)),
            vehicles=vehicles,
        ),
        partial,
    ), seen


def _at(values: np.ndarray, at: np.ndarray, new: np.ndarray) -> np.ndarray:
    out = values.astype(np.result_type(values, new), copy=True)
    out[at] = new
    return out


def _union(group: np.ndarray, vehicles: np.ndarray, groups: int) -> np.ndarray:
    """The smallest distinct vehicles of each group, from rows padded with NO_VEHICLE."""
    hashes = vehicles.reshape(-1)
    real = hashes != NO_VEHICLE
    return smallest_distinct(group[real], hashes[real], groups)


def _values(raw: np.ndarray, kind: str, size: int) -> np.ndarray:
    """The elements of arrays in binary form (rows of bytes, each element after its
    length), as `kind` in this machine's order."""
    item = np.dtype(kind).itemsize
    elements = raw[:, _HEAD:].reshape(len(raw), size, 4 + item)[:, :, 4:]
    big = np.ascontiguousarray(elements).view(np.dtype(kind).newbyteorder(">"))
    return big.reshape(len(raw), size).astype(kind)
