"""Fixed public air-quality stations in an area, each with its latest hourly values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import strawberry

from hub.core.context import Info
from resolvers.sensors import stations
from schema.sensors.queries import area_cells
from schema.sensors.types import AirGrade, AreaInput, Position, air_grade

# AirKorea publishes each hour's values 15-30 minutes after it ends; older than this, a
# station is left out rather than shown as current.
FRESH_FOR = timedelta(hours=3)


@strawberry.type(description="A fine-dust or gas value of one station, with its grade.")
class StationValue:
    pollutant: str = strawberry.field(description="pm10, pm25 (µg/m³), o3, no2, co, so2 (ppm)")
    value: float | None = strawberry.field(
        description="Null when the station did not measure it or set it aside (see flag)."
    )
    grade: AirGrade | None = strawberry.field(description="For pm10 and pm25.")
    flag: str | None = strawberry.field(description="Why the network set the value aside.")


@strawberry.type(description="A fixed public measuring station (open data, shown per station).")
class AirStation:
    id: str = strawberry.field(description="'<adapter>:<station name>'.")
    name: str
    address: str
    position: Position
    source: str = strawberry.field(description="The adapter that reports it, e.g. airkorea.")
    measured_at: datetime = strawberry.field(description="End of the hour the values average.")
    khai: float | None = strawberry.field(description="통합대기환경지수 (CAI).")
    values: list[StationValue]


def station_of(reading: stations.StationReading) -> AirStation:
    values = []
    for pollutant in ("pm10", "pm25", "o3", "no2", "co", "so2"):
        value = reading.values[pollutant]
        metric = {"pm10": "pm10", "pm25": "pm2_5"}.get(pollutant)
        values.append(
            StationValue(
                pollutant=pollutant,
                value=value,
                grade=air_grade(metric, value) if metric and value is not None else None,
                flag=reading.flags.get(pollutant),
            )
        )
    return AirStation(
        id=reading.station_id,
        name=reading.name,
        address=reading.address,
        position=Position(lat=reading.lat, lng=reading.lng, precise=True),
        source=reading.adapter,
        measured_at=reading.measured_at,
        khai=reading.values["khai"],
        values=values,
    )


@strawberry.type
class StationsQuery:
    @strawberry.field(
        description="Fixed public air-quality stations in the area with their latest values "
        "(open data; a single station is shown, as it is no person's data)."
    )
    async def air_stations(self, info: Info, area: AreaInput) -> list[AirStation]:
        cells = await area_cells(info, area)
        since = datetime.now(UTC) - FRESH_FOR
        found = await stations.latest_in(info.context.db, cells, since)
        return [station_of(reading) for reading in sorted(found, key=lambda r: r.name)]
