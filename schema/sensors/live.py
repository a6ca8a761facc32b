"""Live readings and alerts over WebSocket: stored readings first, then live ones."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta

import strawberry
from h3.api import basic_int as h3
from strawberry.federation.schema_directives import RequiresScopes

from hub.core.context import Info
from resolvers.sensors import queries, scopes
from resolvers.sensors.catalog import Metric
from resolvers.sensors.message import Reading
from resolvers.sensors.state import SensorsState
from schema.sensors.queries import area_cells, utc
from schema.sensors.types import (
    AreaInput,
    LiveReading,
    MetricAlert,
    MetricValue,
    cell_centre,
    measured,
)

READ = [[scopes.READ.name]]
REPLAY_PAGE = 1000


async def _stored_then_live(
    info: Info, cells: frozenset[int], since: datetime | None
) -> AsyncGenerator[queries.RawReading | Reading, None]:
    """Readings stored after `since`, then live ones, each once: subscribe first, replay
    from storage, then skip live readings the replay already gave."""
    live = info.context.state(SensorsState).live
    async with live.subscribe(cells) as subscriber:
        last: dict[str, datetime] = {}
        if since is not None:
            start, cursor = utc(since) + timedelta(microseconds=1), None  # strictly after
            while True:
                rows = await queries.readings(
                    info.context.db, sorted(cells), start, datetime.now(UTC), REPLAY_PAGE, cursor
                )
                for stored in rows[:REPLAY_PAGE]:
                    last[stored.device_id] = stored.ts
                    yield stored
                if len(rows) <= REPLAY_PAGE:
                    break
                cursor = (rows[REPLAY_PAGE - 1].ts, rows[REPLAY_PAGE - 1].device_id)
        # No token check per reading: TokenWatch (schema/extensions.py) ends the
        # subscription once its token expires or is revoked, checking it each second and
        # at its expiry; a check here cost each of 10,000 subscribers a token
        # verification per reading.
        async for reading in subscriber.readings():
            if reading.ts > last.get(reading.device_id, reading.ts - timedelta(seconds=1)):
                yield reading


def live_reading(r: queries.RawReading | Reading, wanted: tuple[Metric, ...]) -> LiveReading:
    return LiveReading(
        vehicle=r.vehicle_id,
        lat=r.lat,
        lng=r.lng,
        ts=r.ts,
        cell=h3.int_to_str(r.cell),
        position=cell_centre(r.cell),
        values=[
            MetricValue(metric=m.name, value=measured(r.values[m.id]))
            for m in wanted
            if r.values[m.id] == r.values[m.id]
        ],
    )


class SharedReadings:
    """The LiveReading of a reading with some metrics, made once for every subscriber
    that asks for the same metrics (a reading goes to hundreds of them): the last
    `size` made, by the reading (kept here, so its id is not reused meanwhile) and the
    metrics. GraphQL only reads it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._made: OrderedDict[tuple[int, tuple[int, ...]], tuple[object, LiveReading]] = (
            OrderedDict()
        )

    def get(
        self, r: queries.RawReading | Reading, wanted: tuple[Metric, ...], ids: tuple[int, ...]
    ) -> LiveReading:
        """`ids`: the ids of the `wanted` metrics (a cheaper key than the metrics)."""
        key = (id(r), ids)
        found = self._made.get(key)
        if found is not None and found[0] is r:
            return found[1]
        made = live_reading(r, wanted)
        self._made[key] = (r, made)
        if len(self._made) > self.size:
            self._made.popitem(last=False)
        return made


SHARED = SharedReadings(4096)


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
        wanted = tuple(queries.metric(name) for name in metrics)
        ids = tuple(m.id for m in wanted)
        cells = frozenset(await area_cells(info, area))
        async for r in _stored_then_live(info, cells, since):
            yield SHARED.get(r, wanted, ids)

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
                    ts=r.ts,
                    cell=h3.int_to_str(r.cell),
                    metric=m.name,
                    value=measured(value),
                    threshold=above,
                )
