"""The service's answers into typed values, and its errors into UpstreamErrors.

Three shapes arrive: the service's own `{"data": {"list": …}}`; the data.go.kr gateway's
`OpenAPI_ServiceResponse` (a bad key, a quota), as XML even when JSON was asked, with
HTTP 200 or 4xx; and the standard `{"response": {"header": …}}` for a bad parameter.
Numbers may be strings; a single item may come as an object instead of a list.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from adapters.datagokr import Reason
from adapters.errors import (
    MalformedResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from adapters.kinds import RfidCity, RfidDailyVolume
from adapters.rfidwaste.wire import DAY, KG_PER_UNIT, UPSTREAM

_FAILURES: dict[str, type[UpstreamError]] = {
    Reason.APPLICATION_ERROR: UpstreamServerError,
    Reason.DB_ERROR: UpstreamServerError,
    Reason.SERVICE_TIMEOUT: UpstreamServerError,
    Reason.UNKNOWN_ERROR: UpstreamServerError,
    Reason.QUOTA_EXCEEDED: UpstreamRateLimited,
    Reason.PER_SECOND_EXCEEDED: UpstreamRateLimited,
}
_XML_FIELD = re.compile(r"<(errMsg|returnAuthMsg|returnReasonCode)>\s*(.*?)\s*</\1>", re.DOTALL)
_DATE_FORMATS = (DAY, "%Y-%m-%d", "%Y.%m.%d")

Items = list[dict[str, Any]]


def items(response: httpx.Response) -> Items:
    """The list of one page: empty past the last page; errors raised."""
    gateway = _gateway_error(response)
    if gateway is not None:
        raise gateway
    answer = response.json()
    if not isinstance(answer, dict):
        raise MalformedResponse(UPSTREAM, f"the answer is a {type(answer).__name__}")
    if "data" not in answer:
        return _standard(answer)
    data = answer["data"]
    if not isinstance(data, dict):
        raise MalformedResponse(UPSTREAM, f"data is a {type(data).__name__}, not an object")
    found = data.get("list")
    if found is None or found == "":
        return []
    if isinstance(found, dict):
        found = [found]
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise MalformedResponse(UPSTREAM, f"data.list is a {type(found).__name__}, not a list")
    return found


def refusal(response: httpx.Response) -> UpstreamError:
    """A 4xx answer: the gateway's reason when it gives one."""
    gateway = _gateway_error(response)
    if gateway is not None:
        return gateway
    return UpstreamRejected(UPSTREAM, f"HTTP {response.status_code}: {response.text[:200]}")


def city(item: dict[str, Any]) -> RfidCity:
    return RfidCity(
        _text(item, "cityCode"), _text(item, "citySidoName"), _text(item, "citySggName")
    )


def volume(
    item: dict[str, Any], city_code: str, apt_code: str, year: int, month: int
) -> RfidDailyVolume:
    """One day's item of a *DateList answer for the month asked."""
    day = _day(item.get("disDate"))
    if (day.year, day.month) != (year, month):
        raise MalformedResponse(UPSTREAM, f"disDate {day} is outside {year}-{month:02d}")
    return RfidDailyVolume(
        city_code=city_code,
        apt_code=apt_code,
        day=day,
        quantity_kg=quantity(item.get("disQuantity")) * KG_PER_UNIT,
        disposals=count(item.get("disCount")),
    )


def quantity(raw: object) -> Decimal:
    """disQuantity as an exact decimal (a float is read through its shortest text)."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise MalformedResponse(UPSTREAM, f"disQuantity {raw!r} is not a number")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise MalformedResponse(UPSTREAM, f"disQuantity {raw!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise MalformedResponse(UPSTREAM, f"disQuantity {raw!r} is not a weight")
    return value


def count(raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        return int(raw)
    if isinstance(raw, float) and raw.is_integer() and raw >= 0:
        return int(raw)
    raise MalformedResponse(UPSTREAM, f"disCount {raw!r} is not a whole number")


def _day(raw: object) -> date:
    if isinstance(raw, str):
        for layout in _DATE_FORMATS:
            try:
                return datetime.strptime(raw.strip(), layout).date()
            except ValueError:
                continue
    raise MalformedResponse(UPSTREAM, f"disDate {raw!r} is not a date")


def _text(item: dict[str, Any], field: str) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value.strip():
        raise MalformedResponse(UPSTREAM, f"{field} is {value!r}, not a text")
    return value.strip()


def _standard(answer: dict[str, Any]) -> Items:
    """The standard data.go.kr envelope, which this service uses for its own errors."""
    header = answer["response"]["header"]
    code, message = str(header["resultCode"]), str(header.get("resultMsg", ""))
    if code == Reason.NO_DATA:
        return []
    if code == Reason.NORMAL:
        raise MalformedResponse(UPSTREAM, "a normal answer without data")
    raise _error(code, message)


def _gateway_error(response: httpx.Response) -> UpstreamError | None:
    """The gateway's OpenAPI_ServiceResponse, in XML or JSON; None for any other answer."""
    text = response.text.lstrip()
    if text.startswith("<"):
        fields = dict(_XML_FIELD.findall(text))
        if not fields:
            raise MalformedResponse(UPSTREAM, f"an XML answer without a reason: {text[:200]}")
    elif '"OpenAPI_ServiceResponse"' in text:
        fields = response.json()["OpenAPI_ServiceResponse"]["cmmMsgHeader"]
    else:
        return None
    code = str(fields.get("returnReasonCode", ""))
    reason = fields.get("returnAuthMsg") or fields.get("errMsg") or "no reason given"
    return _error(code, f"gateway refused the call: {reason}")


def _error(code: str, message: str) -> UpstreamError:
    kind = _FAILURES.get(code, UpstreamRejected)
    return kind(UPSTREAM, f"{message} (code {code or 'none'})")
