"""A sandbox of RfidFoodWasteServiceNew in its documented format (docs/upstreams/rfidwaste.md).

The operations answer under /B552584/RfidFoodWasteServiceNew as the service does, JSON
only (`type=json`), paged by `page` and `rowNum`, with the seeded cities of records.py.
The gateway's refusals come in its own envelope: an unknown key as XML with HTTP 403 (as
users observe it), an exhausted daily quota as JSON with HTTP 403. `/_sandbox/quota` (not
part of the format) sets how many calls the key has left today, for tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.datagokr import Reason
from adapters.rfidwaste import records, wire
from adapters.rfidwaste.wire import MESSAGES
from adapters.sandbox.server import Sandbox

SERVICE_KEY = "sandbox-rfidwaste-key"
KST = timezone(timedelta(hours=9), "KST")
_YEAR, _MONTH = re.compile(r"^[0-9]{4}$"), re.compile(r"^(0[1-9]|1[0-2])$")


def kst_today() -> date:
    return datetime.now(KST).date()


def standard(code: Reason, detail: str = "") -> JSONResponse:
    """The standard data.go.kr envelope, which the service uses for a bad parameter."""
    message = f"{MESSAGES[code]}: {detail}" if detail else MESSAGES[code]
    return JSONResponse({"response": {"header": {"resultCode": code.value, "resultMsg": message}}})


def unregistered_key() -> Response:
    body = (
        "<OpenAPI_ServiceResponse><cmmMsgHeader><errMsg>SERVICE ERROR</errMsg>"
        f"<returnAuthMsg>{MESSAGES[Reason.KEY_NOT_REGISTERED]}</returnAuthMsg>"
        f"<returnReasonCode>{Reason.KEY_NOT_REGISTERED.value}</returnReasonCode>"
        "</cmmMsgHeader></OpenAPI_ServiceResponse>"
    )
    return Response(body, status_code=403, media_type="text/xml")


def quota_exceeded() -> JSONResponse:
    header = {
        "errMsg": "SERVICE ERROR",
        "returnAuthMsg": MESSAGES[Reason.QUOTA_EXCEEDED],
        "returnReasonCode": Reason.QUOTA_EXCEEDED.value,
    }
    return JSONResponse({"OpenAPI_ServiceResponse": {"cmmMsgHeader": header}}, status_code=403)


@dataclass
class Quota:
    left: int | None = None  # calls the key may still make today; None: no limit

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left == 0:
            return False
        self.left -= 1
        return True


Handler = Callable[[Request], list[dict[str, Any]] | Response]


def create_app(today: Callable[[], date] = kst_today) -> Starlette:
    quota = Quota()

    def operation(handler: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            query = request.query_params
            if (query.get("ServiceKey") or query.get("serviceKey")) != SERVICE_KEY:
                return unregistered_key()
            if not quota.take():
                return quota_exceeded()
            if query.get("type") != "json":
                return standard(Reason.INVALID_PARAMETER, "the sandbox answers type=json only")
            try:
                number, rows = int(query.get("page", "1")), int(query.get("rowNum", "10"))
            except ValueError:
                return standard(Reason.INVALID_PARAMETER, "page and rowNum are whole numbers")
            if number < 1 or not 1 <= rows <= wire.MAX_ROWS:
                return standard(
                    Reason.INVALID_PARAMETER, f"page from 1, rowNum from 1 to {wire.MAX_ROWS}"
                )
            found = handler(request)
            if isinstance(found, Response):
                return found
            return JSONResponse(wire.page(found, number, rows))

        return endpoint

    def cities(request: Request) -> list[dict[str, Any]]:
        return [
            {"cityCode": c.city_code, "citySidoName": c.sido, "citySggName": c.sigungu}
            for c in records.CITIES
        ]

    def total_days(request: Request) -> list[dict[str, Any]] | Response:
        asked = _asked(request)
        if isinstance(asked, Response):
            return asked
        answer = []
        for day in records.published_days(asked.year, asked.month, today()):
            total = records.Weighed(0, 0)
            for city in records.CITIES:
                total += records.city_day(city, day)
            answer.append(wire.day_item(day, "전국", "전체", total.kg, total.disposals))
        return answer

    def city_days(request: Request) -> list[dict[str, Any]] | Response:
        asked = _asked(request, "cityCode")
        if isinstance(asked, Response):
            return asked
        city = records.BY_CODE.get(asked.codes[0])
        if city is None:
            return []
        return [
            _item(city, day, records.city_day(city, day))
            for day in records.published_days(asked.year, asked.month, today())
        ]

    def apartment_days(request: Request) -> list[dict[str, Any]] | Response:
        asked = _asked(request, "cityCode", "aptCode")
        if isinstance(asked, Response):
            return asked
        city_code, apt_code = asked.codes
        city = records.BY_CODE.get(city_code)
        complexes = city.complexes if city else ()
        complex_ = next((c for c in complexes if c.apt_code == apt_code), None)
        if city is None or complex_ is None:
            return []
        return [
            _item(city, day, records.weighed(complex_, day))
            for day in records.published_days(asked.year, asked.month, today())
        ]

    async def set_quota(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            quota.left = None
        else:
            left = (await request.json()).get("left")
            if not isinstance(left, int) or left < 0:
                return JSONResponse({"error": "left: a whole number of calls"}, status_code=400)
            quota.left = left
        return JSONResponse({"left": quota.left})

    base = wire.BASE_PATH
    return Starlette(
        routes=[
            Route(base + wire.CITIES, operation(cities)),
            Route(base + wire.TOTAL_DAYS, operation(total_days)),
            Route(base + wire.CITY_DAYS, operation(city_days)),
            Route(base + wire.APARTMENT_DAYS, operation(apartment_days)),
            Route("/_sandbox/quota", set_quota, methods=["POST", "DELETE"]),
        ]
    )


def _item(city: records.City, day: date, weighed: records.Weighed) -> dict[str, Any]:
    return wire.day_item(day, city.sido, city.sigungu, weighed.kg, weighed.disposals)


@dataclass(frozen=True)
class Asked:
    year: int
    month: int
    codes: tuple[str, ...]


def _asked(request: Request, *codes: str) -> Asked | Response:
    """disYear, disMonth and the codes an operation needs, or the error answer."""
    values = []
    for name in ("disYear", "disMonth", *codes):
        value = request.query_params.get(name, "").strip()
        if not value:
            return standard(Reason.MISSING_PARAMETER, name)
        values.append(value)
    year, month, *named = values
    if not _YEAR.match(year) or not _MONTH.match(month):
        return standard(Reason.INVALID_PARAMETER, "disYear is YYYY and disMonth MM")
    return Asked(int(year), int(month), tuple(named))


SANDBOX = Sandbox(
    name="rfidwaste",
    summary="한국환경공단 RfidFoodWasteServiceNew: cities, daily volumes per city and complex",
    app=create_app,
    configure=lambda url: {"base_url": url + wire.BASE_PATH, "service_key": SERVICE_KEY},
)
