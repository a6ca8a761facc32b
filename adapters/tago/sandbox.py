"""A sandbox of TAGO TrainInfoService in its documented format (docs/upstreams/tago.md),
serving the trains of the project's rail network (adapters/sandbox/rail_network.py) and
the stations of its reference data.

Both publications answer, under /1613000/TrainInfoService and /1613000/TrainInfo, JSON
only (`_type=json`), in the gateway's XML-to-JSON shape: one item as an object, no item as
`"items": ""`, numbers as JSON numbers. An unknown key is refused as the gateway does (XML,
HTTP 403). `/_sandbox/quirks` (not part of the format) turns on, for tests, the other
habits users report: a retired publication (code 12), numbers as strings, no data as
code 03, a wrong totalCount, fewer rows than asked, a spent quota (code 22 or 23).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.datagokr import Reason
from adapters.sandbox import rail_network
from adapters.sandbox.answers import JSONAnswer
from adapters.sandbox.server import Sandbox
from adapters.tago import wire
from adapters.tago.wire import Api, Operation
from resolvers.mobility import stations

SERVICE_KEY = "sandbox-tago-key"

CITIES = {
    "11": "서울특별시",
    "12": "세종특별시",
    "21": "부산광역시",
    "22": "대구광역시",
    "23": "인천광역시",
    "24": "광주광역시",
    "25": "대전광역시",
    "26": "울산광역시",
    "31": "경기도",
    "32": "강원도",
    "33": "충청북도",
    "34": "충청남도",
    "35": "전라북도",
    "36": "전라남도",
    "37": "경상북도",
    "38": "경상남도",
}


class Quirks(BaseModel):
    """The service's habits a test asks for; the defaults are its plain behaviour."""

    model_config = ConfigDict(extra="forbid")

    retired: Api | None = Field(default=None, description="this publication answers code 12")
    numbers_as_strings: bool = False
    no_data_code: bool = Field(default=False, description="nothing found: code 03, no body")
    total_count: Literal["true", "zero", "inflated"] = "true"
    max_rows: int | None = Field(default=None, ge=1, description="serve at most this per page")
    quota_left: int | None = Field(default=None, ge=0, description="calls left today")
    quota_code: Literal["22", "23"] = "22"
    quota_status: Literal[200, 403, 429] = 403
    quota_shape: Literal["xml", "json"] = "xml"


def standard(code: Reason, detail: str = "") -> JSONResponse:
    """The standard envelope without a body: the service's own errors."""
    return JSONResponse({"response": {"header": wire.header(code, detail)}})


def gateway(code: Reason, status: int = 403, shape: str = "xml") -> Response:
    if shape == "json":
        return JSONResponse(wire.gateway_json(code), status_code=status)
    return Response(wire.gateway_xml(code), status_code=status, media_type="text/xml")


Handler = Callable[[Request], list[dict[str, Any]] | Response]


