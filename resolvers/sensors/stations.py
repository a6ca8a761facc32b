"""Fixed public air-quality stations: their hourly values, stored and read back.

Station adapters (kind `air_quality_stations`, e.g. AirKorea's) hand over what their
network publishes; the sensors domain stores it here and serves it per station. Stations
are places run by the state, not people: k-anonymity, which protects taxis' routes, does
not apply, so a district with a single station shows that station's values.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
import orjson
from h3.api import basic_int as h3

from resolvers.sensors.message import H3_RESOLUTION

POLLUTANTS = ("pm10", "pm25", "o3", "no2", "co", "so2", "khai")


class Measured(Protocol):
    """What a station adapter reports per station (adapters.kinds.StationMeasurement)."""

    @property
    def station(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lng(self) -> float: ...
    @property
    def measured_at(self) -> datetime: ...
    @property
    def pm10(self) -> float | None: ...
    @property
    def pm25(self) -> float | None: ...
    @property
    def o3(self) -> float | None: ...
    @property
    def no2(self) -> float | None: ...
    @property
    def co(self) -> float | None: ...
    @property
    def so2(self) -> float | None: ...
    @property
    def khai(self) -> float | None: ...
    @property
    def flags(self) -> tuple[tuple[str, str], ...]: ...


@dataclass(frozen=True)
class StationReading:
    station_id: str
    adapter: str
    name: str
    address: str
    lat: float
    lng: float
    cell: int
    measured_at: datetime
    values: dict[str, float | None]
    flags: dict[str, str]


async def record(pool: asyncpg.Pool, adapter: str, measured: Sequence[Measured]) -> int:
    """Store the stations and their values (a value the network revised replaces the old
    one); the number of station-hours written."""
    if not measured:
        return 0
    stations = {
        m.station: (
            f"{adapter}:{m.station}",
            adapter,
            m.station,
            m.address,
            m.lat,
            m.lng,
            h3.latlng_to_cell(m.lat, m.lng, H3_RESOLUTION),
        )
        for m in measured
    }
    readings = [
        (
            f"{adapter}:{m.station}",
            m.measured_at,
            *(getattr(m, name) for name in POLLUTANTS),
            orjson.dumps(dict(m.flags)).decode(),
        )
        for m in measured
    ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO sensor_stations (station_id, adapter, name, address, lat, lng, cell)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (station_id) DO UPDATE SET"
            " name = EXCLUDED.name, address = EXCLUDED.address, lat = EXCLUDED.lat,"
            " lng = EXCLUDED.lng, cell = EXCLUDED.cell, updated_at = now()",
            list(stations.values()),
        )
        await conn.executemany(
            "INSERT INTO sensor_station_readings"
            " (station_id, measured_at, pm10, pm25, o3, no2, co, so2, khai, flags)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)"
            " ON CONFLICT (station_id, measured_at) DO UPDATE SET pm10 = EXCLUDED.pm10,"
            " pm25 = EXCLUDED.pm25, o3 = EXCLUDED.o3, no2 = EXCLUDED.no2, co = EXCLUDED.co,"
            " so2 = EXCLUDED.so2, khai = EXCLUDED.khai, flags = EXCLUDED.flags",
            readings,
        )
    return len(readings)


async def latest_in(
    pool: asyncpg.Pool, cells: Collection[int], since: datetime
) -> list[StationReading]:
    """The latest values, measured after `since`, of each station inside the cells."""
    rows = await pool.fetch(
        "SELECT DISTINCT ON (s.station_id) s.station_id, s.adapter, s.name, s.address,"
        " s.lat, s.lng, s.cell, r.measured_at, r.pm10, r.pm25, r.o3, r.no2, r.co, r.so2,"
        " r.khai, r.flags"
        " FROM sensor_stations s JOIN sensor_station_readings r USING (station_id)"
        " WHERE s.cell = ANY($1::bigint[]) AND r.measured_at > $2"
        " ORDER BY s.station_id, r.measured_at DESC",
        list(cells),
        since,
    )
    return [
        StationReading(
            station_id=row["station_id"],
            adapter=row["adapter"],
            name=row["name"],
            address=row["address"],
            lat=row["lat"],
            lng=row["lng"],
            cell=row["cell"],
            measured_at=row["measured_at"],
            values={name: row[name] for name in POLLUTANTS},
            flags=row["flags"],
        )
        for row in rows
    ]
