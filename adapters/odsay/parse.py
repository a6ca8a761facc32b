"""searchPubTransPath answers into LocalPaths, and its errors into UpstreamErrors.

A walk subPath carries only its time and distance: its ends are the neighbouring rides'
stations (their exits when the service names one) or the points asked about. Numbers may
come as JSON numbers or as strings, coordinates too. "Within 700 m" becomes one walk
measured here; the codes that mean no way by bus or subway become an empty list.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from adapters.errors import (
    MalformedResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from adapters.kinds import LegMode, LocalLeg, LocalPath
from adapters.odsay import walking
from adapters.odsay.wire import BUS_KINDS, NO_PATH, REGIONS, UPSTREAM, Code, Traffic

_MODES = {Traffic.SUBWAY: LegMode.SUBWAY, Traffic.BUS: LegMode.BUS}
_TRAFFIC = frozenset(traffic.value for traffic in Traffic)
_LATITUDES, _LONGITUDES = (33.0, 39.0), (124.0, 132.0)  # Korea, with its islands


@dataclass(frozen=True)
class Point:
    lat: float
    lng: float


def paths(
    response: httpx.Response, origin: Point, destination: Point, limit: int | None = None
) -> list[LocalPath]:
    """The paths of one answer, in the service's order; the first `limit` when given (the
    others are not read: a journey shows one, and reading a path is most of the CPU of
    reading an answer)."""
    answer = orjson.loads(response.content)
    if not isinstance(answer, dict):
        raise MalformedResponse(UPSTREAM, f"the answer is a {type(answer).__name__}")
    if "error" in answer:
        code, message = _reported(answer["error"])
        if code == Code.TOO_CLOSE:
            return [walk_only(origin, destination)]
        if code in NO_PATH:
            return []
        raise _failure(code, message)
    result = answer.get("result")
    if not isinstance(result, dict):
        raise MalformedResponse(UPSTREAM, "the answer has neither a result nor an error")
    found = result.get("path") or []
    if not isinstance(found, list):
        raise MalformedResponse(UPSTREAM, f"result.path is a {type(found).__name__}")
    converted = (path(_object(item, "path[]"), origin, destination) for item in found)
    return list(itertools.islice((one for one in converted if one is not None), limit))


def refusal(response: httpx.Response) -> UpstreamError:
    """A 4xx answer: the service's error when the body carries one."""
    try:
        answer = orjson.loads(response.content)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and "error" in answer:
        return _failure(*_reported(answer["error"]))
    return UpstreamRejected(UPSTREAM, f"HTTP {response.status_code}: {response.text[:200]}")


def path(item: dict[str, Any], origin: Point, destination: Point) -> LocalPath | None:
    """One path; None for one with a kind of traffic other than walk, bus and subway."""
    info = _object(item.get("info"), "path.info")
    steps = [_object(step, "subPath[]") for step in _list(item.get("subPath"), "path.subPath")]
    if not steps:
        raise MalformedResponse(UPSTREAM, "a path without subPath")
    kinds = [_count(step, "trafficType") for step in steps]
    if not _TRAFFIC.issuperset(kinds):
        return None
    rides = [n for n, kind in enumerate(kinds) if kind != Traffic.WALK]
    legs: list[LocalLeg] = []
    for n, step in enumerate(steps):
        if kinds[n] != Traffic.WALK:
            legs.append(_ride(step, Traffic(kinds[n])))
            continue
        before = next((steps[r] for r in reversed(rides) if r < n), None)
        after = next((steps[r] for r in rides if r > n), None)
        walk = _walk(step, before, after, origin, destination)
        if walk.minutes or walk.meters:  # an empty step between two rides says nothing
            legs.append(walk)
    return LocalPath(
        minutes=_count(info, "totalTime"),
        fare=_count(info, "payment"),
        walk_meters=_count(info, "totalWalk"),
        transfers=max(0, len(rides) - 1),
        legs=tuple(legs),
    )


def walk_only(origin: Point, destination: Point) -> LocalPath:
    """The walk the service declines to plan: too short for a bus or subway."""
    meters = walking.walk_m(origin.lat, origin.lng, destination.lat, destination.lng)
    minutes = walking.minutes(meters)
    leg = LocalLeg(
        LegMode.WALK, minutes, meters, "", "", origin.lat, origin.lng, destination.lat,
        destination.lng, "", 0,
    )  # fmt: skip
    return LocalPath(minutes=minutes, fare=0, walk_meters=meters, transfers=0, legs=(leg,))


