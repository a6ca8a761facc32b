"""Per-cell, per-minute statistics of a batch of readings, computed with numpy.

A batch of 5,000 messages carries 250,000 metric values; grouping them in Python loops
would cost more than writing them. numpy sorts the readings by (cell, minute) once and
reduces every metric column at the group boundaries. The ingest worker uses
`rollup_columns` (a batch as columns, rows as arrays for a binary COPY); `rollups`, over
`Reading` objects, is the reference it is tested against and what other callers use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np

from resolvers.sensors.message import Reading

MAX_VEHICLES = 16  # distinct vehicles kept per rollup row: enough for k-anonymity k <= 16


@dataclass(frozen=True)
class RollupRow:
    cell: int
    bucket: datetime
    n: list[int]
    sum: list[float]
    sum_sq: list[float]
    min: list[float]
    max: list[float]
    vehicles: list[int]


@lru_cache(maxsize=65536)
def vehicle_hash(vehicle_id: str) -> int:
    """A stable 63-bit id: rollups count distinct vehicles without naming them."""
    digest = hashlib.blake2b(vehicle_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def rollups(readings: Sequence[Reading]) -> list[RollupRow]:
    if not readings:
        return []
    cells = np.fromiter((r.cell for r in readings), dtype=np.int64, count=len(readings))
    minutes = np.fromiter(
        (int(r.ts.timestamp()) // 60 for r in readings), dtype=np.int64, count=len(readings)
    )
    # The stored float32 values, so rollups agree with the raw readings they sum.
    values = (
        np.frombuffer(b"".join(r.packed for r in readings), dtype="<f4")
        .reshape(len(readings), -1)
        .astype(np.float64)
    )

    order = np.lexsort((minutes, cells))
    cells, minutes, values = cells[order], minutes[order], values[order]
    boundary = np.empty(len(cells), dtype=bool)
    boundary[0] = True
    boundary[1:] = (cells[1:] != cells[:-1]) | (minutes[1:] != minutes[:-1])
    starts = np.flatnonzero(boundary)

    present = ~np.isnan(values)
    zeroed = np.where(present, values, 0.0)
    n = np.add.reduceat(present.astype(np.int32), starts, axis=0)
    sums = np.add.reduceat(zeroed, starts, axis=0)
    sums_sq = np.add.reduceat(zeroed * zeroed, starts, axis=0)
    mins = np.fmin.reduceat(np.where(present, values, np.inf), starts, axis=0)
    maxs = np.fmax.reduceat(np.where(present, values, -np.inf), starts, axis=0)

    vehicle_ids = [readings[i].vehicle_id for i in order]
    ends = [*starts[1:].tolist(), len(cells)]
    rows = []
    for g, (start, end) in enumerate(zip(starts.tolist(), ends, strict=True)):
        vehicles = sorted({vehicle_hash(v) for v in vehicle_ids[start:end]})[:MAX_VEHICLES]
        rows.append(
            RollupRow(
                cell=int(cells[start]),
                bucket=datetime.fromtimestamp(int(minutes[start]) * 60, UTC),
                n=n[g].tolist(),
                sum=sums[g].tolist(),
                sum_sq=sums_sq[g].tolist(),
                min=mins[g].tolist(),
                max=maxs[g].tolist(),
                vehicles=vehicles,
            )
        )
    return rows


@dataclass(frozen=True)
class RollupColumns:
    """The rollup rows of a batch as arrays (rows first): what copy_binary.rollups takes."""

    cell: np.ndarray
    minute: np.ndarray  # minutes since the Unix epoch
    n: np.ndarray
    sums: np.ndarray
    sums_sq: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    vehicles: np.ndarray  # (rows, MAX_VEHICLES), the smallest hashes first, then -1

    def __len__(self) -> int:
        return len(self.cell)


def rollup_columns(
    cells: np.ndarray, ts_us: np.ndarray, values: np.ndarray, vehicles: np.ndarray
) -> RollupColumns:
    """`rollups` for a batch of columns: times in µs since the epoch, values float32 (rows,
    metrics), each row's vehicle hash. The distinct vehicles of a group are found by
    sorting too, not with a set per group. At least one row."""
    minutes = ts_us // 60_000_000
    order = np.lexsort((minutes, cells))
    cells, minutes = cells[order], minutes[order]
    values = values[order]
    boundary = np.empty(len(cells), dtype=bool)
    boundary[:1] = True
    boundary[1:] = (cells[1:] != cells[:-1]) | (minutes[1:] != minutes[:-1])
    starts = np.flatnonzero(boundary)
    present = ~np.isnan(values)
    zeroed = np.where(present, values, np.float32(0))
    n = np.add.reduceat(present, starts, axis=0, dtype=np.int32)
    # Extremes in float32 (the values' own type; fmin/fmax skip NaN), none: ±inf. Sums
    # in float64, converted as they are added rather than in a copy of the batch.
    mins = np.fmin.reduceat(values, starts, axis=0)
    maxs = np.fmax.reduceat(values, starts, axis=0)
    mins[n == 0], maxs[n == 0] = np.inf, -np.inf
    group = np.cumsum(boundary) - 1
    return RollupColumns(
        cell=cells[starts],
        minute=minutes[starts],
        n=n,
        sums=np.add.reduceat(zeroed, starts, axis=0, dtype=np.float64),
        sums_sq=np.add.reduceat(np.square(zeroed, dtype=np.float64), starts, axis=0),
        mins=mins,
        maxs=maxs,
        vehicles=smallest_distinct(group, vehicles[order], len(starts)),
    )


def smallest_distinct(group: np.ndarray, hashes: np.ndarray, groups: int) -> np.ndarray:
    """The smallest MAX_VEHICLES distinct hashes of each of `groups` groups (numbered from
    0), in order and padded with -1: found by sorting (group, hash) pairs, not with a set
    per group."""
    pairs = np.lexsort((hashes, group))
    g, h = group[pairs], hashes[pairs]
    new = np.empty(len(g), dtype=bool)
    new[:1] = True
    new[1:] = (g[1:] != g[:-1]) | (h[1:] != h[:-1])
    g, h = g[new], h[new]
    first = np.searchsorted(g, np.arange(groups))
    rank = np.arange(len(g)) - first[g]
    kept = rank < MAX_VEHICLES
    slots = np.full((groups, MAX_VEHICLES), -1, dtype=np.int64)
    slots[g[kept], rank[kept]] = h[kept]
    return slots
