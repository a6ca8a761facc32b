"""TAGO TrainInfoService's wire format (docs/upstreams/tago.md), shared by the adapter and
its sandbox.

국토교통부 TAGO 열차정보 on data.go.kr: GET with query parameters, answered in the standard
data.go.kr envelope `{"response": {"header": …, "body": {"items": {"item": …}, …}}}`, paged
by `pageNo` and `numOfRows`. The service is published under two paths: the legacy
lower-camel-case one and the newer Pascal-case one; either may answer code 12 (service
missing or retired). Errors of the gateway in front of it come in its own envelope,
`OpenAPI_ServiceResponse.cmmMsgHeader`, as XML or JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from adapters import datagokr
from adapters.datagokr import Reason

UPSTREAM = "tago"
BASE_PATH = "/1613000"


class Api(StrEnum):
    """The two publications of the service: their path prefix and operation spelling."""

    CURRENT = "current"  # /TrainInfo/GetCtyCodeList
    LEGACY = "legacy"  # /TrainInfoService/getCtyCodeList

    @property
    def other(self) -> Api:
        return Api.LEGACY if self is Api.CURRENT else Api.CURRENT


class Operation(StrEnum):
    CITIES = "getCtyCodeList"
    STATIONS = "getCtyAcctoTrainSttnList"
    VEHICLE_KINDS = "getVhcleKndList"
    TRAINS = "getStrtpntAlocFndTrainInfo"


def path(api: Api, operation: Operation) -> str:
    """The operation's path under BASE_PATH for one publication of the service."""
    if api is Api.LEGACY:
        return f"/TrainInfoService/{operation.value}"
    return f"/TrainInfo/{operation.value[0].upper()}{operation.value[1:]}"


MAX_ROWS = 1000  # the largest numOfRows the sandbox accepts
DAY = "%Y%m%d"  # depPlandTime
MOMENT = "%Y%m%d%H%M%S"  # depplandtime, arrplandtime: Korean time without an offset

# vehiclekndid values (getVhcleKndList) as public client code uses them; the adapter never
# relies on them (it asks for every grade), the sandbox lists them and filters by them.
VEHICLE_KINDS = {
    "00": "KTX",
    "01": "새마을호",
    "02": "무궁화호",
    "03": "통근열차",
    "04": "누리로",
    "06": "AREX직통",
    "07": "KTX-산천",
    "08": "ITX-새마을",
    "09": "ITX-청춘",
    "16": "KTX-이음",
    "17": "SRT",
}


# TAGO writes its normal answer as "NORMAL SERVICE." (the other services: NORMAL_SERVICE).
MESSAGES = {**datagokr.MESSAGES, Reason.NORMAL: "NORMAL SERVICE."}


def header(code: Reason, detail: str = "") -> dict[str, str]:
    message = f"{MESSAGES[code]}: {detail}" if detail else MESSAGES[code]
    return {"resultCode": code.value, "resultMsg": message}


def page(
    items: Sequence[dict[str, Any]], number: int, rows: int, total: int | None = None
) -> dict[str, Any]:
    """Page `number` (from 1) of `rows` items in the envelope, as the gateway's XML-to-JSON
    conversion writes it: one item as an object, no item as `"items": ""`. `total` is the
    totalCount to claim (the true count unless given)."""
    shown = list(items[(number - 1) * rows : number * rows])
    found: dict[str, Any] | str = ""
    if shown:
        found = {"item": shown[0] if len(shown) == 1 else shown}
    body = {
        "items": found,
        "numOfRows": rows,
        "pageNo": number,
        "totalCount": len(items) if total is None else total,
    }
    return {"response": {"header": header(Reason.NORMAL), "body": body}}


def gateway_xml(code: Reason) -> str:
    """The gateway's refusal, as XML (the shape users meet even when JSON was asked)."""
    return (
        "<OpenAPI_ServiceResponse><cmmMsgHeader><errMsg>SERVICE ERROR</errMsg>"
        f"<returnAuthMsg>{MESSAGES[code]}</returnAuthMsg>"
        f"<returnReasonCode>{code.value}</returnReasonCode>"
        "</cmmMsgHeader></OpenAPI_ServiceResponse>"
    )


def gateway_json(code: Reason) -> dict[str, Any]:
    return {
        "OpenAPI_ServiceResponse": {
            "cmmMsgHeader": {
                "errMsg": "SERVICE ERROR",
                "returnAuthMsg": MESSAGES[code],
                "returnReasonCode": code.value,
            }
        }
    }
