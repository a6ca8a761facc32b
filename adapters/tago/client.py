"""The adapter: trains between two stations on a day (getStrtpntAlocFndTrainInfo) and
TAGO's reference lists, through the hub's resilience layer. Every call is a read, so
retried. A list is read page by page until a page comes back shorter than the page size
the service echoes (it may serve fewer rows than asked): totalCount is not trusted. When
the publication asked answers code 12 (retired, or not yet published), the other one is
asked, and kept for the calls that follow."""

from __future__ import annotations

from datetime import date
from typing import Any

from adapters.errors import MalformedResponse, UpstreamRejected
from adapters.kinds import ScheduledTrain
from adapters.resilience import Upstream
from adapters.tago import parse, wire
from adapters.tago.reference import TagoCity, TagoStation, VehicleKind
from adapters.tago.settings import TagoSettings
from adapters.tago.wire import Api, Operation

MAX_PAGES = 100  # a bound for a service that never ends its list


class Tago:
    def __init__(self, settings: TagoSettings) -> None:
        self.settings = settings
        self.api = settings.api  # the publication that answered last
        self.upstream = Upstream(wire.UPSTREAM, settings.base_url, settings.policy())

    async def health(self) -> None:
        """The key is accepted and the service lists at least one city."""
        first = await self._page(Operation.CITIES, {}, number=1, rows=1)
        if not first.items:
            raise UpstreamRejected(wire.UPSTREAM, "the service lists no city")

    async def trains(self, dep_station: str, arr_station: str, day: date) -> list[ScheduledTrain]:
        params = {
            "depPlaceId": dep_station,
            "arrPlaceId": arr_station,
            "depPlandTime": day.strftime(wire.DAY),
        }
        found: dict[tuple[str, Any], ScheduledTrain] = {}
        for item in await self._all(Operation.TRAINS, params):
            train = parse.scheduled(item, dep_station, arr_station)
            if train.departs_at.date() != day:
                raise MalformedResponse(
                    wire.UPSTREAM, f"train {train.train_no} leaves on {train.departs_at:%Y-%m-%d}"
                )
            found[train.train_no, train.departs_at] = train  # a row seen on two pages
        return sorted(found.values(), key=lambda train: (train.departs_at, train.train_no.zfill(8)))

    async def cities(self) -> list[TagoCity]:
        found = {
            city.city_code: city for city in map(parse.city, await self._all(Operation.CITIES))
        }
        return sorted(found.values(), key=lambda city: city.city_code)

    async def stations(self, city_code: str) -> list[TagoStation]:
        rows = await self._all(Operation.STATIONS, {"cityCode": city_code})
        found = {
            station.code: station for station in (parse.station(row, city_code) for row in rows)
        }
        return sorted(found.values(), key=lambda station: station.code)

    async def vehicle_kinds(self) -> list[VehicleKind]:
        kinds = {
            kind.kind_id: kind
            for kind in map(parse.vehicle_kind, await self._all(Operation.VEHICLE_KINDS))
        }
        return sorted(kinds.values(), key=lambda kind: kind.kind_id)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def _all(self, operation: Operation, params: dict[str, str] | None = None) -> parse.Items:
        rows: parse.Items = []
        previous: parse.Items | None = None
        size = self.settings.page_rows
        for number in range(1, MAX_PAGES + 1):
            page = await self._page(operation, params or {}, number, size)
            if page.items and page.items == previous:
                raise MalformedResponse(
                    wire.UPSTREAM, f"page {number} of {operation.value} repeats page {number - 1}"
                )
            rows += page.items
            if len(page.items) < min(size, page.rows or size):
                return rows
            previous = page.items
        raise MalformedResponse(
            wire.UPSTREAM, f"{operation.value} did not end within {MAX_PAGES} pages"
        )

    async def _page(
        self, operation: Operation, params: dict[str, str], number: int, rows: int
    ) -> parse.Page:
        try:
            return await self._ask(self.api, operation, params, number, rows)
        except parse.ServiceRetired as retired:
            other = self.api.other
            try:
                answer = await self._ask(other, operation, params, number, rows)
            except parse.ServiceRetired:
                raise UpstreamRejected(
                    wire.UPSTREAM,
                    f"both {wire.path(self.api, operation)} and {wire.path(other, operation)} "
                    "answer NO_OPENAPI_SERVICE_ERROR (code 12): is the key registered for "
                    "TrainInfoService?",
                ) from retired
            self.api = other
            return answer

    async def _ask(
        self, api: Api, operation: Operation, params: dict[str, str], number: int, rows: int
    ) -> parse.Page:
        query: dict[str, Any] = {
            "serviceKey": self.settings.service_key.get_secret_value(),
            "_type": "json",
            "pageNo": number,
            "numOfRows": rows,
            **params,
        }
        return await self.upstream.get(
            wire.path(api, operation), parse.page, params=query, refuse=parse.refusal
        )
