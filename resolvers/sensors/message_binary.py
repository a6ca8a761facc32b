"""The compact binary encoding of `ieum.telemetry.v1` (docs/sensors.md), version 1.

A JSON message with every metric is about 1.2 kB and costs the worker more to read than
everything else it does with it; this layout is about 300 bytes and a batch of them is
read as columns with numpy (resolvers/sensors/columns.py), with no Python object per
value. It says the same as the JSON format, value for value, and is checked by the same
rules with the same reject reasons, plus `malformed_binary` for a layout that does not
add up. JSON stays the default; a message is binary when it starts with MAGIC (0xFF is
never the first byte of a UTF-8 JSON text), and the version byte lets the layout change
without guessing.

Little-endian, HEADER_SIZE bytes of fixed fields, then the variable ones:

    0   1  0xFF
    1   1  'I' (0x49)
    2   1  version: 1
    3   1  D: device_id length in bytes (1..64, ASCII)
    4   1  V: vehicle_id length in bytes (1..255, UTF-8, at most 64 characters)
    5   1  M: number of metric values (1..catalog size), for catalog ids 0..M-1
    6   8  ts: int64 microseconds since 1970-01-01T00:00:00Z
    14  8  lat: float64 (WGS 84)
    22  8  lng: float64
    30  4  speed_kmh: float32, NaN when not measured
    34  4  heading_deg: float32, NaN when not measured
    38  D  device_id
    ..  V  vehicle_id
    ..  4M metric values: float32 each, catalog order, NaN where the unit has no value
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta

import numpy as np
from h3.api import basic_int as h3

from resolvers.sensors.catalog import metrics
from resolvers.sensors.message import (
    H3_RESOLUTION,
    MAX_MESSAGE_BYTES,
    NAN,
    Reading,
    Rejected,
    pack,
    position,
    timestamp,
)

MAGIC = b"\xffI"
VERSION = 1
HEADER_SIZE = 38
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_HEAD = struct.Struct("<2sBBBBqddff")
# The same fixed fields for numpy, to read a whole batch of headers at once.
HEADER = np.dtype(
    [
        ("magic", "S2"),
        ("version", "u1"),
        ("device_len", "u1"),
        ("vehicle_len", "u1"),
        ("metric_count", "u1"),
        ("ts", "<i8"),
        ("lat", "<f8"),
        ("lng", "<f8"),
        ("speed_kmh", "<f4"),
        ("heading_deg", "<f4"),
    ]
)
assert HEADER.itemsize == HEADER_SIZE == _HEAD.size


def is_binary(raw: bytes) -> bool:
    return raw[:2] == MAGIC


def encode(
    device_id: str,
    vehicle_id: str,
    ts: datetime,
    lat: float,
    lng: float,
    values: dict[str, float],
    speed_kmh: float | None = None,
    heading_deg: float | None = None,
) -> bytes:
    """One message in this encoding (for devices, the simulator and tests): `values` by
    metric name, as in the JSON format."""
    catalog = {m.name: m.id for m in metrics()}
    count = 1 + max((catalog[name] for name in values), default=-1)
    row = [NAN] * count
    for name, value in values.items():
        row[catalog[name]] = value
    device, vehicle = device_id.encode("ascii"), vehicle_id.encode()
    head = _HEAD.pack(
        MAGIC,
        VERSION,
        len(device),
        len(vehicle),
        count,
        (ts - EPOCH) // MICROSECOND,
        lat,
        lng,
        NAN if speed_kmh is None else speed_kmh,
        NAN if heading_deg is None else heading_deg,
    )
    return head + device + vehicle + struct.pack(f"<{count}f", *row)


def parse_binary(raw: bytes, now: datetime | None = None) -> Reading:
    """The reference reader of this encoding: one message, and exactly what is wrong with
    it. columns.py reads batches faster and hands it every message it refuses."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Rejected("too_large", f"{len(raw)} bytes; at most {MAX_MESSAGE_BYTES}")
    if len(raw) < HEADER_SIZE:
        raise Rejected("malformed_binary", f"{len(raw)} bytes; the header alone is {HEADER_SIZE}")
    magic, version, d, v, m, micros, lat, lng, speed, heading = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise Rejected("malformed_binary", "it does not start with the bytes FF 49")
    if version != VERSION:
        raise Rejected("malformed_binary", f"version {version}; this hub reads version 1")
    if len(raw) != HEADER_SIZE + d + v + 4 * m:
        raise Rejected(
            "malformed_binary",
            f"{len(raw)} bytes; its lengths (device {d}, vehicle {v}, {m} metrics) make"
            f" {HEADER_SIZE + d + v + 4 * m}",
        )
    device_id = _text(raw[HEADER_SIZE : HEADER_SIZE + d], "device_id", "ascii")
    vehicle_id = _text(raw[HEADER_SIZE + d : HEADER_SIZE + d + v], "vehicle_id", "utf-8")
    try:
        ts = timestamp((EPOCH + micros * MICROSECOND).isoformat(), now or datetime.now(UTC))
    except OverflowError:
        raise Rejected("schema", f"'ts' {micros} µs is not a time") from None
    if not (math.isfinite(lat) and math.isfinite(lng)):
        raise Rejected("schema", "'position.lat' and 'position.lng' must be numbers")
    lat, lng = position({"lat": lat, "lng": lng})
    values = _values(struct.unpack_from(f"<{m}f", raw, HEADER_SIZE + d + v))
    return Reading(
        device_id=device_id,
        vehicle_id=vehicle_id,
        ts=ts,
        lat=lat,
        lng=lng,
        cell=h3.latlng_to_cell(lat, lng, H3_RESOLUTION),
        speed_kmh=_optional(speed, "speed_kmh", 0, 250),
        heading_deg=_optional(heading, "heading_deg", 0, 360),
        values=values,
        packed=pack(values),
    )


def _text(raw: bytes, field: str, encoding: str) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise Rejected("malformed_binary", f"{field!r} is not {encoding.upper()}") from None
    if not 1 <= len(text) <= 64:
        raise Rejected("schema", f"{field!r} must be a string of 1 to 64 characters")
    return text


def _optional(value: float, field: str, low: float, high: float) -> float | None:
    if math.isnan(value):
        return None
    if not low <= value <= high:
        raise Rejected("out_of_range", f"{field} {value} is outside {low}..{high}")
    return value


def _values(sent: tuple[float, ...]) -> tuple[float, ...]:
    catalog = metrics()
    if len(sent) > len(catalog):
        raise Rejected(
            "unknown_metric", f"{len(sent)} metric values; the catalog has {len(catalog)}"
        )
    if all(math.isnan(x) for x in sent):
        raise Rejected("schema", "'metrics' must hold at least one value (not NaN)")
    for metric, number in zip(catalog, sent, strict=False):
        if not math.isnan(number) and not metric.min <= number <= metric.max:
            raise Rejected(
                "out_of_range",
                f"{metric.name} {number} {metric.unit} is outside {metric.min}..{metric.max}",
            )
    # Every NaN as the one NaN the JSON path stores (a device's may carry a payload).
    return (*(NAN if math.isnan(x) else x for x in sent), *[NAN] * (len(catalog) - len(sent)))
