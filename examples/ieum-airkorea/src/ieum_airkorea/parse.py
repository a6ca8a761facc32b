"""AirKorea's answers into typed values.

Every value is a string; "-" or "" means not measured; a non-empty flag next to a value
("점검및교정", "통신장애") means it is not to be trusted. dataTime is KST and labels the
end of the hour averaged, so midnight is written "24:00" of the day before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from adapters.errors import MalformedResponse, UpstreamRateLimited, UpstreamRejected
from adapters.kinds import POLLUTANTS, StationMeasurement

UPSTREAM = "airkorea"
KST = timezone(timedelta(hours=9), "KST")
MISSING = frozenset({"-", ""})
_QUOTA_CODES = frozenset({"22", "23"})
_NO_DATA = "03"
_GATEWAY_REASON = re.compile(r"<returnAuthMsg>(.*?)</returnAuthMsg>|<errMsg>(.*?)</errMsg>")


@dataclass(frozen=True, slots=True)
class Station:
    name: str
    address: str
    lat: float
    lng: float


def items(response: httpx.Response) -> list[dict[str, Any]]:
    """The items of a data.go.kr envelope, whatever shape this answer gave them."""
    if response.text.lstrip().startswith("<"):
        reasons = [a or b for a, b in _GATEWAY_REASON.findall(response.text)]
        raise UpstreamRejected(UPSTREAM, f"gateway refused the call: {' / '.join(reasons)}")
    answer = response.json()["response"]
    code, message = answer["header"]["resultCode"], answer["header"].get("resultMsg", "")
    if code in _QUOTA_CODES:
        raise UpstreamRateLimited(UPSTREAM, f"quota exceeded (result code {code} {message})")
    if code == _NO_DATA:
        return []
    if code != "00":
        raise UpstreamRejected(UPSTREAM, f"result code {code} {message}")
    found = answer["body"]["items"]
    if found in ("", None):
        return []
    if isinstance(found, dict):
        found = found["item"]
    if isinstance(found, dict):  # a single result is an object, not a list
        found = [found]
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise MalformedResponse(UPSTREAM, f"items is a {type(found).__name__}, not a list")
    return found


def stations(response: httpx.Response) -> list[Station]:
    """getMsrstnList items. Note AirKorea's dmX is the latitude and dmY the longitude."""
    return [
        Station(item["stationName"], item["addr"], float(item["dmX"]), float(item["dmY"]))
        for item in items(response)
    ]


def measured_at(data_time: str) -> datetime:
    day, clock = data_time.split(" ")
    hour, minute = (int(part) for part in clock.split(":"))
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=KST)
    return (start + timedelta(hours=hour, minutes=minute)).astimezone(UTC)


def value(raw: object) -> float | None:
    if raw is None or raw in MISSING:
        return None
    if not isinstance(raw, str | int | float):
        raise MalformedResponse(UPSTREAM, f"value {raw!r} is not a number")
    return float(raw)


def measurement(station: Station, item: dict[str, Any]) -> StationMeasurement:
    values: dict[str, float | None] = {}
    flags: list[tuple[str, str]] = []
    for pollutant in POLLUTANTS:
        flag = item.get(f"{pollutant}Flag")
        if flag:
            flags.append((pollutant, flag))
            values[pollutant] = None
        else:
            values[pollutant] = value(item.get(f"{pollutant}Value"))
    return StationMeasurement(
        station=station.name,
        address=station.address,
        lat=station.lat,
        lng=station.lng,
        measured_at=measured_at(item["dataTime"]),
        khai=value(item.get("khaiValue")),
        flags=tuple(flags),
        **values,
    )


def latest(station: Station, response: httpx.Response) -> StationMeasurement | None:
    """The newest row of a getMsrstnAcctoRltmMesureDnsty answer (rows come newest first)."""
    rows = items(response)
    return measurement(station, rows[0]) if rows else None
