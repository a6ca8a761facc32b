"""The sensors API over real HTTP and WebSocket, on data ingested through the real broker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import random
import statistics
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import websockets
from aiokafka import AIOKafkaProducer
from h3.api import basic_int as h3
from shapely.geometry import LineString, Point, Polygon, shape

from hub.app import create_app
from hub.core.monitoring import REGISTRY
from hub.core.servers import Servers
from hub.serve import serving
from resolvers.sensors import live_feed, queries
from resolvers.sensors.live import LiveReadings
from resolvers.sensors.message import H3_RESOLUTION, Reading, parse
from resolvers.sensors.state import SensorsState
from schema.pagination import encode_cursor
from tests.conftest import local_settings
from tests.oauth import Hub
from tests.sensors.helpers import (
    message,
    new_topic,
    partner,
    produce,
    register,
    wait_ingested,
    workers,
)

pytestmark = pytest.mark.db

# Three places on 세종대로 in 중구, each its own resolution-9 cell.
PLACES = [(37.5705, 126.9769), (37.5665, 126.9780), (37.5625, 126.9770)]
ALONE = (37.5512, 126.9882)  # 남산: visited by one vehicle only


@dataclass
class World:
    hub: Hub
    live: LiveReadings
    topic: str
    group: str
    owner: str
    fleet: list[tuple[str, str]]
    start: datetime
    pm25: dict[int, list[float]]  # cell -> the PM2.5 values sent there
    database_url: str
    bootstrap: str

    async def token(self, scopes: str) -> str:
        return await self.hub.token(scopes)

    async def query(self, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.hub.url, timeout=30) as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str, auth_hub: Hub) -> AsyncIterator[World]:
    """A hub whose live fan-out is fed by an ingest worker, and 5 vehicles' readings."""
    settings = local_settings()
    app = create_app(settings, Servers(migrated_url, kafka_bootstrap))
    async with serving(app, settings.port) as url:
        live = app.state.domain_states[SensorsState].live
        hub = Hub(url, auth_hub.pool)
        tag = uuid.uuid4().hex[:6]
        owner = await partner(hub.pool)
        fleet = [(f"u-{tag}-{i}", f"car-{tag}-{i}") for i in range(5)]
        await register(hub.pool, owner, fleet)
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
        pm25: dict[int, list[float]] = {}
        values = []
        for step in range(12):
            ts = start + timedelta(seconds=30 * step)
            for i, (device, vehicle) in enumerate(fleet):
                lat, lng = PLACES[(i + step) % 3]
                pm = 20.0 + 5 * ((i + step) % 3) + i
                cell = h3.latlng_to_cell(lat, lng, H3_RESOLUTION)
                pm25.setdefault(cell, []).append(pm)
                metrics = {
                    "pm2_5": pm,
                    "pm10": pm * 1.5,
                    "illuminance": 8.0,
                    "pedestrian_count": 2.0,
                    "crowd_density": 0.5,
                    "noise_laeq": 80.0,
                    "streetlight_outages": 0.0,
                    "cctv_visible": 1.0,
                    "temperature": 19.2,  # not exact in float32
                }
                values.append((vehicle.encode(), message(device, vehicle, ts, lat, lng, metrics)))
        device, vehicle = fleet[0]
        alone_at = start + timedelta(seconds=5)  # not a duplicate of its reading at `start`
        values.append(
            (vehicle.encode(), message(device, vehicle, alone_at, *ALONE, {"pm2_5": 99.0}))
        )
        topic, group = new_topic(), f"g-{tag}"
        await produce(kafka_bootstrap, topic, values)
        async with workers(migrated_url, kafka_bootstrap, topic, group, on_commit=live.publish):
            await wait_ingested(hub.pool, kafka_bootstrap, topic, group)
            yield World(
                hub, live, topic, group, owner, fleet, start, pm25, migrated_url, kafka_bootstrap
            )


def cell_str(lat: float, lng: float) -> str:
    return h3.int_to_str(h3.latlng_to_cell(lat, lng, H3_RESOLUTION))


