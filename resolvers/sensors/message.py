"""One device message (`ieum.telemetry.v1`): parse, validate, normalise.

The format is documented in docs/sensors.md. Everything a message can get wrong has a
reject reason of its own, so the dead-letter topic says exactly what to fix.

Two parsers, one contract. `parse_strict` is the reference: plain Python over orjson,
with a reason and a detail for every fault. `parse` first decodes with msgspec into
typed structs whose types, lengths and metric ranges are checked in C (5x faster: it is
the hot loop of ingest); whatever msgspec refuses is handed to `parse_strict`, which
either says why it is bad or accepts what msgspec was stricter about. So the fast path
can only ever accept messages the reference accepts, with the same values.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeGuard

import msgspec
import orjson
from h3.api import basic_int as h3

from resolvers.sensors.catalog import by_name, metrics

SCHEMA = "ieum.telemetry.v1"
H3_RESOLUTION = 9  # ~0.1 km² cells: a few street blocks
MAX_MESSAGE_BYTES = 64 * 1024
# South Korea with its islands (Jeju, Ulleung, Dokdo, Marado), in WGS 84.
KOREA = (33.0, 124.5, 38.7, 132.0)  # lat_min, lng_min, lat_max, lng_max
MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(days=7)

NAN = float("nan")
_PACK = struct.Struct(f"<{len(metrics())}f")


class Rejected(Exception):
    """A message that does not enter the data; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True, frozen=True)
class Reading:
    device_id: str
    vehicle_id: str
    ts: datetime
    lat: float
    lng: float
    cell: int
    speed_kmh: float | None
    heading_deg: float | None
    values: tuple[float, ...]  # catalog order; NaN where the message had no value
    packed: bytes  # the values as stored: little-endian float32, packed once at parse


def pack(values: tuple[float, ...]) -> bytes:
    return _PACK.pack(*values)


def unpack(packed: bytes) -> tuple[float, ...]:
    return _PACK.unpack(packed)


def _metrics_struct() -> type[msgspec.Struct]:
    """One optional field per catalog metric, in catalog order, range-checked; NaN when
    absent. `astuple` then gives the values in the order they are packed."""
    fields = [(m.name, Annotated[float, msgspec.Meta(ge=m.min, le=m.max)], NAN) for m in metrics()]
    return msgspec.defstruct("Metrics", fields, forbid_unknown_fields=True)


_Metrics = _metrics_struct()
_Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _Position(msgspec.Struct):
    lat: float
    lng: float


class _Message(msgspec.Struct):
    schema: Literal["ieum.telemetry.v1"]
    device_id: _Identifier
    vehicle_id: _Identifier
    ts: str
    position: _Position
    # A struct built at import from the metric catalog: mypy cannot see a type made at
    # run time; msgspec validates against it all the same.
    metrics: _Metrics  # type: ignore[valid-type]
    speed_kmh: Annotated[float, msgspec.Meta(ge=0, le=250)] | None = None
    heading_deg: Annotated[float, msgspec.Meta(ge=0, le=360)] | None = None


_DECODER = msgspec.json.Decoder(_Message)
DECODER = _DECODER  # columns.py reads batches of JSON messages with it
PACK = _PACK
_NO_VALUES = struct.pack(f"<{len(metrics())}f", *([NAN] * len(metrics())))


