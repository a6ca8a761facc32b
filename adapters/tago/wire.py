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


class Reason(StrEnum):
    """resultCode / returnReasonCode values of data.go.kr (research file, section 0)."""

    NORMAL = "00"
    APPLICATION_ERROR = "01"
    DB_ERROR = "02"
    NO_DATA = "03"
    SERVICE_TIMEOUT = "05"
    INVALID_PARAMETER = "10"
    MISSING_PARAMETER = "11"
    NO_SERVICE = "12"
    ACCESS_DENIED = "20"
    KEY_DISABLED = "21"
    QUOTA_EXCEEDED = "22"
    PER_SECOND_EXCEEDED = "23"
    KEY_NOT_REGISTERED = "30"
    KEY_EXPIRED = "31"
    UNKNOWN_ERROR = "99"


MESSAGES = {
    Reason.NORMAL: "NORMAL SERVICE.",
    Reason.APPLICATION_ERROR: "APPLICATION_ERROR",
    Reason.DB_ERROR: "DB_ERROR",
    Reason.NO_DATA: "NODATA_ERROR",
    Reason.SERVICE_TIMEOUT: "SERVICETIME_OUT",
    Reason.INVALID_PARAMETER: "INVALID_REQUEST_PARAMETER_ERROR",
    Reason.MISSING_PARAMETER: "NO_MANDATORY_REQUEST_PARAMETERS_ERROR",
    Reason.NO_SERVICE: "NO_OPENAPI_SERVICE_ERROR",
    Reason.ACCESS_DENIED: "SERVICE_ACCESS_DENIED_ERROR",
    Reason.KEY_DISABLED: "TEMPORARILY_DISABLE_THE_SERVICEKEY_ERROR",
    Reason.QUOTA_EXCEEDED: "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR",
    Reason.PER_SECOND_EXCEEDED: "LIMITED_NUMBER_OF_SERVICE_REQUESTS_PER_SECOND_EXCEEDS_ERROR",
    Reason.KEY_NOT_REGISTERED: "SERVICE_KEY_IS_NOT_REGISTERED_ERROR",
    Reason.KEY_EXPIRED: "DEADLINE_HAS_EXPIRED_ERROR",
    Reason.UNKNOWN_ERROR: "UNKNOWN_ERROR",
}


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
