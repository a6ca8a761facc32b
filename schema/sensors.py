"""sensors: taxi-roof sensor data as metrics, series, heat maps and raw readings."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import Annotated

import asyncpg
import strawberry
from h3.api import basic_int as h3
from strawberry.federation.schema_directives import RequiresScopes
from strawberry.scalars import JSON
from strawberry.tools import merge_types

from auth.scopes import Scope
from hub.core.context import Info
from hub.core.domain import Domain
from hub.core.errors import BadUserInput, Unauthenticated
from resolvers.platform import districts
from resolvers.sensors import catalog, devices, queries, segments, services
from resolvers.sensors.message import H3_RESOLUTION, Reading

READ = [[Scope.SENSORS_READ.value]]
INGEST = [[Scope.SENSORS_INGEST.value]]
MAX_PAGE = 1000


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
        description="False: the centre of the H3 cell (sensors:precise gives exact positions)."
    )


@strawberry.type
class MetricValue:
    metric: str
    value: float


@strawberry.type
class SensorReading:
    ts: datetime
    cell: str
    position: Position
    vehicle_id: str | None = strawberry.field(description="Only with sensors:precise.")
    speed_kmh: float | None
    heading_deg: float | None
    values: list[MetricValue]


@strawberry.type
class SensorReadingPage:
    readings: list[SensorReading]
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")
    has_next_page: bool


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


def _aggregate(stats: queries.Stats) -> Aggregate:
    return Aggregate(
        count=stats.count, mean=stats.mean, min=stats.low, max=stats.high, stddev=stats.stddev
    )


def _device(device: devices.Device) -> SensorDevice:
    return SensorDevice(
        device_id=device.device_id,
        vehicle_id=device.vehicle_id,
        description=device.description,
        created_at=device.created_at,
        disabled=device.disabled_at is not None,
    )


async def area_cells(info: Info, area: AreaInput) -> list[int]:
    given = [name for name in ("district", "bbox", "cells") if getattr(area, name)]
    if len(given) != 1:
        raise BadUserInput("give exactly one of area.district, area.bbox, area.cells")
    if area.district:
        code = districts.check_code(area.district)
        cells = await queries.district_cells(info.context.db, code)
        if cells is None:
            raise BadUserInput(f"no district has code {code}", argument="area")
        return cells
    if area.bbox:
        box = area.bbox
        return queries.checked(queries.bbox_cells(box.south, box.west, box.north, box.east))
    return queries.checked(queries.given_cells(area.cells or []))


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise BadUserInput("times need a time zone, e.g. 2026-11-24T09:00:00Z")
    return value.astimezone(UTC)


@strawberry.type
class SensorsQuery:
    @strawberry.field(description="The metric catalog (open data).")
    def metrics(self) -> list[Metric]:
        return [
            Metric(
                name=m.name,
                unit=m.unit,
                min=m.min,
                max=m.max,
                description=m.description_en,
                description_ko=m.description_ko,
            )
            for m in catalog.metrics()
        ]

    @strawberry.federation.field(
        requires_scopes=INGEST, description="The sensor units your client registered."
    )
    async def sensor_devices(self, info: Info) -> list[SensorDevice] | None:
        owner = info.context.caller.client_id or ""
        return [_device(d) for d in await devices.list_owned(info.context.db, owner)]

    @strawberry.federation.field(
        requires_scopes=READ, description="A metric over an area, bucketed in time."
    )
    async def sensor_series(
        self,
        info: Info,
        area: AreaInput,
        metric: str,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        bucket: Bucket = Bucket.HOUR,
    ) -> list[SeriesPoint] | None:
        m = queries.metric(metric)
        start, end, width = _utc(from_), _utc(to), queries.BUCKETS[bucket.value]
        queries.check_range(start, end, width)
        cells = await area_cells(info, area)
        k = info.context.settings.k_anonymity
        start, end = queries.bucket_bounds(start, end)
        points = await info.context.aggregates.get(
            ("series", tuple(cells), m.id, start, end, width, k),
            lambda: queries.series(
                info.context.db, info.context.rollups, cells, m, start, end, width, k
            ),
        )
        return [
            SeriesPoint(bucket=b, value=_aggregate(s) if s.vehicles >= k else None)
            for b, s in points
        ]

    @strawberry.federation.field(
        requires_scopes=READ,
        description="Per-cell values of a metric over a time window, for a map.",
    )
    async def sensor_heatmap(
        self,
        info: Info,
        area: AreaInput,
        metric: str,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        resolution: Annotated[
            int, strawberry.argument(description="H3 resolution of the cells, 5 to 9.")
        ] = 8,
    ) -> list[HeatCell] | None:
        m = queries.metric(metric)
        cells, start, end = await _window_cells(info, area, from_, to)
        k = info.context.settings.k_anonymity
        per_cell = await _cells_at(info, cells, m.name, start, end, resolution)
        return [
            HeatCell(cell=h3.int_to_str(cell), boundary=_cell_polygon(cell), value=_aggregate(s))
            for cell, (s, _) in sorted(per_cell.items())
            if s.vehicles >= k
        ]

    @strawberry.federation.field(
        requires_scopes=READ,
        description="Raw readings, oldest first; exact positions with sensors:precise.",
    )
    async def sensor_readings(
        self,
        info: Info,
        area: AreaInput,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        first: int = 100,
        after: str | None = None,
    ) -> SensorReadingPage | None:
        if not 1 <= first <= MAX_PAGE:
            raise BadUserInput(f"first must be 1 to {MAX_PAGE}", argument="first")
        cells, start, end = await _window_cells(info, area, from_, to)
        cursor = queries.decode_cursor(after) if after else None
        page, more = await queries.readings(info.context.db, cells, start, end, first, cursor)
        precise = Scope.SENSORS_PRECISE.value in info.context.caller.scopes
        names = [m.name for m in catalog.metrics()]
        return SensorReadingPage(
            readings=[_reading(r, precise, names) for r in page],
            end_cursor=queries.encode_cursor(page[-1].ts, page[-1].device_id) if page else None,
            has_next_page=more,
        )


def _point(lat: float, lng: float) -> Position:
    return Position(lat=lat, lng=lng, precise=True)


def _segment(segment: services.Segment) -> RouteSegment:
    return RouteSegment(
        start=_point(*segment.start),
        end=_point(*segment.end),
        length_m=round(segment.length_m, 1),
        cells=[h3.int_to_str(c) for c in segment.cells],
        value=_aggregate(segment.stats) if segment.stats else None,
    )


def _reading(r: queries.RawReading, precise: bool, names: list[str]) -> SensorReading:
    if precise:
        position = Position(lat=r.lat, lng=r.lng, precise=True)
    else:
        lat, lng = h3.cell_to_latlng(r.cell)
        position = Position(lat=lat, lng=lng, precise=False)
    return SensorReading(
        ts=r.ts,
        cell=h3.int_to_str(r.cell),
        position=position,
        vehicle_id=r.vehicle_id if precise else None,
        speed_kmh=r.speed_kmh,
        heading_deg=r.heading_deg,
        values=[
            MetricValue(metric=name, value=value)
            for name, value in zip(names, r.values, strict=True)
            if value == value  # not NaN
        ],
    )


async def _window_cells(
    info: Info, area: AreaInput, from_: datetime, to: datetime
) -> tuple[list[int], datetime, datetime]:
    start, end = _utc(from_), _utc(to)
    queries.check_range(start, end)
    return await area_cells(info, area), start, end


async def _cells_at(
    info: Info, cells: list[int], metric: str, start: datetime, end: datetime, resolution: int
) -> dict[int, tuple[queries.Stats, queries.Vehicles]]:
    """A metric per cell of the given H3 resolution (5 to 9) over the window."""
    if not 5 <= resolution <= H3_RESOLUTION:
        raise BadUserInput(f"resolution must be 5 to {H3_RESOLUTION}", argument="resolution")
    k = info.context.settings.k_anonymity
    m = queries.metric(metric)
    start, end = queries.bucket_bounds(start, end)
    return await info.context.aggregates.get(
        ("cells", tuple(cells), m.id, start, end, resolution, k),
        lambda: queries.per_cell(
            info.context.db, info.context.rollups, cells, m, start, end, k, resolution
        ),
    )


@strawberry.type
class SensorServicesQuery:
    @strawberry.federation.field(
        requires_scopes=READ,
        description="A metric along a path (e.g. fine dust on a walk to school).",
    )
    async def route_exposure(
        self,
        info: Info,
        path: list[PointInput],
        at: datetime,
        metric: str = "pm2_5",
        window_minutes: Annotated[
            int, strawberry.argument(description="Readings from this long before `at`.")
        ] = 60,
    ) -> RouteExposure | None:
        if not 5 <= window_minutes <= 24 * 60:
            raise BadUserInput("windowMinutes must be 5 to 1440", argument="windowMinutes")
        m = queries.metric(metric)
        end = _utc(at)
        points = tuple((p.lat, p.lng) for p in path)
        start, end = queries.bucket_bounds(end - timedelta(minutes=window_minutes), end)
        k = info.context.settings.k_anonymity
        result = await info.context.aggregates.get(
            ("exposure", points, m.id, start, end, k),
            lambda: services.exposure(
                info.context.db, info.context.rollups, points, m, start, end, k
            ),
        )
        segments = [_segment(s) for s in result.segments]
        worst_index = result.segments.index(result.worst) if result.worst else None
        return RouteExposure(
            metric=m.name,
            unit=m.unit,
            segments=segments,
            average=result.average,
            worst=segments[worst_index] if worst_index is not None else None,
            coverage=round(result.coverage, 4),
        )

    @strawberry.federation.field(
        requires_scopes=READ, description="Pedestrian density per cell over a time window."
    )
    async def crowd_density(
        self,
        info: Info,
        area: AreaInput,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        resolution: int = 9,
    ) -> list[CrowdCell] | None:
        cells, start, end = await _window_cells(info, area, from_, to)
        k = info.context.settings.k_anonymity
        density = await _cells_at(info, cells, "crowd_density", start, end, resolution)
        pedestrians = await _cells_at(info, cells, "pedestrian_count", start, end, resolution)
        return [
            CrowdCell(
                cell=h3.int_to_str(cell),
                boundary=_cell_polygon(cell),
                density=stats.mean,
                pedestrians=pedestrians[cell][0].mean if cell in pedestrians else None,
                readings=stats.count,
            )
            for cell, (stats, _) in sorted(density.items())
            if stats.vehicles >= k
        ]

    @strawberry.federation.field(
        requires_scopes=READ,
        description="Safety index per cell, with the contribution of each factor.",
    )
    async def safety_index(
        self,
        info: Info,
        area: AreaInput,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        resolution: int = 9,
    ) -> list[SafetyCell] | None:
        cells, start, end = await _window_cells(info, area, from_, to)
        k = info.context.settings.k_anonymity
        by_factor = {
            f.name: await _cells_at(info, cells, f.metric, start, end, resolution)
            for f in services.FACTORS
            if f.metric
        }
        night = services.night_share(start, end)
        seen = sorted({c for found in by_factor.values() for c in found})
        result = []
        for cell in seen:
            vehicles = queries.union([f[cell][1] for f in by_factor.values() if cell in f])
            if vehicles.floor < k:
                continue
            factors = []
            for factor in services.FACTORS:
                if factor.metric is None:
                    value: float | None = night
                else:
                    entry = by_factor[factor.name].get(cell)
                    value = entry[0].mean if entry else None
                factors.append(
                    SafetyFactor(
                        name=factor.name,
                        metric=factor.metric,
                        value=value,
                        weight=factor.weight,
                        contribution=services.contribution(factor, value)
                        if value is not None
                        else 0,
                        explanation=factor.explanation,
                    )
                )
            result.append(
                SafetyCell(
                    cell=h3.int_to_str(cell),
                    boundary=_cell_polygon(cell),
                    index=round(100 - sum(f.contribution for f in factors), 2),
                    complete=all(f.value is not None for f in factors),
                    factors=factors,
                )
            )
        return result


@lru_cache(maxsize=65_536)
def _cell_polygon(cell: int) -> JSON:
    """GeoJSON of a cell; cells repeat across requests (never mutate the result)."""
    ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(cell)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


@strawberry.type
class SensorsMutation:
    @strawberry.federation.field(
        requires_scopes=INGEST,
        description="Register a sensor unit on a vehicle, or move yours to another vehicle.",
    )
    async def register_sensor_device(
        self, info: Info, input: RegisterSensorDeviceInput
    ) -> SensorDevice | None:
        device = await devices.register(
            info.context.db,
            info.context.caller.client_id or "",
            input.device_id,
            input.vehicle_id,
            input.description,
        )
        return _device(device)

    @strawberry.federation.field(
        requires_scopes=INGEST, description="Stop accepting messages from one of your units."
    )
    async def disable_sensor_device(self, info: Info, device_id: str) -> SensorDevice | None:
        owner = info.context.caller.client_id or ""
        return _device(await devices.disable(info.context.db, owner, device_id))


@strawberry.type
class LiveReading:
    ts: datetime
    cell: str
    position: Position
    vehicle_id: str | None = strawberry.field(description="Only with sensors:precise.")
    values: list[MetricValue] = strawberry.field(description="The metrics asked for.")


@strawberry.type(description="A reading above the threshold in the area.")
class MetricAlert:
    ts: datetime
    cell: str
    metric: str
    value: float
    threshold: float


async def _stored_then_live(
    info: Info, cells: frozenset[int], since: datetime | None
) -> AsyncGenerator[queries.RawReading | Reading, None]:
    """Readings stored after `since`, then live ones, each once: subscribe first, replay
    from storage, then skip live readings the replay already gave."""
    live = info.context.connection.app.state.live
    async with live.subscribe(cells) as subscriber:
        last: dict[str, datetime] = {}
        if since is not None:
            start, cursor = _utc(since) + timedelta(microseconds=1), None  # strictly after
            while True:
                page, more = await queries.readings(
                    info.context.db, sorted(cells), start, datetime.now(UTC), 1000, cursor
                )
                for reading in page:
                    last[reading.device_id] = reading.ts
                    yield reading
                if not more:
                    break
                cursor = (page[-1].ts, page[-1].device_id)
        async for reading in subscriber.readings():
            info.context.recheck()  # a revoked or expired token ends the subscription
            if Scope.SENSORS_READ.value not in info.context.caller.scopes:
                raise Unauthenticated("the access token expired or was revoked")
            if reading.ts > last.get(reading.device_id, reading.ts - timedelta(seconds=1)):
                yield reading


@strawberry.type
class SensorsSubscription:
    @strawberry.subscription(
        directives=[RequiresScopes(scopes=READ)],
        description="Readings in an area as they are stored; `since` replays the ones "
        "stored after that time first, so a client that reconnects misses nothing.",
    )
    async def live_readings(
        self,
        info: Info,
        area: AreaInput,
        metrics: list[str],
        since: datetime | None = None,
    ) -> AsyncGenerator[LiveReading, None]:
        wanted = [queries.metric(name) for name in metrics]
        cells = frozenset(await area_cells(info, area))
        precise = Scope.SENSORS_PRECISE.value in info.context.caller.scopes
        async for r in _stored_then_live(info, cells, since):
            full = _reading(r, precise, [m.name for m in catalog.metrics()])  # type: ignore[arg-type]
            yield LiveReading(
                ts=full.ts,
                cell=full.cell,
                position=full.position,
                vehicle_id=full.vehicle_id,
                values=[
                    MetricValue(metric=m.name, value=r.values[m.id])
                    for m in wanted
                    if r.values[m.id] == r.values[m.id]
                ],
            )

    @strawberry.subscription(
        directives=[RequiresScopes(scopes=READ)],
        description="Each reading in the area whose metric is above the threshold.",
    )
    async def metric_alerts(
        self, info: Info, area: AreaInput, metric: str, above: float
    ) -> AsyncGenerator[MetricAlert, None]:
        m = queries.metric(metric)
        cells = frozenset(await area_cells(info, area))
        async for r in _stored_then_live(info, cells, None):
            value = r.values[m.id]
            if value == value and value > above:
                yield MetricAlert(
                    ts=r.ts, cell=h3.int_to_str(r.cell), metric=m.name, value=value, threshold=above
                )


domain = Domain(
    name="sensors",
    query=merge_types("SensorsQueries", (SensorsQuery, SensorServicesQuery)),
    mutation=SensorsMutation,
    subscription=SensorsSubscription,
)


@strawberry.type(description="A fine-dust value with its grade (좋음/보통/나쁨/매우나쁨).")
class DustLevel:
    value: float = strawberry.field(description="µg/m³, mean of the last hour.")
    grade: str = strawberry.field(
        description="환경부 grade: PM10 ≤30 좋음, ≤80 보통, ≤150 나쁨; PM2.5 ≤15, ≤35, ≤75."
    )
    readings: int


@strawberry.type(description="Fine dust in a district over the last hour, from taxi sensors.")
class AirQuality:
    pm25: DustLevel | None = strawberry.field(description="PM2.5; null without enough data.")
    pm10: DustLevel | None = strawberry.field(description="PM10; null without enough data.")
    since: datetime
    until: datetime


async def district_air_quality(info: Info, code: str) -> AirQuality | None:
    """The latest hour of PM2.5 and PM10 over a district's cells (open data, k-anonymous)."""
    k = info.context.settings.k_anonymity
    return await info.context.aggregates.get(
        ("air_quality", code, k),
        lambda: _air_quality(info.context.db, info.context.rollups, code, k),
    )


async def _air_quality(
    pool: asyncpg.Pool, store: segments.RollupStore, code: str, k: int
) -> AirQuality | None:
    cells = await queries.district_cells(pool, code)
    if cells is None:
        return None
    until = datetime.now(UTC)
    since = until - queries.AIR_QUALITY_WINDOW
    levels: dict[str, DustLevel | None] = {}
    for name in ("pm2_5", "pm10"):
        stats = await queries.window(pool, store, cells, queries.metric(name), since, until, k)
        if stats is None or stats.vehicles < k:
            levels[name] = None
        else:
            levels[name] = DustLevel(
                value=round(stats.mean, 1),
                grade=queries.grade(name, stats.mean),
                readings=stats.count,
            )
    if levels["pm2_5"] is None and levels["pm10"] is None:
        return None
    return AirQuality(pm25=levels["pm2_5"], pm10=levels["pm10"], since=since, until=until)
