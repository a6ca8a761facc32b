"""GraphQL types of the sensors domain, and the conversions from resolver results."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from functools import lru_cache

import strawberry
from h3.api import basic_int as h3
from strawberry.scalars import JSON

from auth import audit
from hub.core.context import Info
from resolvers.sensors import derived, devices, queries, scopes
from resolvers.sensors.message import Reading

READ = [[scopes.READ.name]]
PRECISE = [[scopes.PRECISE.name]]
INGEST = [[scopes.INGEST.name]]


@strawberry.type(description="A quantity the sensor units measure.")
class Metric:
    name: str
    unit: str
    min: float = strawberry.field(description="Lowest valid value; lower values are rejected.")
    max: float = strawberry.field(description="Highest valid value.")
    description: str
    description_ko: str


@strawberry.type(description="A sensor unit on a vehicle, registered by its partner.")
class SensorDevice:
    device_id: str
    vehicle_id: str
    description: str
    created_at: datetime
    disabled: bool


@strawberry.enum(description="Width of the time buckets of a series.")
class Bucket(Enum):
    MINUTE = "MINUTE"
    FIVE_MINUTES = "FIVE_MINUTES"
    HOUR = "HOUR"
    DAY = "DAY"


@strawberry.input(description="A bounding box in WGS 84 degrees.")
class BBoxInput:
    south: float
    west: float
    north: float
    east: float


@strawberry.enum(description="환경부 대기질 등급: the Ministry of Environment's fine-dust grade.")
class AirGrade(Enum):
    GOOD = strawberry.enum_value("좋음", description="좋음: PM10 0–30, PM2.5 0–15 µg/m³.")
    MODERATE = strawberry.enum_value("보통", description="보통: PM10 31–80, PM2.5 16–35 µg/m³.")
    BAD = strawberry.enum_value("나쁨", description="나쁨: PM10 81–150, PM2.5 36–75 µg/m³.")
    VERY_BAD = strawberry.enum_value(
        "매우나쁨", description="매우나쁨: PM10 151 and above, PM2.5 76 and above µg/m³."
    )


def air_grade(metric_name: str, value: float) -> AirGrade:
    return AirGrade(queries.grade(metric_name, value))


@strawberry.input(description="Exactly one of: a district, a bounding box, or H3 cells.")
class AreaInput:
    district: str | None = strawberry.UNSET
    bbox: BBoxInput | None = strawberry.UNSET
    cells: list[str] | None = strawberry.UNSET


@strawberry.type(description="Statistics of one metric over a set of readings.")
class Aggregate:
    count: int = strawberry.field(description="Readings behind the values.")
    mean: float
    min: float
    max: float
    stddev: float


@strawberry.type
class SeriesPoint:
    bucket: datetime = strawberry.field(description="Start of the bucket.")
    value: Aggregate | None = strawberry.field(
        description="Null when fewer vehicles than the privacy threshold contributed."
    )


@strawberry.type
class HeatCell:
    cell: str = strawberry.field(description="H3 cell index.")
    boundary: JSON = strawberry.field(description="The cell as a GeoJSON Polygon.")
    value: Aggregate


@strawberry.type
class Position:
    lat: float
    lng: float
    precise: bool = strawberry.field(
        description="False: the centre of an H3 cell, not where the reading was taken."
    )


@strawberry.type
class MetricValue:
    metric: str
    value: float


# Where a vehicle was and which vehicle it was are personal data (a taxi's driver): the
# schema gates them with sensors:precise, so a gateway sees it too, and each read is
# audited. Everyone else gets the reading's H3 cell and its centre.

CELL_CENTRE = "The centre of the reading's H3 cell (resolution 9), for every reader."
EXACT_POSITION = "Where the reading was taken. Scope sensors:precise; the read is audited."
VEHICLE_ID = "The vehicle that took the reading. Scope sensors:precise; the read is audited."


async def exact_position_of(root: SensorReading | LiveReading, info: Info) -> Position | None:
    await _audit_vehicle(info, root.vehicle, "exact_position")
    return Position(lat=root.lat, lng=root.lng, precise=True)


async def vehicle_id_of(root: SensorReading | LiveReading, info: Info) -> str | None:
    await _audit_vehicle(info, root.vehicle, "vehicle_id")
    return root.vehicle


async def _audit_vehicle(info: Info, vehicle: str, field: str) -> None:
    """Before the value leaves; a page's reads of one vehicle are one row."""
    await audit.read(
        info,
        action="sensor_reading.read",
        subject_type="vehicle",
        subjects=[vehicle],
        fields=[field],
    )


@strawberry.type(description="A stored reading of one sensor unit.")
class SensorReading:
    vehicle: strawberry.Private[str]
    lat: strawberry.Private[float]
    lng: strawberry.Private[float]
    ts: datetime
    cell: str = strawberry.field(description="H3 cell (resolution 9) of the reading.")
    position: Position = strawberry.field(description=CELL_CENTRE)
    exact_position: Position | None = strawberry.federation.field(
        resolver=exact_position_of, requires_scopes=PRECISE, description=EXACT_POSITION
    )
    vehicle_id: str | None = strawberry.federation.field(
        resolver=vehicle_id_of, requires_scopes=PRECISE, description=VEHICLE_ID
    )
    speed_kmh: float | None
    heading_deg: float | None
    values: list[MetricValue]


