"""What each kind of adapter promises: the calls the hub makes on a built adapter.

Every adapter, whatever its kind, is a `Connection`: it can check its upstream and close.
A kind adds the calls its consumer needs; the contract kit (`adapters.testing`) checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Kind(StrEnum):
    DEVICE_STREAM = "device_stream"  # devices' messages into the telemetry topic
    REFERENCE_DATA = "reference_data"  # slow-changing lists (codes, stations, stops)
    UPSTREAM = "upstream"  # a service a domain calls on a client's behalf
    AIR_QUALITY_STATIONS = "air_quality_stations"  # fixed public measuring stations


@runtime_checkable
class Connection(Protocol):
    async def health(self) -> None:
        """Return if the configured upstream answers correctly; raise UpstreamError if not."""

    async def aclose(self) -> None:
        """Release connections; the adapter is not used again."""


POLLUTANTS = ("pm10", "pm25", "o3", "no2", "co", "so2")


@dataclass(frozen=True, slots=True)
class StationMeasurement:
    """One fixed station's latest hourly values. Public data, shown per station.

    A value is None when the station did not measure it or flagged it as unreliable
    (calibration, communication failure); `flags` says which and why.
    """

    station: str  # the network's station name, unique nationally (e.g. "도산대로")
    address: str
    lat: float
    lng: float
    measured_at: datetime  # timezone-aware UTC: the end of the hour the values average
    pm10: float | None  # µg/m³
    pm25: float | None  # µg/m³
    o3: float | None  # ppm
    no2: float | None  # ppm
    co: float | None  # ppm
    so2: float | None  # ppm
    khai: float | None  # the Korean comprehensive air-quality index
    flags: tuple[tuple[str, str], ...] = ()  # (pollutant, reason) for values set aside


@runtime_checkable
class AirQualityStations(Connection, Protocol):
    async def measurements(self) -> list[StationMeasurement]:
        """The latest measurement of every station in the area the adapter is set up for."""
        ...


# Protocol classes (for isinstance checks): mypy takes a protocol type as abstract.
PROTOCOLS: dict[Kind, type] = {
    Kind.DEVICE_STREAM: Connection,
    Kind.REFERENCE_DATA: Connection,
    Kind.UPSTREAM: Connection,
    Kind.AIR_QUALITY_STATIONS: AirQualityStations,
}
