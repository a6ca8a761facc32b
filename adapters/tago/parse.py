"""The service's answers into typed values, and its errors into UpstreamErrors.

Two shapes arrive: the standard data.go.kr envelope (`response.header.resultCode`, items in
`response.body.items.item`), and the gateway's `OpenAPI_ServiceResponse` (a bad key, a
quota), as XML even when JSON was asked, with HTTP 200 or 4xx. The gateway converts the
service's XML to JSON, so one item comes as an object instead of a list, no item as
`"items": ""`, and numbers as JSON numbers or strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from adapters.datagokr import Reason
from adapters.errors import (
    MalformedResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from adapters.kinds import ScheduledTrain
from adapters.tago.reference import TagoCity, TagoStation, VehicleKind
from adapters.tago.wire import MOMENT, UPSTREAM

KST = ZoneInfo("Asia/Seoul")

_FAILURES: dict[str, type[UpstreamError]] = {
    Reason.APPLICATION_ERROR: UpstreamServerError,
    Reason.DB_ERROR: UpstreamServerError,
    Reason.SERVICE_TIMEOUT: UpstreamServerError,
    Reason.UNKNOWN_ERROR: UpstreamServerError,
    Reason.QUOTA_EXCEEDED: UpstreamRateLimited,
    Reason.PER_SECOND_EXCEEDED: UpstreamRateLimited,
}
_XML_FIELD = re.compile(r"<(errMsg|returnAuthMsg|returnReasonCode)>\s*(.*?)\s*</\1>", re.DOTALL)

Items = list[dict[str, Any]]


class ServiceRetired(UpstreamRejected):
    """Code 12, NO_OPENAPI_SERVICE_ERROR: this path of the service is not (or no longer)
    published. The client tries the other one."""


@dataclass(frozen=True)
class Page:
    items: Items
    rows: int | None  # numOfRows as the service echoes it: its page size
    total_count: int | None  # what the service claims; not trusted for paging


def page(response: httpx.Response) -> Page:
    """One page of items: empty for no data; errors raised."""
    gateway = _gateway_error(response)
    if gateway is not None:
        raise gateway
    answer = orjson.loads(response.content)
    if not isinstance(answer, dict) or not isinstance(answer.get("response"), dict):
        raise MalformedResponse(UPSTREAM, "the answer has no response object")
    header = answer["response"].get("header") or {}
    code = _code(header.get("resultCode"))
    if not code:
        raise MalformedResponse(UPSTREAM, "the answer has no resultCode")
    if code == Reason.NO_DATA:
        return Page([], None, 0)
    if code != Reason.NORMAL:
        raise _error(code, str(header.get("resultMsg", "")))
    body = answer["response"].get("body")
    if not isinstance(body, dict):
        raise MalformedResponse(UPSTREAM, "a normal answer without a body")
    items = _items(body.get("items"))
    return Page(items, _count(body.get("numOfRows")), _count(body.get("totalCount")))


def refusal(response: httpx.Response) -> UpstreamError:
    """A 4xx answer: the gateway's reason when it gives one."""
    gateway = _gateway_error(response)
    if gateway is not None:
        return gateway
    return UpstreamRejected(UPSTREAM, f"HTTP {response.status_code}: {response.text[:200]}")


def scheduled(item: dict[str, Any], dep_station: str, arr_station: str) -> ScheduledTrain:
    """One item of getStrtpntAlocFndTrainInfo, between the stations that were asked."""
    departs, arrives = _moment(item, "depplandtime"), _moment(item, "arrplandtime")
    if arrives <= departs:
        raise MalformedResponse(UPSTREAM, f"train {item.get('trainno')} arrives before it leaves")
    return ScheduledTrain(
        train_no=_text(item, "trainno"),
        grade=_text(item, "traingradename"),
        dep_station=dep_station,
        arr_station=arr_station,
        departs_at=departs,
        arrives_at=arrives,
        adult_fare=_whole(item, "adultcharge"),
    )


def city(item: dict[str, Any]) -> TagoCity:
    return TagoCity(_text(item, "citycode"), _text(item, "cityname"))


