"""PostgreSQL's binary COPY format, built from numpy columns in one pass.

asyncpg's `copy_records_to_table` wants a tuple per row and a Python object per value
and encodes them one by one: for a batch of readings (54 values each) and its rollups (5
arrays of 54 each) that was most of the worker's time. Every row here has the same
width (the staging tables hold no text: a reading names its device by its number in the
batch), so a batch is one numpy structured array whose bytes are the COPY payload.
The format: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format).
"""

from __future__ import annotations

import numpy as np

from resolvers.sensors.catalog import metrics

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # no flags, no header extension
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01, PostgreSQL's zero time
WIDTH = len(metrics())
VEHICLE_SLOTS = 16  # rollup.MAX_VEHICLES; an unused slot holds NO_VEHICLE
NO_VEHICLE = -1  # never a vehicle hash (they are 63-bit, so not negative)

# Element type oids of PostgreSQL's built-in types.
_OIDS = {">i4": 23, ">i8": 20, ">f4": 700, ">f8": 701}


def _field(name: str, kind: str) -> list[tuple[object, ...]]:
    return [(f"{name}_len", ">i4"), (name, kind)]


def _array(name: str, kind: str, size: int) -> list[tuple[object, ...]]:
    return [
        (f"{name}_len", ">i4"),
        (f"{name}_head", ">i4", (5,)),  # ndim, has-nulls flag, element oid, size, lower bound
        (name, [("len", ">i4"), ("value", kind)], (size,)),
    ]


READINGS = np.dtype(
    [
        ("fields", ">i2"),
        *_field("ts", ">i8"),
        *_field("device_no", ">i4"),
        *_field("lat", ">f8"),
        *_field("lng", ">f8"),
        *_field("cell", ">i8"),
        *_field("speed_kmh", ">f4"),
        *_field("heading_deg", ">f4"),
        ("metrics_len", ">i4"),
        ("metrics", "<f4", (WIDTH,)),  # bytea: the values as stored, little-endian float32
    ]
)
# The staging table these rows are copied into, in this order.
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

_ROLLUP_ARRAYS = (
    ("n", ">i4", WIDTH),
    ("sum", ">f8", WIDTH),
    ("sum_sq", ">f8", WIDTH),
    ("min", ">f4", WIDTH),
    ("max", ">f4", WIDTH),
    ("vehicles", ">i8", VEHICLE_SLOTS),
)
ROLLUPS = np.dtype(
    [
        ("fields", ">i2"),
        *_field("cell", ">i8"),
        *_field("bucket", ">i8"),
        *[field for name, kind, size in _ROLLUP_ARRAYS for field in _array(name, kind, size)],
    ]
)
ROLLUPS_COLUMNS = ("cell", "bucket", *(name for name, _, _ in _ROLLUP_ARRAYS))


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
    rows = np.empty(len(ts), dtype=READINGS)
    rows["fields"] = len(READINGS_COLUMNS)
    for name, size in (
        ("ts", 8),
        ("device_no", 4),
        ("lat", 8),
        ("lng", 8),
        ("cell", 8),
        ("speed_kmh", 4),
        ("heading_deg", 4),
    ):
        rows[f"{name}_len"] = size
    rows["ts"] = ts - PG_EPOCH_US
    rows["device_no"] = device_no
    rows["lat"] = lat
    rows["lng"] = lng
    rows["cell"] = cell
    rows["speed_kmh"] = speed_kmh
    rows["heading_deg"] = heading_deg
    rows["metrics_len"] = WIDTH * 4
    rows["metrics"] = values
    return SIGNATURE + rows.tobytes() + TRAILER


def rollups(
    cell: np.ndarray,
    minute: np.ndarray,
    n: np.ndarray,
    sums: np.ndarray,
    sums_sq: np.ndarray,
    mins: np.ndarray,
    maxs: np.ndarray,
    vehicles: np.ndarray,
) -> bytes:
    """Staging rows of rollups: `minute` counts minutes since the Unix epoch; the arrays
    are (rows, WIDTH), `vehicles` (rows, VEHICLE_SLOTS) padded with NO_VEHICLE."""
    rows = np.empty(len(cell), dtype=ROLLUPS)
    rows["fields"] = len(ROLLUPS_COLUMNS)
    rows["cell_len"] = 8
    rows["cell"] = cell
    rows["bucket_len"] = 8
    rows["bucket"] = minute * 60_000_000 - PG_EPOCH_US
    for (name, kind, size), data in zip(
        _ROLLUP_ARRAYS, (n, sums, sums_sq, mins, maxs, vehicles), strict=True
    ):
        item = np.dtype(kind).itemsize
        rows[f"{name}_len"] = 20 + size * (4 + item)
        rows[f"{name}_head"] = (1, 0, _OIDS[kind], size, 1)
        rows[name]["len"] = item
        rows[name]["value"] = data
    return SIGNATURE + rows.tobytes() + TRAILER