def _ride(step: dict[str, Any], traffic: Traffic) -> LocalLeg:
    lanes = _list(step.get("lane"), "subPath.lane")
    if not lanes:
        raise MalformedResponse(UPSTREAM, f"a {traffic.name.lower()} subPath without lane")
    start, end = _end(step, "start"), _end(step, "end")
    return LocalLeg(
        mode=_MODES[traffic],
        minutes=_count(step, "sectionTime"),
        meters=_count(step, "distance"),
        from_name=_text(step, "startName"),
        to_name=_text(step, "endName"),
        from_lat=start.lat,
        from_lng=start.lng,
        to_lat=end.lat,
        to_lng=end.lng,
        line=_line(traffic, _object(lanes[0], "lane[]")),
        stops=_count(step, "stationCount"),
    )


def _walk(
    step: dict[str, Any],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    origin: Point,
    destination: Point,
) -> LocalLeg:
    start = _exit(before, "end") if before else origin
    end = _exit(after, "start") if after else destination
    return LocalLeg(
        mode=LegMode.WALK,
        minutes=_count(step, "sectionTime"),
        meters=_count(step, "distance"),
        from_name=_text(before, "endName") if before else "",
        to_name=_text(after, "startName") if after else "",
        from_lat=start.lat,
        from_lng=start.lng,
        to_lat=end.lat,
        to_lng=end.lng,
        line="",
        stops=0,
    )


def _exit(ride: dict[str, Any], side: str) -> Point:
    """Where a walk meets a ride: the station exit the service names, else the stop."""
    if ride.get(f"{side}ExitX") not in (None, "") and ride.get(f"{side}ExitY") not in (None, ""):
        return _end(ride, f"{side}Exit")
    return _end(ride, side)


def _end(step: dict[str, Any], prefix: str) -> Point:
    lat = _coordinate(step, f"{prefix}Y", _LATITUDES)
    return Point(lat, _coordinate(step, f"{prefix}X", _LONGITUDES))


def _line(traffic: Traffic, lane: dict[str, Any]) -> str:
    if traffic == Traffic.BUS:
        number = _text(lane, "busNo")
        kind = BUS_KINDS.get(_count(lane, "type")) if "type" in lane else None
        return f"{kind} {number}" if kind else number
    region, _, rest = _text(lane, "name").partition(" ")
    return rest.strip() if region in REGIONS and rest.strip() else _text(lane, "name")


def _reported(error: object) -> tuple[str, str]:
    """(code, message) of an error object, or of the first of a list of them."""
    if isinstance(error, list) and error:
        error = error[0]
    if not isinstance(error, dict):
        raise MalformedResponse(UPSTREAM, f"an error that is not an object: {error!r:.200}")
    message = error.get("msg") or error.get("message") or "no message"
    return str(error.get("code", "")).strip(), str(message)


def _failure(code: str, message: str) -> UpstreamError:
    if "ApiKeyAuthFailed" in message:
        return UpstreamRejected(UPSTREAM, f"the API key was refused: {message} (code {code})")
    if code == Code.RATE_LIMITED:
        return UpstreamRateLimited(UPSTREAM, f"{message} (code {code})")
    if code == Code.SERVER_ERROR:
        return UpstreamServerError(UPSTREAM, f"{message} (code {code})")
    return UpstreamRejected(UPSTREAM, f"{message} (code {code or 'none'})")


def _count(item: dict[str, Any], field: str) -> int:
    """A whole number >= 0, as a number or a string ("12", "13900.0")."""
    raw = item.get(field)
    if type(raw) is int and raw >= 0:  # the usual answer: read at once
        return raw
    value: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if value is None or not value.is_integer() or value < 0:
        raise MalformedResponse(UPSTREAM, f"{field} is {raw!r}, not a whole number")
    return int(value)


def _coordinate(item: dict[str, Any], field: str, bounds: tuple[float, float]) -> float:
    raw = item.get(field)
    if type(raw) is float and bounds[0] <= raw <= bounds[1]:  # the usual answer
        return raw
    try:
        value = float(raw) if isinstance(raw, int | float | str) else math.nan
    except ValueError:
        value = math.nan
    if isinstance(raw, bool) or not bounds[0] <= value <= bounds[1]:
        raise MalformedResponse(UPSTREAM, f"{field} is {raw!r}, not a coordinate in Korea")
    return value


def _text(item: dict[str, Any], field: str) -> str:
    value = item.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a bus numbered 100 may come as a number
    if not isinstance(value, str) or not value.strip():
        raise MalformedResponse(UPSTREAM, f"{field} is {value!r}, not a text")
    return value.strip()


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedResponse(UPSTREAM, f"{what} is a {type(value).__name__}, not an object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedResponse(UPSTREAM, f"{what} is a {type(value).__name__}, not a list")
    return value