def station(item: dict[str, Any], city_code: str) -> TagoStation:
    return TagoStation(_text(item, "nodeid"), _text(item, "nodename"), city_code)


def vehicle_kind(item: dict[str, Any]) -> VehicleKind:
    kind_id = _text(item, "vehiclekndid")
    return VehicleKind(
        kind_id.zfill(2) if kind_id.isdigit() else kind_id, _text(item, "vehiclekndnm")
    )


def _items(found: object) -> Items:
    if found is None or found == "":
        return []
    if not isinstance(found, dict):
        raise MalformedResponse(UPSTREAM, f"items is a {type(found).__name__}, not an object")
    item = found.get("item")
    if item is None or item == "":
        return []
    if isinstance(item, dict):
        return [item]
    if not isinstance(item, list) or not all(isinstance(one, dict) for one in item):
        raise MalformedResponse(UPSTREAM, f"items.item is a {type(item).__name__}, not a list")
    return item


def _code(raw: object) -> str:
    """A result code as two digits ("0" and 0 are "00"); "" when there is none."""
    text = "" if raw is None else str(raw).strip()
    return text.zfill(2) if text.isdigit() else text


def _count(raw: object) -> int | None:
    try:
        return int(str(raw))
    except ValueError:
        return None


def _text(item: dict[str, Any], field: str) -> str:
    """A text field; the conversion may have made a number of it (trainno 101)."""
    value = item.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise MalformedResponse(UPSTREAM, f"{field} is {value!r}, not a text")
    return value.strip()


def _whole(item: dict[str, Any], field: str) -> int:
    value = item.get(field)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    raise MalformedResponse(UPSTREAM, f"{field} {value!r} is not a whole number of won")


def _moment(item: dict[str, Any], field: str) -> datetime:
    """YYYYMMDDHHMISS in Korean time, as a string or a number."""
    text = _text(item, field)
    try:
        return _korean_time(text)
    except ValueError:
        raise MalformedResponse(UPSTREAM, f"{field} {text!r} is not YYYYMMDDHHMISS") from None


@lru_cache(maxsize=8192)
def _korean_time(text: str) -> datetime:
    """Fourteen digits are read by slicing (strptime was a tenth of a journey search's
    CPU); strptime reads the rest, as leniently as before. Kept: a train's times come
    back in every list it is in (a search asks for about nine), and reading two times was
    half of the CPU of reading a train."""
    if len(text) == 14 and text.isascii() and text.isdigit():
        return datetime(
            int(text[:4]), int(text[4:6]), int(text[6:8]),
            int(text[8:10]), int(text[10:12]), int(text[12:]), tzinfo=KST,
        )  # fmt: skip
    return datetime.strptime(text, MOMENT).replace(tzinfo=KST)


def _gateway_error(response: httpx.Response) -> UpstreamError | None:
    """The gateway's OpenAPI_ServiceResponse, in XML or JSON; None for any other answer."""
    body = response.content.lstrip()
    if body.startswith(b"<"):
        text = response.text.lstrip()
        fields = dict(_XML_FIELD.findall(text))
        if not fields:
            raise MalformedResponse(UPSTREAM, f"an XML answer without a reason: {text[:200]}")
    elif b'"OpenAPI_ServiceResponse"' in body:
        fields = orjson.loads(body)["OpenAPI_ServiceResponse"]["cmmMsgHeader"]
    else:
        return None
    code = _code(fields.get("returnReasonCode"))
    reason = fields.get("returnAuthMsg") or fields.get("errMsg") or "no reason given"
    return _error(code, f"gateway refused the call: {reason}")


def _error(code: str, message: str) -> UpstreamError:
    if code == Reason.NO_SERVICE:
        return ServiceRetired(UPSTREAM, f"{message or 'NO_OPENAPI_SERVICE_ERROR'} (code 12)")
    kind = _FAILURES.get(code, UpstreamRejected)
    return kind(UPSTREAM, f"{message} (code {code or 'none'})")
