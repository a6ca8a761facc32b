"""The adapter: an area's stations (MsrstnInfoInqireSvc) and their latest hour
(ArpltnInforInqireSvc getMsrstnAcctoRltmMesureDnsty), through the hub's resilience layer."""

from __future__ import annotations

import asyncio
import time
from functools import partial

from adapters.errors import UpstreamRejected
from adapters.kinds import StationMeasurement
from adapters.resilience import Upstream
from ieum_airkorea import parse
from ieum_airkorea.settings import AirKoreaSettings

STATIONS = "/MsrstnInfoInqireSvc/getMsrstnList"
MEASUREMENTS = "/ArpltnInforInqireSvc/getMsrstnAcctoRltmMesureDnsty"


class AirKorea:
    def __init__(self, settings: AirKoreaSettings) -> None:
        self.settings = settings
        self.upstream = Upstream(parse.UPSTREAM, settings.base_url, settings.policy())
        self._stations: list[parse.Station] = []
        self._stations_until = 0.0

    async def health(self) -> None:
        """The key is accepted and the configured area has stations."""
        if not await self._fetch_stations():
            raise UpstreamRejected(
                parse.UPSTREAM, f"no station's address starts with {self.settings.area!r}"
            )

    async def measurements(self) -> list[StationMeasurement]:
        if time.monotonic() >= self._stations_until:
            self._stations = await self._fetch_stations()
            self._stations_until = time.monotonic() + self.settings.stations_ttl_seconds
        latest = await asyncio.gather(*(self._latest(station) for station in self._stations))
        return [found for found in latest if found is not None]

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def _fetch_stations(self) -> list[parse.Station]:
        found = await self.upstream.get(
            STATIONS, parse.stations, params=self._params(addr=self.settings.area, numOfRows=100)
        )
        return [station for station in found if station.address.startswith(self.settings.area)]

    async def _latest(self, station: parse.Station) -> StationMeasurement | None:
        return await self.upstream.get(
            MEASUREMENTS,
            partial(parse.latest, station),
            params=self._params(stationName=station.name, dataTerm="DAILY", ver="1.3"),
        )

    def _params(self, **extra: str | int) -> dict[str, str | int]:
        return {
            "serviceKey": self.settings.service_key.get_secret_value(),
            "returnType": "json",
            "numOfRows": 1,
            "pageNo": 1,
            **extra,
        }
