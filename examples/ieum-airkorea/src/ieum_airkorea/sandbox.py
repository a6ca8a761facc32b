"""A sandbox of AirKorea's two services, in their JSON format (returnType=json).

Values are generated per station and hour, deterministically, then written as AirKorea
writes them (strings, "-" for not measured, flags, "24:00" at midnight). `expected()`
derives the right answer from the generated values, never from the rendered strings.
Station addresses and coordinates are close to the real stations', for demos.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.kinds import POLLUTANTS, StationMeasurement
from adapters.sandbox.server import Sandbox
from ieum_airkorea.parse import KST

SERVICE_KEY = "sandbox-service-key"
AREA = "서울 강남구"
PUBLISH_DELAY = timedelta(minutes=15)  # an hour's values appear about 15 minutes after it


@dataclass(frozen=True)
class FixedStation:
    name: str
    address: str
    lat: float
    lng: float
    network: str
    not_measured: frozenset[str] = frozenset()  # pollutants this station has no sensor for
    flagged: tuple[tuple[str, str], ...] = ()  # pollutants under calibration or failing


STATIONS = (
    FixedStation(
        "강남구", "서울 강남구 학동로 426 강남구청 별관 1동", 37.517562, 127.047470, "도시대기"
    ),
    FixedStation(
        "도산대로",
        "서울 강남구 도산대로 104 신사역 앞",
        37.516083,
        127.019694,
        "도로변대기",
        not_measured=frozenset({"so2"}),
        flagged=(("o3", "점검및교정"),),
    ),
    FixedStation(
        "서초구", "서울 서초구 신반포로15길 16 반포2동 주민센터", 37.504547, 126.994458, "도시대기"
    ),
    FixedStation(
        "강남대로",
        "서울 서초구 강남대로 201 서초구민회관 앞 중앙차로",
        37.481184,
        127.035749,
        "도로변대기",
        flagged=(("pm25", "통신장애"),),
    ),
    FixedStation(
        "종로구",
        "서울 종로구 종로35가길 19 종로5.6가 동 주민센터",
        37.572025,
        127.005008,
        "도시대기",
    ),
)
# (base, spread, decimals) of each pollutant's hourly value
_RANGES = {
    "pm10": (15, 70, 0),
    "pm25": (8, 45, 0),
    "o3": (0.005, 0.06, 3),
    "no2": (0.008, 0.05, 3),
    "co": (0.2, 0.6, 1),
    "so2": (0.002, 0.004, 3),
}


def latest_hour(now: datetime) -> datetime:
    """The end of the newest published hour, in KST."""
    published = (now.astimezone(KST) - PUBLISH_DELAY).replace(minute=0, second=0, microsecond=0)
    return published


def generated(station: FixedStation, hour: datetime) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for pollutant, (base, spread, decimals) in _RANGES.items():
        if pollutant in station.not_measured:
            values[pollutant] = None
            continue
        seed = zlib.crc32(f"{station.name}|{pollutant}|{hour:%Y%m%d%H}".encode())
        values[pollutant] = round(base + spread * (seed % 1000) / 1000, int(decimals))
    pm10, pm25 = values["pm10"], values["pm25"]
    values["khai"] = None if pm10 is None or pm25 is None else float(round(max(pm10, pm25 * 2)))
    return values


def data_time(hour: datetime) -> str:
    if hour.hour == 0:
        return f"{hour - timedelta(days=1):%Y-%m-%d} 24:00"
    return f"{hour:%Y-%m-%d %H:%M}"


def _grade(value: float | None, limits: tuple[float, float, float]) -> str | None:
    if value is None:
        return None
    return str(1 + sum(value > limit for limit in limits))


def rendered(station: FixedStation, hour: datetime, version: str) -> dict[str, Any]:
    values = generated(station, hour)
    flags = dict(station.flagged)
    row: dict[str, Any] = {"dataTime": data_time(hour), "mangName": station.network}
    if version >= "1.4":
        row["stationName"] = station.name
    for pollutant in (*POLLUTANTS, "khai"):
        number = values[pollutant]
        row[f"{pollutant}Value"] = "-" if number is None else f"{number:g}"
    for pollutant in POLLUTANTS:
        row[f"{pollutant}Flag"] = flags.get(pollutant)
    row["pm10Value24"], row["pm25Value24"] = row["pm10Value"], row["pm25Value"]
    row["pm10Grade"] = row["pm10Grade1h"] = _grade(values["pm10"], (30, 80, 150))
    row["pm25Grade"] = row["pm25Grade1h"] = _grade(values["pm25"], (15, 35, 75))
    row["khaiGrade"] = _grade(values["khai"], (50, 100, 250))
    for pollutant, limits in (("o3", (0.03, 0.09, 0.15)), ("no2", (0.03, 0.06, 0.2))):
        row[f"{pollutant}Grade"] = _grade(values[pollutant], limits)
    row["coGrade"] = _grade(values["co"], (2, 9, 15))
    row["so2Grade"] = _grade(values["so2"], (0.02, 0.05, 0.15))
    return row


def expected(now: datetime | None = None, area: str = AREA) -> list[StationMeasurement]:
    """What a correct adapter set up for `area` returns at `now`."""
    hour = latest_hour(now or datetime.now(UTC))
    answer = []
    for station in STATIONS:
        if not station.address.startswith(area):
            continue
        values = generated(station, hour)
        flags = dict(station.flagged)
        answer.append(
            StationMeasurement(
                station=station.name,
                address=station.address,
                lat=station.lat,
                lng=station.lng,
                measured_at=hour.astimezone(UTC),
                khai=values.pop("khai"),
                flags=station.flagged,
                **{p: None if p in flags else v for p, v in values.items()},
            )
        )
    return answer


def _envelope(rows: list[dict[str, Any]], request: Request, code: str = "00") -> JSONResponse:
    size = int(request.query_params.get("numOfRows", "10"))
    page = int(request.query_params.get("pageNo", "1"))
    shown = rows[(page - 1) * size : page * size]
    message = {"00": "NORMAL_CODE", "11": "NO_MANDATORY_REQUEST_PARAMETERS_ERROR"}[code]
    return JSONResponse(
        {
            "response": {
                "body": {
                    "totalCount": len(rows),
                    "items": shown,
                    "pageNo": page,
                    "numOfRows": size,
                },
                "header": {"resultMsg": message, "resultCode": code},
            }
        }
    )


def _unregistered_key() -> Response:
    body = (
        "<OpenAPI_ServiceResponse><cmmMsgHeader><errMsg>SERVICE ERROR</errMsg>"
        "<returnAuthMsg>SERVICE_KEY_IS_NOT_REGISTERED_ERROR</returnAuthMsg>"
        "<returnReasonCode>30</returnReasonCode></cmmMsgHeader></OpenAPI_ServiceResponse>"
    )
    return Response(body, status_code=403, media_type="text/xml")


def create_app(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Starlette:
    async def station_list(request: Request) -> Response:
        if request.query_params.get("serviceKey") != SERVICE_KEY:
            return _unregistered_key()
        addr = request.query_params.get("addr", "")
        rows = [
            {
                "stationName": station.name,
                "addr": station.address,
                "dmX": f"{station.lat}",
                "dmY": f"{station.lng}",
                "mangName": station.network,
                "item": ", ".join(p.upper() for p in POLLUTANTS if p not in station.not_measured),
                "year": "2005",
            }
            for station in STATIONS
            if addr in station.address
        ]
        return _envelope(rows, request)

    async def realtime(request: Request) -> Response:
        if request.query_params.get("serviceKey") != SERVICE_KEY:
            return _unregistered_key()
        name = request.query_params.get("stationName")
        if not name:
            return _envelope([], request, code="11")
        hours = {"DAILY": 24, "MONTH": 24 * 30, "3MONTH": 24 * 90}
        term = hours.get(request.query_params.get("dataTerm", "DAILY"), 24)
        version = request.query_params.get("ver", "1.0")
        newest = latest_hour(now())
        rows = [
            rendered(station, newest - timedelta(hours=back), version)
            for station in STATIONS
            if station.name == name
            for back in range(term)
        ]
        return _envelope(rows, request)

    return Starlette(
        routes=[
            Route("/MsrstnInfoInqireSvc/getMsrstnList", station_list),
            Route("/ArpltnInforInqireSvc/getMsrstnAcctoRltmMesureDnsty", realtime),
        ]
    )


SANDBOX = Sandbox(
    name="airkorea",
    summary="AirKorea ArpltnInforInqireSvc and MsrstnInfoInqireSvc, JSON",
    app=create_app,
    configure=lambda url: {"base_url": url, "service_key": SERVICE_KEY, "area": AREA},
    expected=expected,
)
