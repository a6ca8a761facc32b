"""A sandbox of ODsay's searchPubTransPath in its documented format (docs/upstreams/odsay.md).

It answers under /v1/api as the service does, with the generated paths of routes.py for
any two points in Korea within 60 km, and the service's errors: HTTP 200 with an `error`
object for a search it declines (points within 700 m: -98, as ODsay answers, not a walk),
a list for an unknown key.
"""

from __future__ import annotations

import math

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.odsay import routes, walking, wire
from adapters.odsay.wire import SEARCH_RADIUS_M, WITHIN_CITY, Code
from adapters.sandbox.answers import JSONAnswer
from adapters.sandbox.server import Sandbox

API_KEY = "sandbox-odsay-key"
BASE_PATH = "/v1/api"
MAX_DISTANCE_M = 60_000  # farther apart is not one city: no result within a city
LATITUDES, LONGITUDES = (33.0, 39.0), (124.0, 132.0)


async def search(request: Request) -> JSONResponse:
    query = request.query_params
    if query.get("apiKey") != API_KEY:
        return JSONResponse(wire.key_refused())
    values: dict[str, float] = {}
    for name in ("SX", "SY", "EX", "EY"):
        raw = query.get(name, "").strip()
        if not raw:
            return JSONResponse(wire.error(Code.MISSING_PARAMETER, f"필수 입력값 누락: {name}"))
        try:
            values[name] = float(raw)
        except ValueError:
            values[name] = math.nan
        if not math.isfinite(values[name]):
            return _bad(f"{name} is not a number")
    options = {name: query.get(name, "0").strip() for name in ("OPT", "SearchType")}
    if options["OPT"] not in ("0", "1", "2", "3"):
        return _bad("OPT is 0, 1, 2 or 3")
    if options["SearchType"] != str(WITHIN_CITY):
        return _bad("the sandbox answers SearchType=0 (within a city) only")
    start, end = (values["SY"], values["SX"]), (values["EY"], values["EX"])
    if not all(_in_korea(*point) for point in (start, end)):
        return JSONResponse(wire.error(Code.OUTSIDE_SERVICE_AREA))
    distance = walking.straight_m(*start, *end)
    if distance < SEARCH_RADIUS_M:
        return JSONResponse(wire.error(Code.TOO_CLOSE))
    if distance > MAX_DISTANCE_M:
        return JSONResponse(wire.error(Code.NO_RESULT))
    return JSONAnswer({"result": routes.answer(*start, *end, opt=int(options["OPT"]))})


def _bad(detail: str) -> JSONResponse:
    return JSONResponse(wire.error(Code.BAD_PARAMETER, f"필수 입력값 형식 및 범위 오류: {detail}"))


def _in_korea(lat: float, lng: float) -> bool:
    return LATITUDES[0] <= lat <= LATITUDES[1] and LONGITUDES[0] <= lng <= LONGITUDES[1]


def create_app() -> Starlette:
    return Starlette(routes=[Route(BASE_PATH + wire.SEARCH, search)])


SANDBOX = Sandbox(
    name="odsay",
    summary="ODsay searchPubTransPath: walk, bus and subway paths between two points",
    app=create_app,
    configure=lambda url: {"base_url": url + BASE_PATH, "api_key": API_KEY},
)
