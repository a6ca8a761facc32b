"""The adapter: the cities of the RFID volume-rate system and their daily volumes, per city
(getCityDateList) or per apartment complex (getCityAptDateList), through the hub's
resilience layer. Every call is a read, so retried; a list is read page by page until the
service answers a null or empty page."""

from __future__ import annotations

from typing import Any

from adapters.errors import MalformedResponse, UpstreamRejected
from adapters.kinds import RfidCity, RfidDailyVolume
from adapters.resilience import Upstream
from adapters.rfidwaste import parse, wire
from adapters.rfidwaste.settings import RfidWasteSettings

MAX_PAGES = 1000  # a bound for a service that never ends its list


class RfidWaste:
    def __init__(self, settings: RfidWasteSettings) -> None:
        self.settings = settings
        self.upstream = Upstream(wire.UPSTREAM, settings.base_url, settings.policy())

    async def health(self) -> None:
        """The key is accepted and the service lists at least one city."""
        first = await self._page(wire.CITIES, {}, number=1, rows=1)
        if not first:
            raise UpstreamRejected(wire.UPSTREAM, "the service lists no city")

    async def cities(self) -> list[RfidCity]:
        found = {city.city_code: city for city in map(parse.city, await self._all(wire.CITIES))}
        return sorted(found.values(), key=lambda city: city.city_code)

    async def daily(
        self, city_code: str, year: int, month: int, apt_code: str = ""
    ) -> list[RfidDailyVolume]:
        if not 1 <= month <= 12:
            raise ValueError(f"month {month} is not 1 to 12")
        params = {"cityCode": city_code, "disYear": f"{year:04d}", "disMonth": f"{month:02d}"}
        path = wire.CITY_DAYS
        if apt_code:
            path, params["aptCode"] = wire.APARTMENT_DAYS, apt_code
        rows = await self._all(path, params)
        days = {
            found.day: found
            for found in (parse.volume(row, city_code, apt_code, year, month) for row in rows)
        }
        return [days[day] for day in sorted(days)]

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def _all(self, path: str, params: dict[str, str] | None = None) -> parse.Items:
        rows: parse.Items = []
        previous: parse.Items | None = None
        for number in range(1, MAX_PAGES + 1):
            page = await self._page(path, params or {}, number, self.settings.page_rows)
            if not page:
                return rows
            if page == previous:
                raise MalformedResponse(
                    wire.UPSTREAM, f"page {number} of {path} repeats page {number - 1}"
                )
            rows += page
            previous = page
        raise MalformedResponse(wire.UPSTREAM, f"{path} did not end within {MAX_PAGES} pages")

    async def _page(self, path: str, params: dict[str, str], number: int, rows: int) -> parse.Items:
        query: dict[str, Any] = {
            "ServiceKey": self.settings.service_key.get_secret_value(),
            "type": "json",
            "page": number,
            "rowNum": rows,
            **params,
        }
        return await self.upstream.get(path, parse.items, params=query, refuse=parse.refusal)
