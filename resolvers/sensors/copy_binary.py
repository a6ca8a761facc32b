"""PostgreSQL's binary COPY format, built from numpy columns in one pass.

asyncpg's `copy_records_to_table` wants a tuple per row and a Python object per value
and encodes them one by one: for a batch of readings (54 values each) and its rollups (5
arrays of 54 each) that was most of the worker's time. Here rows of one width are built
as one byte array (byte_rows.py): the staging rows of readings (a reading names its
device by its number in the batch) and of rollups have a single width; the rows of
sensor_readings itself are built by shape (the ids' lengths, NULLs).
The format: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format).
"""

from __future__ import annotations

import itertools
import struct
from typing import TYPE_CHECKING

import numpy as np

from resolvers.sensors.byte_rows import Part, big_endian
from resolvers.sensors.byte_rows import rows as byte_rows
from resolvers.sensors.catalog import metrics
from resolvers.sensors.rollup import RollupColumns

if TYPE_CHECKING:
    from resolvers.sensors.rollup_merge import Level

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01, PostgreSQL's zero time
WIDTH = len(metrics())
VEHICLE_SLOTS = 16  # rollup.MAX_VEHICLES; an unused slot holds NO_VEHICLE
NO_VEHICLE = -1  # never a vehicle hash (they are 63-bit, so not negative)
NULL = struct.pack(">i", -1)

# The staging table of readings (ingest_store.prepare_connection), in this order.
READINGS_COLUMNS = (
    "ts",
    "device_no",
    "lat",
    "lng",
    "cell",
    "speed_kmh",
    "heading_deg",
    "metrics",
)
ROLLUPS_COLUMNS = ("cell", "bucket", "n", "sum", "sum_sq", "min", "max", "vehicles")
# The staging tables of a batch's rollups (ingest_store.merge_rollups): minutes, and
# 5-minute slots with their `partial`. Each row holds its values merged by the worker with
# the stored version written by transaction `seen` (or the batch's alone, seen = -1), and
# the batch's alone again (d_*) for the SQL merge.
DELTAS = ("d_n", "d_sum", "d_sum_sq", "d_min", "d_max", "d_vehicles")
STAGED_COLUMNS = (*ROLLUPS_COLUMNS, "seen", *DELTAS)
STAGED_SLOT_COLUMNS = (*ROLLUPS_COLUMNS, "partial", "seen", *DELTAS, "d_partial")
# Element type oids of PostgreSQL's built-in types.
OIDS = {"i4": 23, "i8": 20, "f4": 700, "f8": 701}


def _length(size: int) -> bytes:
    return struct.pack(">i", size)


def _field(data: np.ndarray, kind: str) -> list[Part]:
    """A non-NULL fixed-size field: its length, then the value."""
    return [_length(np.dtype(kind).itemsize), big_endian(data, kind)]


def _values(values: np.ndarray) -> list[Part]:
    """The metric values as stored (bytea of little-endian float32)."""
    return [_length(WIDTH * 4), np.ascontiguousarray(values, dtype="<f4")]


def _array(data: np.ndarray, kind: str) -> list[Part]:
    """A one-dimensional array without NULLs: its header, then length and value each."""
    count, size = data.shape
    item = np.dtype(kind).itemsize
    head = _length(20 + size * (4 + item)) + struct.pack(">5i", 1, 0, OIDS[kind], size, 1)
    elements = np.empty((count, size, 4 + item), dtype=np.uint8)
    elements[:, :, :4] = np.frombuffer(_length(item), dtype=np.uint8)
    elements[:, :, 4:] = big_endian(data, kind).view(np.uint8).reshape(count, size, item)
    return [head, elements]


def readings(
    ts: np.ndarray,
    device_no: np.ndarray,
    lat: np.ndarray,
    lng: np.ndarray,
    cell: np.ndarray,
    speed_kmh: np.ndarray,
    heading_deg: np.ndarray,
    values: np.ndarray,
) -> bytes:
    """Staging rows of readings: times in µs since the Unix epoch, speed and heading NaN
    where absent (the INSERT turns NaN into NULL), values float32 (rows, WIDTH)."""
    body = byte_rows(
        len(ts),
        [
            struct.pack(">h", len(READINGS_COLUMNS)),
            *_field(ts - PG_EPOCH_US, "i8"),
            *_field(device_no, "i4"),
            *_field(lat, "f8"),
            *_field(lng, "f8"),
            *_field(cell, "i8"),
            *_field(speed_kmh, "f4"),
            *_field(heading_deg, "f4"),
            *_values(values),
        ],
    )
    return SIGNATURE + body.tobytes() + TRAILER


