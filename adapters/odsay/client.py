"""The adapter: walk, bus and subway paths between two points from searchPubTransPath,
through the hub's resilience layer. A search is a read, so retried."""

from __future__ import annotations

import math

from adapters.errors import UpstreamRejected
from adapters.kinds import LocalPath
from adapters.odsay import parse, wire
from adapters.odsay.settings import OdsaySettings
from adapters.resilience import Upstream

# health(): from 서울역 to 서울시청, 1.3 km apart, with a bus and a subway between them.
HEALTH_FROM = parse.Point(37.55465, 126.97059)
HEALTH_TO = parse.Point(37.56650, 126.97800)


class Odsay:
    def __init__(self, settings: OdsaySettings) -> None:
        self.settings = settings
        self.upstream = Upstream(wire.UPSTREAM, settings.base_url, settings.policy())

    async def health(self) -> None:
        """The key is accepted and the service finds a way across central Seoul."""
        found = await self._search(HEALTH_FROM, HEALTH_TO)
        if not found:
            raise UpstreamRejected(wire.UPSTREAM, "no path from 서울역 to 서울시청")

    async def paths(
        self,
        from_lat: float,
        from_lng: float,
        to_lat: float,
        to_lng: float,
        *,
        limit: int | None = None,
    ) -> list[LocalPath]:
        if not all(math.isfinite(value) for value in (from_lat, from_lng, to_lat, to_lng)):
            raise ValueError("coordinates must be finite numbers")
        if limit is not None and limit < 1:
            raise ValueError("limit is at least 1")
        origin, destination = parse.Point(from_lat, from_lng), parse.Point(to_lat, to_lng)
        return await self._search(origin, destination, limit)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def _search(
        self, origin: parse.Point, destination: parse.Point, limit: int | None = None
    ) -> list[LocalPath]:
        key = self.settings.api_key.get_secret_value()
        params = wire.query(origin.lat, origin.lng, destination.lat, destination.lng, key)
        return await self.upstream.get(
            wire.SEARCH,
            lambda response: parse.paths(response, origin, destination, limit),
            params=params,
            refuse=parse.refusal,
        )
