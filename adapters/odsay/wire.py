"""ODsay's searchPubTransPath wire format (docs/upstreams/odsay.md), shared by the adapter
and its sandbox.

One GET with query parameters; X is the longitude and Y the latitude. Every answer the
service gives itself is HTTP 200: `{"result": {…, "path": [...]}}`, or `{"error": …}` whose
shape varies — an object `{"code", "msg"}` for a search that found nothing usable, a list
of `{"code", "message"}` for a refused key.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

UPSTREAM = "odsay"
BASE_URL = "https://api.odsay.com/v1/api"
SEARCH = "/searchPubTransPath"

RECOMMENDED = 0  # OPT: the service's recommended order (1 time, 2 transfers, 3 walking)
WITHIN_CITY = 0  # SearchType: paths within a city (1 between cities, 2 both)
SEARCH_RADIUS_M = 700  # startRadius / endRadius: how far the service looks for stops


class Traffic(IntEnum):
    """trafficType of a subPath. With SearchType 1 or 2, 4-7 are train, express bus,
    intercity bus and plane (unverified); the adapter asks for paths within a city."""

    SUBWAY = 1
    BUS = 2
    WALK = 3


class PathType(IntEnum):
    SUBWAY = 1
    BUS = 2
    MIXED = 3


class Code(StrEnum):
    """error.code values as users of the service report them."""

    SERVER_ERROR = "500"  # also what a refused key answers, with "[ApiKeyAuthFailed]"
    RATE_LIMITED = "429"
    BAD_PARAMETER = "-8"  # 필수 입력값 형식 및 범위 오류
    MISSING_PARAMETER = "-9"  # 필수 입력값 누락
    NO_START_STOP = "3"
    NO_END_STOP = "4"
    NO_STOPS = "5"
    OUTSIDE_SERVICE_AREA = "6"
    NOTHING_FOUND = "-11"  # reported with the same message as -99
    TOO_CLOSE = "-98"  # origin and destination within 700 m: walk
    NO_RESULT = "-99"


MESSAGES = {
    Code.SERVER_ERROR: "서버 내부 오류",
    Code.RATE_LIMITED: "Too Many Requests",
    Code.BAD_PARAMETER: "필수 입력값 형식 및 범위 오류",
    Code.MISSING_PARAMETER: "필수 입력값 누락",
    Code.NO_START_STOP: "출발지 정류장이 없습니다.",
    Code.NO_END_STOP: "도착지 정류장이 없습니다.",
    Code.NO_STOPS: "출, 도착지 정류장이 없습니다.",
    Code.OUTSIDE_SERVICE_AREA: "서비스 지역이 아닙니다.",
    Code.NOTHING_FOUND: "검색결과가 없습니다.",
    Code.TOO_CLOSE: "출, 도착지가 700m이내입니다.",
    Code.NO_RESULT: "검색결과가 없습니다.",
}
KEY_REFUSED = "[ApiKeyAuthFailed] ApiKey authentication failed."

# Codes that mean "no way by bus or subway between these points": an empty answer.
NO_PATH = frozenset(
    {
        Code.NO_START_STOP,
        Code.NO_END_STOP,
        Code.NO_STOPS,
        Code.OUTSIDE_SERVICE_AREA,
        Code.NOTHING_FOUND,
        Code.NO_RESULT,
    }
)

# lane[].type of a bus (ODsay's bus kinds), as LocalLeg.line names them: "간선 472".
BUS_KINDS = {
    1: "일반",
    2: "좌석",
    3: "마을",
    4: "직행좌석",
    5: "공항",
    6: "간선급행",
    10: "외곽",
    11: "간선",
    12: "지선",
    13: "순환",
    14: "광역",
    15: "급행",
    16: "관광",
    20: "농어촌",
    26: "급행간선",
}
# The region word that starts a subway lane's name ("수도권 2호선"), left out of a line.
REGIONS = ("수도권", "부산", "대구", "대전", "광주", "인천")


def query(
    from_lat: float, from_lng: float, to_lat: float, to_lng: float, api_key: str
) -> dict[str, str | int]:
    return {
        "SX": f"{from_lng:.7f}",
        "SY": f"{from_lat:.7f}",
        "EX": f"{to_lng:.7f}",
        "EY": f"{to_lat:.7f}",
        "OPT": RECOMMENDED,
        "SearchType": WITHIN_CITY,
        "apiKey": api_key,
    }


def error(code: Code, message: str = "") -> dict[str, Any]:
    """The object-shaped error of a search (`msg`)."""
    return {"error": {"msg": message or MESSAGES[code], "code": code.value}}


def key_refused() -> dict[str, Any]:
    """The list-shaped error of a refused key (`message`)."""
    return {"error": [{"code": Code.SERVER_ERROR.value, "message": KEY_REFUSED}]}
