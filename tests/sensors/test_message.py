"""The fast message parser accepts exactly what the reference parser accepts, with the
same values, and every message it refuses gets the reference's reason."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from resolvers.sensors.catalog import metrics
from resolvers.sensors.message import Reading, Rejected, parse, parse_strict

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def body(**changes: object) -> dict[str, object]:
    message: dict[str, object] = {
        "schema": "ieum.telemetry.v1",
        "device_id": "unit-1",
        "vehicle_id": "taxi-1",
        "ts": (NOW - timedelta(minutes=1)).isoformat(),
        "position": {"lat": 37.5665, "lng": 126.978},
        "speed_kmh": 31.5,
        "heading_deg": 270,
        "metrics": {"pm2_5": 17.5, "pm10": 40, "noise_laeq": 61.25},
    }
    message.update(changes)
    return message


def dumps(message: dict[str, object]) -> bytes:
    return json.dumps(message).encode()  # unlike orjson, writes integers past 64 bits


def outcome(parser: object, raw: bytes) -> tuple[str, object]:
    """Comparable: the reading with its values packed (NaN != NaN), or the reason."""
    try:
        reading: Reading = parser(raw, NOW)  # type: ignore[operator]
    except Rejected as exc:
        return ("rejected", exc.reason)
    return ("accepted", replace(reading, values=()), reading.packed)


CASES = {
    "valid": body(),
    "int values": body(metrics={"pm2_5": 17, "co2": 400}),
    "null speed": body(speed_kmh=None),
    "no heading": {k: v for k, v in body().items() if k != "heading_deg"},
    "extra top-level field": body(firmware="2.1"),
    "every metric": body(metrics={m.name: m.min for m in metrics()}),
    "kst timestamp": body(ts=(NOW - timedelta(hours=1)).astimezone().isoformat()),
    "bool metric": body(metrics={"pm2_5": True}),
    "string metric": body(metrics={"pm2_5": "17"}),
    "null metric": body(metrics={"pm2_5": None}),
    "huge metric": body(metrics={"pm2_5": 10**400}),
    "out of range metric": body(metrics={"pm2_5": -1}),
    "unknown metric": body(metrics={"smog": 1}),
    "unknown metric beside known ones": body(metrics={"smog": 1, "pm2_5": 3}),
    "metric just over its range": body(metrics={"pm2_5": 1000.001}),
    "metric at its bounds": body(metrics={"pm2_5": 0, "pm10": 1000}),
    "speed at its bound": body(speed_kmh=250),
    "speed just over": body(speed_kmh=250.01),
    "heading just over": body(heading_deg=360.01),
    "empty metrics": body(metrics={}),
    "metrics not an object": body(metrics=[1, 2]),
    "wrong schema": body(schema="ieum.telemetry.v2"),
    "long device id": body(device_id="d" * 65),
    "empty vehicle id": body(vehicle_id=""),
    "naive timestamp": body(ts="2026-11-24T11:00:00"),
    "not a timestamp": body(ts="yesterday"),
    "future": body(ts=(NOW + timedelta(hours=1)).isoformat()),
    "stale": body(ts=(NOW - timedelta(days=8)).isoformat()),
    "outside korea": body(position={"lat": 35.68, "lng": 139.76}),
    "bool latitude": body(position={"lat": True, "lng": 126.9}),
    "speed too high": body(speed_kmh=300),
    "negative heading": body(heading_deg=-1),
    "bool speed": body(speed_kmh=False),
}


@pytest.mark.parametrize("name", CASES)
def test_fast_parser_agrees_with_the_reference(name: str) -> None:
    raw = dumps(CASES[name])
    assert outcome(parse, raw) == outcome(parse_strict, raw)


def test_non_json_and_duplicate_keys_agree() -> None:
    for raw in (
        b"",
        b"[]",
        b"{",
        b"\xff\xfe",
        dumps(body())[:-1] + b',"metrics": {"pm10": 5}}',  # a repeated key
        dumps(body(metrics={"pm2_5": 1.0}))[:-2] + b', "pm2_5": 2.0}}',
    ):
        assert outcome(parse, raw) == outcome(parse_strict, raw), raw


def test_random_mutations_agree() -> None:
    rng = random.Random(11)
    catalog = metrics()
    names = [m.name for m in catalog]
    junk: list[object] = [None, True, 0, -5, 1.5, 1e300, "", "x", [], {}, {"lat": 1}, 10**30]
    edges: list[object] = [-0.01, 250, 250.01, 360, 360.01, "ieum.telemetry.v1", "a" * 64]
    for _ in range(3000):
        message = body(metrics={rng.choice(names): rng.uniform(-10, 500) for _ in range(5)})
        for _ in range(rng.randint(1, 3)):
            key = rng.choice([*message, "metrics", "metrics", "position"])
            if key == "metrics":
                message["metrics"] = dict(message["metrics"])  # type: ignore[call-overload]
                m = rng.choice(catalog)
                name = rng.choice([m.name, m.name, m.name.upper()])
                value = rng.choice([*junk, m.min, m.max, m.min - 0.001, m.max + 0.001])
                message["metrics"][name] = value  # type: ignore[index]
            elif key == "position":
                message["position"] = {"lat": rng.choice(junk), "lng": 127.0}
            else:
                message[key] = rng.choice([*junk, *edges])
        raw = dumps(message)
        assert outcome(parse, raw) == outcome(parse_strict, raw), message