def parse(raw: bytes, now: datetime | None = None) -> Reading:
    """A valid reading, or Rejected with the reason (see the module docstring); a message
    in the compact binary encoding (message_binary.py) is read by its own reference."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Rejected("too_large", f"{len(raw)} bytes; at most {MAX_MESSAGE_BYTES}")
    if raw[:2] == b"\xffI":  # the compact binary encoding (never the start of JSON)
        from resolvers.sensors.message_binary import parse_binary  # it imports this module

        return parse_binary(raw, now)
    try:
        message = _DECODER.decode(raw)
    except msgspec.DecodeError:
        return parse_strict(raw, now)
    values = msgspec.structs.astuple(message.metrics)
    packed = _PACK.pack(*values)
    if packed == _NO_VALUES:  # an empty `metrics`: the reference says why
        return parse_strict(raw, now)
    lat, lng = position({"lat": message.position.lat, "lng": message.position.lng})
    return Reading(
        device_id=message.device_id,
        vehicle_id=message.vehicle_id,
        ts=timestamp(message.ts, now or datetime.now(UTC)),
        lat=lat,
        lng=lng,
        cell=h3.latlng_to_cell(lat, lng, H3_RESOLUTION),
        speed_kmh=message.speed_kmh,
        heading_deg=message.heading_deg,
        values=values,
        packed=packed,
    )


def parse_strict(raw: bytes, now: datetime | None = None) -> Reading:
    """The reference parser: slower, and says exactly what is wrong."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Rejected("too_large", f"{len(raw)} bytes; at most {MAX_MESSAGE_BYTES}")
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected("malformed_json", str(exc)) from None
    if not isinstance(message, dict):
        raise Rejected("schema", "the message must be a JSON object")
    if message.get("schema") != SCHEMA:
        raise Rejected("schema", f"'schema' must be {SCHEMA!r}, got {message.get('schema')!r}")
    device_id = _identifier(message, "device_id")
    vehicle_id = _identifier(message, "vehicle_id")
    ts = timestamp(message.get("ts"), now or datetime.now(UTC))
    lat, lng = position(message.get("position"))
    values = _values(message.get("metrics"))
    return Reading(
        device_id=device_id,
        vehicle_id=vehicle_id,
        ts=ts,
        lat=lat,
        lng=lng,
        cell=h3.latlng_to_cell(lat, lng, H3_RESOLUTION),
        speed_kmh=_optional_number(message, "speed_kmh", 0, 250),
        heading_deg=_optional_number(message, "heading_deg", 0, 360),
        values=values,
        packed=_PACK.pack(*values),
    )


def _identifier(message: dict[str, object], field: str) -> str:
    value = message.get(field)
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise Rejected("schema", f"{field!r} must be a string of 1 to 64 characters")
    return value


def timestamp(value: object, now: datetime) -> datetime:
    if not isinstance(value, str):
        raise Rejected("schema", "'ts' must be an ISO 8601 timestamp string")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected("schema", f"'ts' is not ISO 8601: {value!r}") from None
    if ts.tzinfo is None:
        raise Rejected("schema", f"'ts' needs a time zone (e.g. Z or +09:00): {value!r}")
    ts = ts.astimezone(UTC)
    if ts > now + MAX_FUTURE:
        raise Rejected("future_timestamp", f"{value} is more than {MAX_FUTURE} ahead")
    if ts < now - MAX_AGE:
        raise Rejected("stale_timestamp", f"{value} is older than {MAX_AGE.days} days")
    return ts


def position(value: object) -> tuple[float, float]:
    if not isinstance(value, dict):
        raise Rejected("schema", "'position' must be an object with 'lat' and 'lng'")
    lat, lng = value.get("lat"), value.get("lng")
    if not _is_number(lat) or not _is_number(lng):
        raise Rejected("schema", "'position.lat' and 'position.lng' must be numbers")
    lat_min, lng_min, lat_max, lng_max = KOREA
    if not (lat_min <= lat <= lat_max and lng_min <= lng <= lng_max):
        raise Rejected("outside_korea", f"position {lat}, {lng} is outside Korea")
    return float(lat), float(lng)


def _optional_number(
    message: dict[str, object], field: str, low: float, high: float
) -> float | None:
    value = message.get(field)
    if value is None:
        return None
    if not _is_number(value):
        raise Rejected("schema", f"{field!r} must be a number")
    if not low <= value <= high:
        raise Rejected("out_of_range", f"{field} {value} is outside {low}..{high}")
    return float(value)


def _values(value: object) -> tuple[float, ...]:
    # The hot loop of ingest (50 values a message): plain type checks, no helper calls.
    # JSON has no NaN or infinity, and a huge integer fails the range check.
    if not isinstance(value, dict) or not value:
        raise Rejected("schema", "'metrics' must be a non-empty object of metric name to number")
    catalog = by_name()
    values = [NAN] * len(catalog)
    for name, number in value.items():
        metric = catalog.get(name)
        if metric is None:
            raise Rejected("unknown_metric", f"{name!r} is not in the metric catalog")
        kind = type(number)
        if kind is not float and kind is not int:
            raise Rejected("schema", f"metric {name!r} must be a number, got {number!r}")
        if not metric.min <= number <= metric.max:
            raise Rejected(
                "out_of_range",
                f"{name} {number} {metric.unit} is outside {metric.min}..{metric.max}",
            )
        values[metric.id] = number
    return tuple(values)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