async def test_metric_catalog_is_open_data(world: World) -> None:
    body = await world.query("{ metrics { name unit min max description descriptionKo } }")
    metrics = {m["name"]: m for m in body["data"]["metrics"]}
    assert len(metrics) >= 50
    assert metrics["pm2_5"]["unit"] == "µg/m³"
    assert metrics["noise_laeq"]["descriptionKo"] == "등가소음도(LAeq)"


REGISTER = """mutation($d: String!, $v: String!) {
  registerSensorDevice(input: {deviceId: $d, vehicleId: $v}) { deviceId vehicleId disabled }
}"""


async def test_partners_manage_their_own_devices(world: World) -> None:
    mine, theirs = await world.token("sensors:ingest"), await world.token("sensors:ingest")
    device = f"dev-{uuid.uuid4().hex[:6]}"
    first = await world.query(REGISTER, mine, d=device, v="taxi-1")
    assert first["data"]["registerSensorDevice"] == {
        "deviceId": device,
        "vehicleId": "taxi-1",
        "disabled": False,
    }
    moved = await world.query(REGISTER, mine, d=device, v="taxi-2")  # moved to another taxi
    assert moved["data"]["registerSensorDevice"]["vehicleId"] == "taxi-2"
    stolen = await world.query(REGISTER, theirs, d=device, v="taxi-3")
    assert stolen["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    listed = await world.query("{ sensorDevices { deviceId } }", mine)
    assert [d["deviceId"] for d in listed["data"]["sensorDevices"]] == [device]
    assert (await world.query("{ sensorDevices { deviceId } }", theirs))["data"] == {
        "sensorDevices": []
    }
    disabled = await world.query(
        "mutation($d: String!) { disableSensorDevice(deviceId: $d) { disabled } }", mine, d=device
    )
    assert disabled["data"]["disableSensorDevice"] == {"disabled": True}
    reader = await world.token("sensors:read")
    refused = await world.query(REGISTER, reader, d="x-1", v="t")
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


HEATMAP = """query($cells: [String!], $from: DateTime!, $to: DateTime!) {
  sensorHeatmap(area: {cells: $cells}, metric: "pm2_5", from: $from, to: $to, resolution: 9) {
    cell boundary value { count mean }
  }
}"""


async def test_heatmap_applies_k_anonymity(world: World) -> None:
    reader = await world.token("sensors:read")
    cells = [cell_str(*p) for p in [*PLACES, ALONE]]
    body = await world.query(
        HEATMAP,
        reader,
        cells=cells,
        **{"from": world.start.isoformat(), "to": (world.start + timedelta(hours=1)).isoformat()},
    )
    shown = {c["cell"]: c for c in body["data"]["sensorHeatmap"]}
    assert set(shown) == {cell_str(*p) for p in PLACES}  # 남산 had one vehicle: hidden
    for cell, values in world.pm25.items():
        entry = shown[h3.int_to_str(cell)]
        assert entry["value"]["count"] == len(values)
        assert entry["value"]["mean"] == pytest.approx(statistics.fmean(values))
        assert entry["boundary"]["type"] == "Polygon"


COARSE_HEATMAP = """query($cells: [String!], $from: DateTime!, $to: DateTime!, $res: Int!) {
  sensorHeatmap(area: {cells: $cells}, metric: "pm2_5", from: $from, to: $to, resolution: $res) {
    cell value { count mean }
  }
}"""


@pytest.mark.parametrize(
    ("resolution", "with_alone"), [(8, False), (7, False), (6, True), (5, True)]
)
async def test_heatmap_merges_cells_into_their_parents(
    world: World, resolution: int, with_alone: bool
) -> None:
    """Each coarser cell holds exactly the readings of its resolution-9 children (grouped
    by PostgreSQL from the H3 bits); 남산's one vehicle shows only inside a parent shared
    with the busy places."""
    reader = await world.token("sensors:read")
    expected: dict[int, list[float]] = {}
    for cell, values in world.pm25.items():
        expected.setdefault(h3.cell_to_parent(cell, resolution), []).extend(values)
    alone = h3.cell_to_parent(h3.latlng_to_cell(*ALONE, H3_RESOLUTION), resolution)
    assert (alone in expected) is with_alone
    if with_alone:
        expected[alone].append(99.0)
    body = await world.query(
        COARSE_HEATMAP,
        reader,
        cells=[cell_str(*p) for p in [*PLACES, ALONE]],
        res=resolution,
        **{"from": world.start.isoformat(), "to": (world.start + timedelta(hours=1)).isoformat()},
    )
    shown = {c["cell"]: c["value"] for c in body["data"]["sensorHeatmap"]}
    assert set(shown) == {h3.int_to_str(parent) for parent in expected}
    for parent, values in expected.items():
        assert shown[h3.int_to_str(parent)]["count"] == len(values)
        assert shown[h3.int_to_str(parent)]["mean"] == pytest.approx(statistics.fmean(values))


async def test_sql_parent_cell_is_h3s(migrated_url: str) -> None:
    """The bit arithmetic the heat map groups by, against h3's cellToParent."""
    rng = random.Random(7)
    cells = [
        h3.latlng_to_cell(rng.uniform(33, 39), rng.uniform(124, 132), H3_RESOLUTION)
        for _ in range(2000)
    ]
    conn = await asyncpg.connect(migrated_url)
    try:
        for resolution in range(H3_RESOLUTION + 1):
            parents = await conn.fetchval(
                f"SELECT array_agg({queries._PARENT.replace('$6', '$2')} ORDER BY i)"
                " FROM unnest($1::bigint[]) WITH ORDINALITY AS t(cell, i)",
                cells,
                resolution,
            )
            assert parents == [h3.cell_to_parent(c, resolution) for c in cells]
    finally:
        await conn.close()


async def test_series_needs_a_token(world: World) -> None:
    body = await world.query(
        'query { sensorSeries(area: {district: "11140"}, metric: "pm2_5",'
        ' from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z") { bucket } }'
    )
    assert body["data"] == {"sensorSeries": None}
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


MINUTE_SERIES = """query($cells: [String!], $from: DateTime!, $to: DateTime!) {
  sensorSeries(area: {cells: $cells}, metric: "pm2_5", from: $from, to: $to, bucket: MINUTE) {
    bucket value { count mean }
  }
}"""


def test_a_window_takes_the_minutes_that_begin_inside_it() -> None:
    at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    second = timedelta(seconds=1)
    assert queries.bucket_bounds(at, at + 30 * second) == (at, at + 60 * second)
    assert queries.bucket_bounds(at + 10 * second, at + 60 * second) == (
        at + 60 * second,
        at + 60 * second,
    )
    tiny = timedelta(microseconds=1)
    assert queries.bucket_bounds(at - tiny, at + tiny) == (at, at + 60 * second)


async def test_windows_over_the_same_minutes_share_one_answer(world: World) -> None:
    """Clients asking from their own clocks (seconds apart) hit one cached answer."""
    reader = await world.token("sensors:read")
    cells = [cell_str(*p) for p in PLACES]

    def hits() -> float:
        return (
            REGISTRY.get_sample_value("ieum_aggregate_cache_lookups_total", {"result": "hit"})
            or 0.0
        )

    async def series(start: datetime, end: datetime) -> list[dict[str, Any]]:
        window = {"from": start.isoformat(), "to": end.isoformat()}
        body = await world.query(MINUTE_SERIES, reader, cells=cells, **window)
        return body["data"]["sensorSeries"]

    t0, second = world.start, timedelta(seconds=1)
    first = await series(t0 + 10 * second, t0 + 360 * second + 123 * timedelta(microseconds=1))
    before = hits()
    assert await series(t0 + 60 * second, t0 + 420 * second) == first  # minutes 1 to 6
    assert hits() == before + 1
    with_first_minute = await series(t0, t0 + 420 * second)
    assert hits() == before + 1
    assert with_first_minute[1:] == first
    assert with_first_minute[0]["bucket"] == t0.isoformat()
    assert [p["bucket"] for p in first] == [
        (t0 + timedelta(minutes=i)).isoformat()
        for i in range(1, 6)  # readings: minutes 0-5
    ]


READINGS = """query Readings($cells: [String!], $from: DateTime!, $to: DateTime!,
                       $first: Int! = 7, $after: String) {
  sensorReadings(area: {cells: $cells}, from: $from, to: $to, first: $first, after: $after) {
    edges {
      cursor
      node {
        ts cell position { lat lng precise } exactPosition { lat lng precise } vehicleId
        values { metric value }
      }
    }
    nodes { ts cell }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def reading_pages(world: World, token: str, first: int = 7) -> list[dict[str, Any]]:
    """Every page of the fixture's readings, `first` at a time: each page's response."""
    pages: list[dict[str, Any]] = []
    after = None
    window = {"from": world.start.isoformat(), "to": (world.start + timedelta(hours=1)).isoformat()}
    cells = [cell_str(*p) for p in PLACES]
    while True:
        body = await world.query(READINGS, token, cells=cells, first=first, after=after, **window)
        pages.append(body)
        info = body["data"]["sensorReadings"]["pageInfo"]
        if not info["hasNextPage"]:
            return pages
        after = info["endCursor"]


def nodes_of(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [edge["node"] for body in pages for edge in body["data"]["sensorReadings"]["edges"]]


async def all_readings(world: World, token: str) -> list[dict[str, Any]]:
    return nodes_of(await reading_pages(world, token))


def client_of(token: str) -> str:
    """The client id a hub access token (a JWT) names."""
    claims = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["client_id"])


async def audited(world: World, token: str) -> set[tuple[str, str, str, str, str | None]]:
    """What the audit log holds of the token's reads: (action, subject type, subject,
    field, operation)."""
    rows = await world.hub.pool.fetch(
        "SELECT action, subject_type, subject, fields, operation FROM audit_log"
        " WHERE client_id = $1",
        client_of(token),
    )
    return {
        (row["action"], row["subject_type"], row["subject"], field, row["operation"])
        for row in rows
        for field in row["fields"]
    }


async def test_raw_readings_page_through_every_reading_once(world: World) -> None:
    token = await world.token("sensors:read sensors:precise")
    pages = await reading_pages(world, token)
    assert len(pages) == 9  # 60 readings, 7 a page
    device_of = {vehicle: device for device, vehicle in world.fleet}
    readings = nodes_of(pages)
    assert len(readings) == 60
    keys = [(r["ts"], device_of[r["vehicleId"]]) for r in readings]
    assert keys == sorted(set(keys))  # each once, by time and then unit
    for index, body in enumerate(pages):
        page = body["data"]["sensorReadings"]
        info, edges = page["pageInfo"], page["edges"]
        assert "errors" not in body
        assert page["nodes"] == [{"ts": e["node"]["ts"], "cell": e["node"]["cell"]} for e in edges]
        assert info["hasNextPage"] == (index < len(pages) - 1)
        assert info["hasPreviousPage"] == (index > 0)
        assert (info["startCursor"], info["endCursor"]) == (edges[0]["cursor"], edges[-1]["cursor"])
    assert len(pages[-1]["data"]["sensorReadings"]["edges"]) == 60 - 8 * 7

    # Any item's cursor continues right after that item.
    window = {"from": world.start.isoformat(), "to": (world.start + timedelta(hours=1)).isoformat()}
    cells = [cell_str(*p) for p in PLACES]
    middle = pages[2]["data"]["sensorReadings"]["edges"][3]["cursor"]
    body = await world.query(READINGS, token, cells=cells, first=2, after=middle, **window)
    assert [e["node"] for e in body["data"]["sensorReadings"]["edges"]] == readings[18:20]


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "not a cursor",
        encode_cursor("2026-11-24T00:00:00+00:00"),  # not this list's key
        encode_cursor("yesterday", "u-1"),
        encode_cursor("2026-11-24T00:00:00", "u-1"),  # no time zone
        encode_cursor("2026-11-24T00:00:00+00:00", 5),
        encode_cursor("2026-11-24T00:00:00+00:00", "u-1\u0000"),
        encode_cursor("2026-11-24T00:00:00+00:00", "u-1\n"),
    ],
)
async def test_raw_readings_refuse_a_cursor_they_did_not_give(world: World, forged: str) -> None:
    window = {"from": world.start.isoformat(), "to": (world.start + timedelta(hours=1)).isoformat()}
    body = await world.query(
        READINGS,
        await world.token("sensors:read"),
        cells=[cell_str(*PLACES[0])],
        after=forged,
        **window,
    )
    assert body["data"] == {"sensorReadings": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}
    assert "endCursor" in error["message"]


async def test_raw_readings_hide_exact_positions_and_vehicles_without_sensors_precise(
    world: World,
) -> None:
    coarse_token = await world.token("sensors:read")
    pages = await reading_pages(world, coarse_token)
    coarse = nodes_of(pages)
    assert len(coarse) == 60
    assert len({(r["ts"], r["position"]["lat"], r["values"][0]["value"]) for r in coarse}) > 1
    assert [r["ts"] for r in coarse] == sorted(r["ts"] for r in coarse)
    for reading in coarse:
        lat, lng = h3.cell_to_latlng(h3.str_to_int(reading["cell"]))
        assert reading["position"] == {"lat": lat, "lng": lng, "precise": False}
        assert reading["exactPosition"] is None and reading["vehicleId"] is None
    errors = [error for body in pages for error in body["errors"]]
    assert len(errors) == 2 * 60  # the two gated fields of each reading, the rest answered
    assert {e["path"][-1] for e in errors} == {"exactPosition", "vehicleId"}
    for error in errors:
        assert error["extensions"]["code"] == "FORBIDDEN"
        assert error["extensions"]["requiredScopes"] == [["sensors:precise"]]
        assert "sensors:precise" in error["message"]
    assert await audited(world, coarse_token) == set()

    precise_token = await world.token("sensors:read sensors:precise")
    precise_pages = await reading_pages(world, precise_token)
    precise = nodes_of(precise_pages)
    assert [r["position"] for r in precise] == [r["position"] for r in coarse]  # still cells
    assert {(r["exactPosition"]["lat"], r["exactPosition"]["lng"]) for r in precise} == set(PLACES)
    assert all(r["exactPosition"]["precise"] for r in precise)
    vehicles = sorted(vehicle for _, vehicle in world.fleet)
    assert sorted({r["vehicleId"] for r in precise}) == vehicles
    # The reads of each vehicle's positions and id are in the audit log: one row per
    # page, vehicle and field, however many of its readings the page holds.
    assert await audited(world, precise_token) == {
        ("sensor_reading.read", "vehicle", vehicle, field, "Readings")
        for vehicle in vehicles
        for field in ("exact_position", "vehicle_id")
    }
    rows = await world.hub.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE client_id = $1", client_of(precise_token)
    )
    assert rows == 2 * sum(len({r["vehicleId"] for r in nodes_of([p])}) for p in precise_pages)


async def test_values_carry_no_float_noise(world: World) -> None:
    """19.2 is stored as float32; shown widened it would be 19.200000762939453."""
    token = await world.token("sensors:read")
    readings = await all_readings(world, token)
    shown = {v["value"] for r in readings for v in r["values"] if v["metric"] == "temperature"}
    assert shown == {19.2}
    series = await world.query(
        """query($cells: [String!]!, $from: DateTime!, $to: DateTime!) {
          sensorSeries(area: {cells: $cells}, metric: "temperature", from: $from, to: $to,
                       bucket: HOUR) { value { mean min max } } }""",
        token,
        cells=[cell_str(*p) for p in PLACES],
        **{"from": world.start.isoformat(), "to": (world.start + timedelta(hours=1)).isoformat()},
    )
    values = [p["value"] for p in series["data"]["sensorSeries"] if p["value"]]
    assert values and all(v == {"mean": 19.2, "min": 19.2, "max": 19.2} for v in values)


async def test_district_air_quality_is_open_data_with_the_ministrys_grade(world: World) -> None:
    body = await world.query(
        '{ district(code: "11140") { boundary airQuality { pm25 { value grade readings }'
        " pm10 { grade } } } }"
    )
    district = shape(body["data"]["district"]["boundary"])
    quality = body["data"]["district"]["airQuality"]
    values = [  # the readings whose cell centre lies in 중구 (광화문 is in 종로구)
        v
        for cell, cell_values in world.pm25.items()
        if district.contains(Point(*reversed(h3.cell_to_latlng(cell))))
        for v in cell_values
    ]
    assert 0 < len(values) < 60
    assert quality["pm25"]["readings"] == len(values)
    assert quality["pm25"]["value"] == pytest.approx(round(statistics.fmean(values), 1))
    assert quality["pm25"]["grade"] == "MODERATE"  # 16..35 µg/m³
    assert quality["pm10"]["grade"] == "MODERATE"  # 31..80 µg/m³


EXPOSURE = """query($path: [PointInput!]!, $at: DateTime!) {
  routeExposure(path: $path, at: $at, metric: "pm2_5", windowMinutes: 60) {
    unit average coverage segments { lengthM cells value { mean count } } worst { value { mean } }
  }
}"""


async def test_route_exposure_matches_an_independent_computation(world: World) -> None:
    path = [PLACES[0], PLACES[1], PLACES[2], (37.5560, 126.9730), (37.5500, 126.9700)]
    body = await world.query(
        EXPOSURE,
        await world.token("sensors:read"),
        path=[{"lat": lat, "lng": lng} for lat, lng in path],
        at=(world.start + timedelta(minutes=30)).isoformat(),
    )
    exposure = body["data"]["routeExposure"]
    # Independently: the cells whose hexagon the straight segment crosses (shapely), and
    # the raw values sent into those cells.
    expected_means, lengths = [], []
    for (a, b), segment in zip(itertools.pairwise(path), exposure["segments"], strict=True):
        line = LineString([(a[1], a[0]), (b[1], b[0])])
        values = [
            v
            for cell, cell_values in world.pm25.items()
            if Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(cell)]).intersects(line)
            for v in cell_values
        ]
        if values:
            assert segment["value"]["count"] == len(values)
            assert segment["value"]["mean"] == pytest.approx(statistics.fmean(values))
            expected_means.append(statistics.fmean(values))
            lengths.append(segment["lengthM"])
        else:
            assert segment["value"] is None
    assert exposure["average"] == pytest.approx(
        sum(m * w for m, w in zip(expected_means, lengths, strict=True)) / sum(lengths), rel=1e-3
    )
    assert exposure["worst"]["value"]["mean"] == pytest.approx(max(expected_means))
    assert 0 < exposure["coverage"] < 1  # the last segment has no data
    assert exposure["unit"] == "µg/m³"


async def test_safety_index_explains_each_factor(world: World) -> None:
    body = await world.query(
        """query($cells: [String!], $from: DateTime!, $to: DateTime!) {
          safetyIndex(area: {cells: $cells}, from: $from, to: $to) {
            cell index complete factors { name value weight contribution }
          }
        }""",
        await world.token("sensors:read"),
        cells=[cell_str(*PLACES[1])],
        **{
            "from": world.start.isoformat(),
            "to": (world.start + timedelta(minutes=10)).isoformat(),
        },
    )
    (cell,) = body["data"]["safetyIndex"]
    factors = {f["name"]: f for f in cell["factors"]}
    assert factors["darkness"]["contribution"] == pytest.approx(35 * (20 - 8) / 20)
    assert factors["isolation"]["contribution"] == pytest.approx(20 * (5 - 2) / 5)
    assert factors["noise"]["contribution"] == pytest.approx(10 * (80 - 70) / 20)
    assert factors["no_cctv"]["contribution"] == pytest.approx(10 * (2 - 1) / 2)
    assert factors["broken_lights"]["contribution"] == 0
    total = sum(f["contribution"] for f in cell["factors"])
    assert cell["index"] == pytest.approx(100 - total)
    assert cell["complete"] is True


async def test_crowd_density(world: World) -> None:
    body = await world.query(
        """query($cells: [String!], $from: DateTime!, $to: DateTime!) {
          crowdDensity(area: {cells: $cells}, from: $from, to: $to) { cell density pedestrians }
        }""",
        await world.token("sensors:read"),
        cells=[cell_str(*p) for p in PLACES],
        **{"from": world.start.isoformat(), "to": (world.start + timedelta(hours=1)).isoformat()},
    )
    cells = body["data"]["crowdDensity"]
    assert len(cells) == 3
    assert all(c["density"] == pytest.approx(0.5) and c["pedestrians"] == 2 for c in cells)


async def subscribe(
    world: World | Hub, token: str, query: str, variables: dict[str, Any]
) -> websockets.ClientConnection:
    hub = world.hub if isinstance(world, World) else world
    url = hub.url.replace("http://", "ws://") + "/graphql"
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    )
    ack = await ws.recv()
    assert isinstance(ack, str)  # text frames: browsers' graphql-ws clients read no others
    assert json.loads(ack)["type"] == "connection_ack"
    await ws.send(
        json.dumps(
            {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
        )
    )
    return ws


LIVE = """subscription Live($cells: [String!], $since: DateTime) {
  liveReadings(area: {cells: $cells}, metrics: ["pm2_5"], since: $since) {
    ts cell position { precise } exactPosition { lat lng precise } vehicleId
    values { metric value }
  }
}"""


async def test_live_readings_arrive_and_survive_a_reconnect(world: World) -> None:
    token = await world.token("sensors:read")
    cells = [cell_str(*PLACES[0])]
    device, vehicle = world.fleet[1]
    ws = await subscribe(world, token, LIVE, {"cells": cells, "since": None})
    await asyncio.sleep(0.3)
    first_ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    values = [
        (
            vehicle.encode(),
            message(
                device, vehicle, first_ts + timedelta(seconds=i), *PLACES[0], {"pm2_5": 40.0 + i}
            ),
        )
        for i in range(3)
    ]
    async with workers(
        world.database_url, world.bootstrap, world.topic, world.group, on_commit=world.live.publish
    ):
        await produce(world.bootstrap, world.topic, values)
        payloads = [json.loads(await asyncio.wait_for(ws.recv(), 10))["payload"] for _ in range(3)]
    await ws.close()
    received = [payload["data"]["liveReadings"] for payload in payloads]
    assert [r["values"][0]["value"] for r in received] == [40.0, 41.0, 42.0]
    # Without sensors:precise: the cell, and each gated field null with its own error.
    for reading, payload in zip(received, payloads, strict=True):
        assert reading["position"] == {"precise": False}
        assert reading["exactPosition"] is None and reading["vehicleId"] is None
        errors = payload["errors"]
        assert sorted(e["path"][-1] for e in errors) == ["exactPosition", "vehicleId"]
        assert {e["extensions"]["code"] for e in errors} == {"FORBIDDEN"}
        assert all("sensors:precise" in e["message"] for e in errors)

    # A client that reconnects asks for everything since the last reading it saw; this
    # one holds sensors:precise, so the replayed readings come with where and which car.
    precise = await world.token("sensors:read sensors:precise")
    again = await subscribe(world, precise, LIVE, {"cells": cells, "since": received[0]["ts"]})
    payloads = [json.loads(await asyncio.wait_for(again.recv(), 10))["payload"] for _ in range(2)]
    await again.close()
    assert all("errors" not in payload for payload in payloads)
    replay = [payload["data"]["liveReadings"] for payload in payloads]
    assert [r["values"][0]["value"] for r in replay] == [41.0, 42.0]
    exact = {"lat": PLACES[0][0], "lng": PLACES[0][1], "precise": True}
    assert [(r["exactPosition"], r["vehicleId"]) for r in replay] == [(exact, vehicle)] * 2
    assert await audited(world, precise) == {
        ("sensor_reading.read", "vehicle", vehicle, field, "Live")
        for field in ("exact_position", "vehicle_id")
    }


async def test_a_separate_workers_readings_reach_a_hubs_subscriptions(
    world: World, auth_hub: Hub
) -> None:
    """`ieum ingest` beside `ieum serve`: the worker's committed readings travel through
    the live feed topic to the hub, which has no worker of its own."""
    topic, group = new_topic(), f"g-feed-{uuid.uuid4().hex[:6]}"
    settings = local_settings(telemetry_topic=topic)
    app = create_app(settings, Servers(world.database_url, world.bootstrap))
    async with serving(app, settings.port) as url:
        hub = Hub(url, auth_hub.pool)
        token = await hub.token("sensors:read sensors:precise")
        ws = await subscribe(hub, token, LIVE, {"cells": [cell_str(*ALONE)]})
        await asyncio.sleep(1)  # the hub has found the end of the feed
        device, vehicle = world.fleet[2]
        first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
        values = [
            (
                vehicle.encode(),
                message(device, vehicle, first + timedelta(seconds=i), *place, {"pm2_5": pm}),
            )
            for i, (place, pm) in enumerate([(ALONE, 11.0), (PLACES[0], 12.0), (ALONE, 13.0)])
        ]
        await produce(world.bootstrap, topic, values)
        async with workers(world.database_url, world.bootstrap, topic, group):
            payloads = [
                json.loads(await asyncio.wait_for(ws.recv(), 15))["payload"] for _ in range(2)
            ]
        await ws.close()
    assert all("errors" not in payload for payload in payloads)
    received = [payload["data"]["liveReadings"] for payload in payloads]
    assert [r["values"] for r in received] == [
        [{"metric": "pm2_5", "value": 11.0}],
        [{"metric": "pm2_5", "value": 13.0}],
    ]
    exact = {"lat": ALONE[0], "lng": ALONE[1], "precise": True}
    assert [(r["exactPosition"], r["vehicleId"]) for r in received] == [(exact, vehicle)] * 2


def test_the_feed_carries_readings_as_stored() -> None:
    fleet = [f"u-{i}" for i in range(2500)]
    at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    readings = [
        parse(
            message(
                d, "car-" + d, at + timedelta(seconds=i % 60), *PLACES[i % 3], {"pm2_5": i / 7}
            ),
            now=at,
        )
        for i, d in enumerate(fleet)
    ]
    chunks = live_feed.encode(readings)
    assert len(chunks) == 3  # 1,000 readings a message
    decoded = [r for chunk in chunks for r in live_feed.decode(chunk)]
    assert len(decoded) == len(readings)
    for got, sent in zip(decoded, readings, strict=True):
        assert got.packed == sent.packed and got.ts == sent.ts and got.cell == sent.cell
        assert (got.device_id, got.vehicle_id, got.lat, got.lng) == (
            sent.device_id,
            sent.vehicle_id,
            sent.lat,
            sent.lng,
        )
        assert [v == v for v in got.values] == [v == v for v in sent.values]  # same metrics
        assert [v for v in got.values if v == v] == pytest.approx(  # float32, as stored
            [v for v in sent.values if v == v], rel=1e-6
        )


def test_a_hub_decodes_only_the_readings_in_cells_watched() -> None:
    at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    readings = [
        parse(message(f"u-{i}", f"car-{i}", at, *PLACES[i % 3], {"pm2_5": i}), now=at)
        for i in range(30)
    ]
    watched = frozenset({readings[0].cell, readings[1].cell})
    assert readings[2].cell not in watched
    decoded = [r for chunk in live_feed.encode(readings) for r in live_feed.decode(chunk, watched)]
    assert [r.device_id for r in decoded] == [r.device_id for r in readings if r.cell in watched]


async def test_the_cells_watched_are_those_of_the_subscriptions_open() -> None:
    live = LiveReadings()
    async with live.subscribe(frozenset({1, 2})):
        async with live.subscribe(frozenset({2, 3})):
            assert live.cells == {1, 2, 3}
        assert live.cells == {1, 2}
    assert live.cells == frozenset()


class FailsOnce(LiveReadings):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[float] = []

    async def publish(self, readings: Sequence[Reading]) -> None:
        if not self.received:
            self.received.append(float("nan"))
            raise RuntimeError("a subscriber's bug")
        self.received.extend(r.values[1] for r in readings)  # pm2_5


async def test_a_hub_keeps_following_the_feed_after_a_failure(kafka_bootstrap: str) -> None:
    topic = live_feed.live_topic_for(new_topic())
    await live_feed.ensure_topic(kafka_bootstrap, topic)
    live = FailsOnce()
    following = asyncio.create_task(live_feed.follow(kafka_bootstrap, topic, live))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        at = datetime.now(UTC).replace(microsecond=0)
        cell = parse(message("u-f", "car-f", at, *PLACES[0], {"pm2_5": 0.0})).cell
        async with live.subscribe(frozenset({cell})):  # someone watches, or nothing is decoded
            for pm in (1.0, 2.0, 3.0):
                reading = parse(message("u-f", "car-f", at, *PLACES[0], {"pm2_5": pm}))
                for chunk in live_feed.encode([reading]):
                    await producer.send_and_wait(topic, chunk)
                await asyncio.sleep(1.5)  # the failure, the pause and the new start
                if live.received[1:]:
                    break
        assert live.received[1:]  # readings sent after the failure still arrive
        assert set(live.received[1:]) <= {2.0, 3.0}
    finally:
        await producer.stop()
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
