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
from typing import Any

from adapters import datagokr

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


MESSAGES = datagokr.MESSAGES


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
