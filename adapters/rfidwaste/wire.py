"""The RFID volume-rate service's wire format (docs/upstreams/rfidwaste.md), shared by the
adapter, its sandbox and the waste domain's export in the same format.

한국환경공단 RfidFoodWasteServiceNew on data.go.kr: GET with query parameters, answers in a
non-standard envelope `{"data": {"list": [...]}}` whose list is null or empty past the last
page. Errors of the data.go.kr gateway in front of it come in its own envelope, as XML or
JSON (`OpenAPI_ServiceResponse.cmmMsgHeader`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

UPSTREAM = "rfidwaste"
BASE_PATH = "/B552584/RfidFoodWasteServiceNew"

CITIES = "/getCityList"
TOTAL_DAYS = "/getTotalDateList"
CITY_DAYS = "/getCityDateList"
APARTMENT_DAYS = "/getCityAptDateList"

MAX_ROWS = 1000  # the largest rowNum the sandbox accepts
DAY = "%Y%m%d"  # disDate

# The unit of disQuantity is not published. We read it as grams: a 종량기 weighs each
# disposal to the gram (households pay per gram of a per-kg price), and analyses of the
# service's national totals divide them by 10^6 to get tonnes. Should the agency confirm
# kilograms, this is the one number to change: the adapter and the export both use it.
KG_PER_UNIT = Decimal("0.001")


class Reason(StrEnum):
    """returnReasonCode / resultCode values of data.go.kr (research file, section 0)."""

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
    Reason.NORMAL: "NORMAL_SERVICE",
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


def units(kg: Decimal) -> int | float:
    """A weight in kg as disQuantity: a whole number of units when it is one."""
    value = (kg / KG_PER_UNIT).normalize()
    return int(value) if value == value.to_integral_value() else float(value)


def day_item(day: date, sido: str, sigungu: str, kg: Decimal, disposals: int) -> dict[str, Any]:
    """One day's item of a *DateList answer. disDay is the weekday (1 Sunday … 7 Saturday),
    as in the *DayList answers; a day is one day, so the daily averages are the values."""
    quantity = units(kg)
    return {
        "disYear": f"{day:%Y}",
        "disMonth": f"{day:%m}",
        "disDay": str(day.isoweekday() % 7 + 1),
        "disDate": day.strftime(DAY),
        "disDayCount": 1,
        "citySidoName": sido,
        "citySggName": sigungu,
        "disQuantity": quantity,
        "dayAverQuantity": quantity,
        "disCount": disposals,
        "dayAverCount": disposals,
    }


def page(items: Sequence[dict[str, Any]], number: int, rows: int) -> dict[str, Any]:
    """Page `number` (from 1) of `rows` items: the list is null past the last page and
    empty when there is nothing at all."""
    if not items:
        return {"data": {"list": []}}
    shown = list(items[(number - 1) * rows : number * rows])
    return {"data": {"list": shown or None}}
