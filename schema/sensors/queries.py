"""Sensor data by area and time: metrics, series, heat maps, raw readings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry
from h3.api import basic_int as h3

from hub.core.context import Info
from hub.core.errors import BadUserInput
from resolvers.platform import districts
from resolvers.sensors import catalog, devices, queries, scopes
from resolvers.sensors.devices import DEVICE_ID
from resolvers.sensors.message import H3_RESOLUTION
from resolvers.sensors.state import SensorsState
from schema.cost import FieldCost
from schema.pagination import Connection, aware_time, check_first, page_of, read_cursor
from schema.sensors.types import (
    AreaInput,
    Bucket,
    HeatCell,
    Metric,
    SensorDevice,
    SensorReading,
    SeriesPoint,
    aggregate_of,
    cell_polygon,
    device_of,
    reading_of,
)

READ = [[scopes.READ.name]]
INGEST = [[scopes.INGEST.name]]
MAX_PAGE = 1000


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


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise BadUserInput("times need a time zone, e.g. 2026-11-24T09:00:00Z")
    return value.astimezone(UTC)


@strawberry.type
class SensorsQuery:
    @strawberry.field(
        description="The metric catalog (open data).",
        metadata=FieldCost(size=len(catalog.metrics())).metadata(),
    )
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
        return [device_of(d) for d in await devices.list_owned(info.context.db, owner)]

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
        start, end, width = utc(from_), utc(to), queries.BUCKETS[bucket.value]
        queries.check_range(start, end, width)
        cells = await area_cells(info, area)
        k = info.context.state(SensorsState).k_anonymity
        start, end = queries.bucket_bounds(start, end)
        points = await info.context.state(SensorsState).aggregates.get(
            ("series", tuple(cells), m.id, start, end, width, k),
            lambda: queries.series(
                info.context.db,
                info.context.state(SensorsState).rollups,
                cells,
                m,
                start,
                end,
                width,
                k,
            ),
        )
        return [
            SeriesPoint(bucket=b, value=aggregate_of(s) if s.vehicles >= k else None)
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
        cells, start, end = await window_cells(info, area, from_, to)
        k = info.context.state(SensorsState).k_anonymity
        per_cell = await cells_at(info, cells, m.name, start, end, resolution)
        return [
            HeatCell(cell=h3.int_to_str(cell), boundary=cell_polygon(cell), value=aggregate_of(s))
            for cell, (s, _) in sorted(per_cell.items())
            if s.vehicles >= k
        ]

    @strawberry.federation.field(
        requires_scopes=READ,
        description="Raw readings, oldest first (by time, then unit), 1 to 1,000 a page; "
        "exactPosition and vehicleId need sensors:precise.",
    )
    async def sensor_readings(
        self,
        info: Info,
        area: AreaInput,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        first: int = 100,
        after: str | None = None,
    ) -> Connection[SensorReading] | None:
        check_first(first, MAX_PAGE)
        cells, start, end = await window_cells(info, area, from_, to)
        rows = await queries.readings(
            info.context.db, cells, start, end, first, reading_after(after)
        )
        names = [m.name for m in catalog.metrics()]
        return page_of(
            rows,
            first,
            node=lambda r: reading_of(r, names),
            key=lambda r: (r.ts.isoformat(), r.device_id),
            after=after,
        )


def reading_after(after: str | None) -> tuple[datetime, str] | None:
    """The (time, unit) a page of readings ended with, from its endCursor."""
    return read_cursor(after, aware_time, _device_id)


def _device_id(value: object) -> str:
    if not (isinstance(value, str) and DEVICE_ID.fullmatch(value)):
        raise ValueError(value)
    return value


async def window_cells(
    info: Info, area: AreaInput, from_: datetime, to: datetime
) -> tuple[list[int], datetime, datetime]:
    start, end = utc(from_), utc(to)
    queries.check_range(start, end)
    return await area_cells(info, area), start, end


async def cells_at(
    info: Info, cells: list[int], metric: str, start: datetime, end: datetime, resolution: int
) -> dict[int, tuple[queries.Stats, queries.Vehicles]]:
    """A metric per cell of the given H3 resolution (5 to 9) over the window."""
    if not 5 <= resolution <= H3_RESOLUTION:
        raise BadUserInput(f"resolution must be 5 to {H3_RESOLUTION}", argument="resolution")
    k = info.context.state(SensorsState).k_anonymity
    m = queries.metric(metric)
    start, end = queries.bucket_bounds(start, end)
    return await info.context.state(SensorsState).aggregates.get(
        ("cells", tuple(cells), m.id, start, end, resolution, k),
        lambda: queries.per_cell(
            info.context.db,
            info.context.state(SensorsState).rollups,
            cells,
            m,
            start,
            end,
            k,
            resolution,
        ),
    )
