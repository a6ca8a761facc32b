"""Views derived from the sensor data: exposure along a route, crowds, a safety index."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import strawberry
from h3.api import basic_int as h3

from hub.core.context import Info
from hub.core.errors import BadUserInput
from resolvers.sensors import derived, queries, scopes
from resolvers.sensors.state import SensorsState
from schema.sensors.queries import cells_at, utc, window_cells
from schema.sensors.types import (
    AreaInput,
    CrowdCell,
    PointInput,
    RouteExposure,
    SafetyCell,
    SafetyFactor,
    cell_polygon,
    route_segment,
)

READ = [[scopes.READ.name]]
INGEST = [[scopes.INGEST.name]]
MAX_PAGE = 1000


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
        points = tuple((p.lat, p.lng) for p in path)
        return await exposure_along(info, points, at, metric, window_minutes)

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
        cells, start, end = await window_cells(info, area, from_, to)
        k = info.context.state(SensorsState).k_anonymity
        density = await cells_at(info, cells, "crowd_density", start, end, resolution)
        pedestrians = await cells_at(info, cells, "pedestrian_count", start, end, resolution)
        return [
            CrowdCell(
                cell=h3.int_to_str(cell),
                boundary=cell_polygon(cell),
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
        cells, start, end = await window_cells(info, area, from_, to)
        k = info.context.state(SensorsState).k_anonymity
        by_factor = {
            f.name: await cells_at(info, cells, f.metric, start, end, resolution)
            for f in derived.FACTORS
            if f.metric
        }
        night = derived.night_share(start, end)
        return [
            SafetyCell(
                cell=h3.int_to_str(score.cell),
                boundary=cell_polygon(score.cell),
                index=score.index,
                complete=score.complete,
                factors=[
                    SafetyFactor(
                        name=f.factor.name,
                        metric=f.factor.metric,
                        value=f.value,
                        weight=f.factor.weight,
                        contribution=f.contribution,
                        explanation=f.factor.explanation,
                    )
                    for f in score.factors
                ],
            )
            for score in derived.safety_scores(by_factor, night, k)
        ]


async def exposure_along(
    info: Info,
    points: tuple[tuple[float, float], ...],
    at: datetime,
    metric: str = "pm2_5",
    window_minutes: int = 60,
) -> RouteExposure:
    """A metric along a path of (lat, lng) points in the `window_minutes` before `at`,
    shared by every domain that shows air along a way (a walk to school, a journey's
    walking legs); answers are cached with the sensors' other aggregates."""
    if not 5 <= window_minutes <= 24 * 60:
        raise BadUserInput("windowMinutes must be 5 to 1440", argument="windowMinutes")
    m = queries.metric(metric)
    end = utc(at)
    start, end = queries.bucket_bounds(end - timedelta(minutes=window_minutes), end)
    k = info.context.state(SensorsState).k_anonymity
    result = await info.context.state(SensorsState).aggregates.get(
        ("exposure", points, m.id, start, end, k),
        lambda: derived.exposure(
            info.context.db, info.context.state(SensorsState).rollups, points, m, start, end, k
        ),
    )
    segments = [route_segment(s) for s in result.segments]
    worst_index = result.segments.index(result.worst) if result.worst else None
    return RouteExposure(
        metric=m.name,
        unit=m.unit,
        segments=segments,
        average=result.average,
        worst=segments[worst_index] if worst_index is not None else None,
        coverage=round(result.coverage, 4),
    )