@strawberry.input(description="A point in WGS 84 degrees.")
class PointInput:
    lat: float
    lng: float


@strawberry.type
class RouteSegment:
    start: Position
    end: Position
    length_m: float
    cells: list[str] = strawberry.field(description="H3 cells the segment passes through.")
    value: Aggregate | None = strawberry.field(
        description="The metric over those cells; null without (enough) data."
    )


@strawberry.type(description="A metric along a path: per segment, on average, and worst.")
class RouteExposure:
    metric: str
    unit: str
    segments: list[RouteSegment]
    average: float | None = strawberry.field(
        description="Length-weighted mean over the segments that have a value."
    )
    worst: RouteSegment | None
    coverage: float = strawberry.field(description="Share of the path length with a value.")


@strawberry.type
class CrowdCell:
    cell: str
    boundary: JSON
    density: float = strawberry.field(description="Mean pedestrians per m².")
    pedestrians: float | None = strawberry.field(description="Mean pedestrians in view.")
    readings: int


@strawberry.type(description="One named part of the safety index, with its inputs.")
class SafetyFactor:
    name: str
    metric: str | None
    value: float | None = strawberry.field(description="The measured mean; null: no data.")
    weight: float
    contribution: float = strawberry.field(description="Points taken off 100.")
    explanation: str


@strawberry.type(description="Safety index of a cell: 100 minus the factor contributions.")
class SafetyCell:
    cell: str
    boundary: JSON
    index: float
    complete: bool = strawberry.field(description="False when some factor had no data.")
    factors: list[SafetyFactor]


@strawberry.input
class RegisterSensorDeviceInput:
    device_id: str
    vehicle_id: str
    description: str = ""


def measured(value: float) -> float:
    """A value to the precision it is stored in (float32, about 7 significant digits):
    19.2 as sent, not the 19.200000762939453 its widening to a double would show."""
    return float(f"{value:.7g}")


def aggregate_of(stats: queries.Stats) -> Aggregate:
    return Aggregate(
        count=stats.count,
        mean=measured(stats.mean),
        min=measured(stats.low),
        max=measured(stats.high),
        stddev=measured(stats.stddev),
    )


def device_of(device: devices.Device) -> SensorDevice:
    return SensorDevice(
        device_id=device.device_id,
        vehicle_id=device.vehicle_id,
        description=device.description,
        created_at=device.created_at,
        disabled=device.disabled_at is not None,
    )


def point_of(lat: float, lng: float) -> Position:
    return Position(lat=lat, lng=lng, precise=True)


def route_segment(segment: derived.Segment) -> RouteSegment:
    return RouteSegment(
        start=point_of(*segment.start),
        end=point_of(*segment.end),
        length_m=round(segment.length_m, 1),
        cells=[h3.int_to_str(c) for c in segment.cells],
        value=aggregate_of(segment.stats) if segment.stats else None,
    )


def cell_centre(cell: int) -> Position:
    lat, lng = h3.cell_to_latlng(cell)
    return Position(lat=lat, lng=lng, precise=False)


def reading_of(r: queries.RawReading | Reading, names: list[str]) -> SensorReading:
    return SensorReading(
        vehicle=r.vehicle_id,
        lat=r.lat,
        lng=r.lng,
        ts=r.ts,
        cell=h3.int_to_str(r.cell),
        position=cell_centre(r.cell),
        speed_kmh=None if r.speed_kmh is None else measured(r.speed_kmh),
        heading_deg=None if r.heading_deg is None else measured(r.heading_deg),
        values=[
            MetricValue(metric=name, value=measured(value))
            for name, value in zip(names, r.values, strict=True)
            if value == value  # not NaN
        ],
    )


@lru_cache(maxsize=65_536)
def cell_polygon(cell: int) -> JSON:
    """GeoJSON of a cell; cells repeat across requests (never mutate the result)."""
    ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(cell)]
    return JSON({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})


@strawberry.type(description="A reading as it is stored, with the metrics asked for.")
class LiveReading:
    vehicle: strawberry.Private[str]
    lat: strawberry.Private[float]
    lng: strawberry.Private[float]
    ts: datetime
    cell: str = strawberry.field(description="H3 cell (resolution 9) of the reading.")
    position: Position = strawberry.field(description=CELL_CENTRE)
    exact_position: Position | None = strawberry.federation.field(
        resolver=exact_position_of, requires_scopes=PRECISE, description=EXACT_POSITION
    )
    vehicle_id: str | None = strawberry.federation.field(
        resolver=vehicle_id_of, requires_scopes=PRECISE, description=VEHICLE_ID
    )
    values: list[MetricValue] = strawberry.field(description="The metrics asked for.")


@strawberry.type(description="A reading above the threshold in the area.")
class MetricAlert:
    ts: datetime
    cell: str
    metric: str
    value: float
    threshold: float