def rollups(merged: Level, seen: np.ndarray, batch: Level) -> bytes:
    """Staging rows of rollups (STAGED_COLUMNS, or STAGED_SLOT_COLUMNS with `partial`):
    `minute` counts minutes since the Unix epoch; the arrays are (rows, WIDTH),
    `vehicles` (rows, VEHICLE_SLOTS) padded with NO_VEHICLE."""
    slots = merged.partial is not None and batch.partial is not None
    parts: list[Part] = [
        struct.pack(">h", len(STAGED_SLOT_COLUMNS if slots else STAGED_COLUMNS)),
        *_field(merged.rows.cell, "i8"),
        *_field(merged.rows.minute * 60_000_000 - PG_EPOCH_US, "i8"),
        *_arrays(merged.rows),
        *(_field(merged.partial, "i8") if merged.partial is not None else []),
        *_field(seen, "i8"),
        *_arrays(batch.rows),
        *(_field(batch.partial, "i8") if batch.partial is not None else []),
    ]
    return SIGNATURE + byte_rows(len(seen), parts).tobytes() + TRAILER


def _arrays(rows: RollupColumns) -> list[Part]:
    return [
        *_array(rows.n, "i4"),
        *_array(rows.sums, "f8"),
        *_array(rows.sums_sq, "f8"),
        *_array(rows.mins, "f4"),
        *_array(rows.maxs, "f4"),
        *_array(rows.vehicles, "i8"),
    ]


def stored_readings(
    ts: np.ndarray,
    codes: np.ndarray,
    lat: np.ndarray,
    lng: np.ndarray,
    cell: np.ndarray,
    speed_kmh: np.ndarray,
    heading_deg: np.ndarray,
    values: np.ndarray,
    devices: list[str],
    vehicles: list[str],
) -> bytes:
    """Rows of sensor_readings itself (ingest_store.READING_COLUMNS), for a COPY straight
    into it: each row's device is `devices[code]`, on `vehicles[code]`. Rows differ in
    width (the ids' lengths; a speed or heading absent is NULL), so they are built by
    shape and ordered by (shape, device, time): a stable order, so two workers writing
    the same readings take their locks in the same order."""
    ids = [
        _length(len(d := device.encode())) + d + _length(len(v := vehicle.encode())) + v
        for device, vehicle in zip(devices, vehicles, strict=True)
    ]
    id_len = np.array([len(i) for i in ids], dtype=np.int64)[codes]
    has_speed = ~np.isnan(speed_kmh)
    has_heading = ~np.isnan(heading_deg)
    shape = (id_len * 2 + has_speed) * 2 + has_heading
    order = np.lexsort((ts, codes, shape))
    shape = shape[order]
    starts = [0, *(np.flatnonzero(shape[1:] != shape[:-1]) + 1).tolist(), len(order)]
    chunks = [SIGNATURE]
    for start, end in itertools.pairwise(starts):
        rows = order[start:end]
        first = rows[0]
        chunks.append(
            byte_rows(
                len(rows),
                [
                    struct.pack(">h", 9),
                    *_field(ts[rows] - PG_EPOCH_US, "i8"),
                    np.array(ids, dtype=f"S{id_len[first]}")[codes[rows]],
                    *_field(lat[rows], "f8"),
                    *_field(lng[rows], "f8"),
                    *_field(cell[rows], "i8"),
                    *(_field(speed_kmh[rows], "f4") if has_speed[first] else [NULL]),
                    *(_field(heading_deg[rows], "f4") if has_heading[first] else [NULL]),
                    *_values(values[rows]),
                ],
            ).tobytes()
        )
    chunks.append(TRAILER)
    return b"".join(chunks)
