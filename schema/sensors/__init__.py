"""sensors: taxi-roof sensor data as metrics, series, heat maps, raw readings and live feeds.

This module is the domain's manifest; the parts live beside it (GraphQL) and in
`resolvers/sensors/` (logic, SQL, ingest), `adapters/mqtt/` and `adapters/sandbox/`.
"""

from __future__ import annotations

from strawberry.tools import merge_types

from hub.core.domain import Domain
from resolvers.sensors import scopes
from resolvers.sensors.settings import SensorsSettings
from resolvers.sensors.state import lifespan
from schema.sensors.air_quality import District
from schema.sensors.derived import SensorServicesQuery
from schema.sensors.devices import SensorsMutation
from schema.sensors.live import SensorsSubscription
from schema.sensors.queries import SensorsQuery
from schema.sensors.runtime import COMMANDS, INGEST_WORKER, demo
from schema.sensors.station_poller import POLL_COMMAND, POLLER
from schema.sensors.stations import StationsQuery

domain = Domain(
    name="sensors",
    description="taxi-roof sensor readings, aggregates and live feeds",
    requires=("platform",),
    query=merge_types("SensorsQueries", (SensorsQuery, SensorServicesQuery, StationsQuery)),
    mutation=SensorsMutation,
    subscription=SensorsSubscription,
    types=(District,),  # extends platform's District with airQuality
    settings=SensorsSettings,
    scopes=scopes.ALL,
    lifespan=lifespan,
    workers=(INGEST_WORKER, POLLER),
    commands=(*COMMANDS, POLL_COMMAND),
    demo=demo,
    # asyncpg prepares every statement. After five runs PostgreSQL may switch to a generic
    # plan, which cannot see how large an array argument is or how narrow a time range is;
    # for the aggregates over arrays of cells it picked plans ten times slower.
    database_settings={"plan_cache_mode": "force_custom_plan"},
)
