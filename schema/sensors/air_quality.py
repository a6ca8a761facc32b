"""Fine dust per district, for the District entity."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import strawberry

from hub.core.context import Info
from hub.core.errors import BadUserInput
from resolvers.sensors import queries, rollup_cache, scopes
from resolvers.sensors.state import SensorsState
from schema.sensors.types import AirGrade, air_grade

READ = [[scopes.READ.name]]
INGEST = [[scopes.INGEST.name]]
MAX_PAGE = 1000


@strawberry.type(description="A fine-dust value with its grade.")
class DustLevel:
    value: float = strawberry.field(description="µg/m³, mean of the last hour.")
    grade: AirGrade
    readings: int


@strawberry.type(description="Fine dust in a district over the last hour, from taxi sensors.")
class AirQuality:
    pm25: DustLevel | None = strawberry.field(description="PM2.5; null without enough data.")
    pm10: DustLevel | None = strawberry.field(description="PM10; null without enough data.")
    since: datetime
    until: datetime


async def district_air_quality(info: Info, code: str) -> AirQuality | None:
    """The latest hour of PM2.5 and PM10 over a district's cells (open data, k-anonymous)."""
    k = info.context.state(SensorsState).k_anonymity
    return await info.context.state(SensorsState).aggregates.get(
        ("air_quality", code, k),
        lambda: _air_quality(info.context.db, info.context.state(SensorsState).rollups, code, k),
    )


async def _air_quality(
    pool: asyncpg.Pool, store: rollup_cache.RollupCache, code: str, k: int
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
                grade=air_grade(name, stats.mean),
                readings=stats.count,
            )
    if levels["pm2_5"] is None and levels["pm10"] is None:
        return None
    return AirQuality(pm25=levels["pm2_5"], pm10=levels["pm10"], since=since, until=until)


@strawberry.federation.type(keys=["code"])
class District:
    """The platform's District as the sensors subgraph extends it: its key and the fields
    sensors adds. A build has one District (schema/builder.py), so in the whole hub these
    resolvers are handed platform's District: they read only the key, `code`."""

    code: str = strawberry.field(description="5-digit administrative code, e.g. '11110'.")

    @strawberry.field(
        description="Fine dust over the last hour from taxi sensors (open data); null "
        "without enough readings."
    )
    async def air_quality(self, info: Info) -> AirQuality | None:
        return await district_air_quality(info, self.code)

    @classmethod
    def resolve_reference(cls, code: str) -> District:
        if not isinstance(code, str):  # a representation is any JSON (_Any)
            raise BadUserInput(
                'a District\'s code is a string, e.g. "11110"', argument="representations"
            )
        # No query: platform decides which codes exist; an unknown code has no cells, so
        # its airQuality is null.
        return cls(code=code)