def create_app() -> Starlette:
    state = {"quirks": Quirks()}

    def operation(api: Api, handler: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            quirks = state["quirks"]
            query = request.query_params
            if (query.get("serviceKey") or query.get("ServiceKey")) != SERVICE_KEY:
                return gateway(Reason.KEY_NOT_REGISTERED)
            if quirks.retired is api:
                return gateway(Reason.NO_SERVICE, status=200)
            if quirks.quota_left is not None:
                if quirks.quota_left == 0:
                    code = Reason(quirks.quota_code)
                    return gateway(code, quirks.quota_status, quirks.quota_shape)
                state["quirks"] = quirks.model_copy(update={"quota_left": quirks.quota_left - 1})
            if query.get("_type") != "json":
                return standard(Reason.INVALID_PARAMETER, "the sandbox answers _type=json only")
            try:
                number, rows = int(query.get("pageNo", "1")), int(query.get("numOfRows", "10"))
            except ValueError:
                return standard(Reason.INVALID_PARAMETER, "pageNo and numOfRows are whole numbers")
            if number < 1 or not 1 <= rows <= wire.MAX_ROWS:
                return standard(
                    Reason.INVALID_PARAMETER, f"pageNo from 1, numOfRows from 1 to {wire.MAX_ROWS}"
                )
            found = handler(request)
            if isinstance(found, Response):
                return found
            if not found and quirks.no_data_code:
                return standard(Reason.NO_DATA)
            if quirks.numbers_as_strings:
                found = [{k: _as_text(v) for k, v in item.items()} for item in found]
            total = {"true": None, "zero": 0, "inflated": len(found) * 2 + 7}[quirks.total_count]
            served = min(rows, quirks.max_rows or rows)
            return JSONAnswer(wire.page(found, number, served, total))

        return endpoint

    async def set_quirks(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                state["quirks"] = Quirks.model_validate_json(await request.body())
            except ValidationError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        elif request.method == "DELETE":
            state["quirks"] = Quirks()
        return JSONResponse(state["quirks"].model_dump(mode="json"))

    routes = [
        Route(wire.BASE_PATH + wire.path(api, op), operation(api, handler))
        for api in Api
        for op, handler in HANDLERS.items()
    ]
    routes.append(Route("/_sandbox/quirks", set_quirks, methods=["GET", "POST", "DELETE"]))
    return Starlette(routes=routes)


def _as_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def cities(request: Request) -> list[dict[str, Any]]:
    return [{"citycode": int(code), "cityname": name} for code, name in CITIES.items()]


def city_stations(request: Request) -> list[dict[str, Any]] | Response:
    city_code = request.query_params.get("cityCode", "").strip()
    if not city_code:
        return standard(Reason.MISSING_PARAMETER, "cityCode")
    return [
        {"nodeid": station.code, "nodename": station.name}
        for station in stations.STATIONS
        if station.city_code == city_code
    ]


def vehicle_kinds(request: Request) -> list[dict[str, Any]]:
    return [
        {"vehiclekndid": kind, "vehiclekndnm": name} for kind, name in wire.VEHICLE_KINDS.items()
    ]


def trains(request: Request) -> list[dict[str, Any]] | Response:
    query = request.query_params
    for name in ("depPlaceId", "arrPlaceId", "depPlandTime"):
        if not query.get(name, "").strip():
            return standard(Reason.MISSING_PARAMETER, name)
    try:
        day = _day(query["depPlandTime"].strip())
    except ValueError:
        return standard(Reason.INVALID_PARAMETER, "depPlandTime is YYYYMMDD")
    grade = query.get("trainGradeCode", "").strip()
    if grade and grade not in wire.VEHICLE_KINDS:
        return standard(Reason.INVALID_PARAMETER, f"trainGradeCode {grade}")
    return [
        item
        for item in _train_items(day, query["depPlaceId"], query["arrPlaceId"])
        if not grade or wire.VEHICLE_KINDS[grade] == item["traingradename"]
    ]


@lru_cache(maxsize=256)
def _day(text: str) -> date:
    """YYYYMMDD read once per text (strptime was about 2% of the sandbox's CPU in
    bench/journeys.py); ValueError as strptime raises it, for each call."""
    return datetime.strptime(text, wire.DAY).date()


@lru_cache(maxsize=4096)
def _train_items(day: date, dep: str, arr: str) -> tuple[dict[str, Any], ...]:
    """The items of every train between two stations on a day, made once: the network is
    fixed, and a journey search asks for about nine such lists (read only)."""
    return tuple(
        _train_item(train, dep_stop, arr_stop)
        for train, dep_stop, arr_stop in rail_network.between(day, dep, arr)
    )


def _train_item(
    train: rail_network.NetworkTrain, dep: rail_network.Stop, arr: rail_network.Stop
) -> dict[str, Any]:
    assert dep.departs is not None and arr.arrives is not None
    return {
        "adultcharge": rail_network.fare(train, dep.station, arr.station, "general"),
        "arrplacename": _name(arr.station),
        "arrplandtime": int(arr.arrives.strftime(wire.MOMENT)),
        "depplacename": _name(dep.station),
        "depplandtime": int(dep.departs.strftime(wire.MOMENT)),
        "traingradename": train.grade,
        "trainno": int(train.train_no),
    }


def _name(code: str) -> str:
    station = stations.by_code(code)
    return station.name if station else code


HANDLERS: dict[Operation, Handler] = {
    Operation.CITIES: cities,
    Operation.STATIONS: city_stations,
    Operation.VEHICLE_KINDS: vehicle_kinds,
    Operation.TRAINS: trains,
}


SANDBOX = Sandbox(
    name="tago",
    summary="TAGO TrainInfoService (both paths): cities, stations, train kinds, trains between "
    "two stations on a day, over the project's KTX/SRT network",
    app=create_app,
    configure=lambda url: {"base_url": url + wire.BASE_PATH, "service_key": SERVICE_KEY},
)
