"""The subgraphs compose in a real federation composition library, and behind a real
gateway (Hive Gateway) the split hub answers exactly as the single-process hub does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from hub.app import create_app
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.domains import installed
from hub.embedded.ports import free_port
from hub.serve import serving
from tests.helpers import graphql
from tests.oauth import Hub
from tests.sensors.helpers import (
    message,
    new_topic,
    partner,
    produce,
    recent_minute,
    register,
    wait_ingested,
    workers,
)

ROOT = Path(__file__).parents[2]
TOOLS = ROOT / "tests" / "schema" / "federation"
CACHE = ROOT / ".cache" / "federation"
IEUM = str(Path(sys.executable).parent / "ieum")


@pytest.fixture(scope="module")
def compose() -> Path:
    """compose.mjs (and gateway.mjs beside it) with their pinned npm packages installed once
    into .cache/."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the composition check and are not installed")
    manifest = (TOOLS / "package.json").read_text()
    CACHE.mkdir(parents=True, exist_ok=True)
    installed = CACHE / "package.json"
    if (
        not installed.exists()
        or installed.read_text() != manifest
        or not (CACHE / "node_modules" / "@graphql-mesh" / "transport-http").exists()
    ):
        installed.write_text(manifest)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CACHE,
            check=True,
            capture_output=True,
            timeout=300,
        )
    for script in ("compose.mjs", "gateway.mjs"):
        shutil.copyfile(TOOLS / script, CACHE / script)
    return CACHE / "compose.mjs"


def printed_sdl(tmp_path: Path, subgraph: str | None) -> Path:
    args = [IEUM, "schema", "print"] + (["--subgraph", subgraph] if subgraph else [])
    sdl = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    path = tmp_path / f"{subgraph or 'all'}.graphql"
    path.write_text(sdl)
    return path


def composed(script: Path, subgraphs: dict[str, Path]) -> dict[str, object]:
    result = subprocess.run(
        ["node", str(script), *(f"{name}={path}" for name, path in subgraphs.items())],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def test_whole_hub_schema_composes(compose: Path, tmp_path: Path) -> None:
    result = composed(compose, {"hub": printed_sdl(tmp_path, None)})
    assert "errors" not in result, result
    assert 'type District @join__type(graph: HUB, key: "code")' in str(result["supergraphSdl"])


def test_each_domain_subgraph_composes_with_the_others(compose: Path, tmp_path: Path) -> None:
    subgraphs = {name: printed_sdl(tmp_path, name) for name in installed()}
    result = composed(compose, subgraphs)
    assert "errors" not in result, result


SUPERGRAPH = ROOT / "docs" / "supergraph.graphql"


def test_the_published_supergraph_is_current(compose: Path, tmp_path: Path) -> None:
    """docs/supergraph.graphql is what the installed domains' subgraphs compose into
    (`IEUM_UPDATE_SUPERGRAPH=1 pytest tests/schema/test_federation.py -k published`
    writes it anew)."""
    subgraphs = {name: printed_sdl(tmp_path, name) for name in installed()}
    result = composed(compose, subgraphs)
    assert "errors" not in result, result
    current = str(result["supergraphSdl"]).rstrip() + "\n"
    if os.environ.get("IEUM_UPDATE_SUPERGRAPH") == "1":
        SUPERGRAPH.write_text(current)
    assert SUPERGRAPH.read_text() == current, "run with IEUM_UPDATE_SUPERGRAPH=1 to publish"
    assert '@join__type(graph: SENSORS, key: "code")' in current


def test_a_broken_subgraph_is_reported(compose: Path, tmp_path: Path) -> None:
    # The check itself must be able to fail: two subgraphs disagreeing on a key field's type.
    good = printed_sdl(tmp_path, "platform")
    bad = tmp_path / "bad.graphql"
    bad.write_text(
        good.read_text()
        .replace("code: String!", "code: Int!", 1)
        .replace("Query {", "Query {\n  other: Int", 1)
    )
    result = composed(compose, {"platform": good, "other": bad})
    assert result.get("errors"), result


# --- The split subgraphs behind a real gateway answer as the whole hub does ---------------

TAG = uuid.uuid4().hex[:6]
FLEET = [(f"fed-{TAG}-{i}", f"fed-car-{TAG}-{i}") for i in range(4)]
JUNG_GU = [(37.5665, 126.9780), (37.5640, 126.9850), (37.5600, 126.9920)]  # 중구 (11140)


class Recorder:
    """ASGI wrapper keeping the GraphQL requests a subgraph receives (from the gateway)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/graphql":
            await self.app(scope, receive, send)
            return
        body = bytearray()

        async def receiving() -> Any:
            message = await receive()
            body.extend(message.get("body", b""))
            return message

        await self.app(scope, receiving, send)
        self.requests.append(json.loads(body))


@dataclass
class Federation:
    hub: str  # the whole hub in one process
    gateway: str  # Hive Gateway in front of one process per domain
    tokens: Hub
    subgraphs: dict[str, Recorder]


@pytest.fixture(scope="module")
async def federation(
    compose: Path,
    hub_url: str,
    auth_hub: Hub,
    migrated_url: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Federation]:
    """One `ieum serve --subgraph` per domain, composed from their own `_service { sdl }`
    and served by Hive Gateway; the whole hub beside it on the same database and readings."""
    await ingest_readings(auth_hub.pool, migrated_url, kafka_bootstrap)
    tmp = tmp_path_factory.mktemp("gateway")
    async with contextlib.AsyncExitStack() as stack:
        servers = Servers(migrated_url, kafka_bootstrap)
        subgraphs, recorders = {}, {}
        for name in installed():
            # The same issuer as the whole hub, so its tokens are good everywhere.
            settings = Settings.from_env(port=free_port(), public_url=hub_url)
            recorders[name] = Recorder(create_app(settings, servers, [name]))
            url = await stack.enter_async_context(serving(recorders[name], settings.port))
            sdl = await served_sdl(url)
            (tmp / f"{name}.graphql").write_text(sdl)
            subgraphs[name] = f"{tmp / name}.graphql={url}/graphql"
        composing = await asyncio.create_subprocess_exec(
            "node",
            str(compose),
            *(f"{name}={spec}" for name, spec in subgraphs.items()),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(composing.communicate(), 60)
        assert composing.returncode == 0, out
        composition = json.loads(out)
        assert "errors" not in composition, composition
        supergraph = tmp / "supergraph.graphql"
        supergraph.write_text(composition["supergraphSdl"])
        port = free_port()
        gateway = await asyncio.create_subprocess_exec(
            "node",
            str(compose.parent / "gateway.mjs"),
            str(supergraph),
            str(port),
            stdout=asyncio.subprocess.PIPE,
        )
        stack.push_async_callback(stopped, gateway)
        assert gateway.stdout is not None
        line = await asyncio.wait_for(gateway.stdout.readline(), 60)
        assert line.strip() == b"listening", line
        yield Federation(hub_url, f"http://127.0.0.1:{port}", auth_hub, recorders)


async def ingest_readings(pool: asyncpg.Pool, database_url: str, bootstrap: str) -> None:
    """Twelve minutes of PM2.5/PM10 from four taxis in 중구, through the broker and ingest."""
    await register(pool, await partner(pool), FLEET)
    start = recent_minute(20)
    values = []
    for step in range(12):
        for i, (device, vehicle) in enumerate(FLEET):
            lat, lng = JUNG_GU[(i + step) % len(JUNG_GU)]
            pm = 18.0 + 3 * i + step % 4
            metrics = {"pm2_5": pm, "pm10": pm * 1.6, "noise_laeq": 60.0 + i}
            at = start + timedelta(minutes=step)
            values.append((vehicle.encode(), message(device, vehicle, at, lat, lng, metrics)))
    topic = new_topic()
    group = f"fed-{TAG}"
    await produce(bootstrap, topic, values)
    async with workers(database_url, bootstrap, topic, group):
        await wait_ingested(pool, bootstrap, topic, group)


async def served_sdl(url: str) -> str:
    """The subgraph SDL as a gateway's tooling fetches it: `{ _service { sdl } }`."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        body = await graphql(http, "{ _service { sdl } }")
    return str(body["data"]["_service"]["sdl"])


async def stopped(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()


async def both(
    federation: Federation, query: str, token: str | None = None, **variables: object
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same request to the whole hub and to the gateway."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answers = []
    for base in (federation.hub, federation.gateway):
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
            answers.append(await graphql(http, query, variables))
    return answers[0], answers[1]


def comparable(errors: list[dict[str, Any]]) -> list[tuple[str, str, tuple[object, ...]]]:
    """What a client relies on in an error: message, code and path (the order is free)."""
    return sorted(
        (e["message"], e.get("extensions", {}).get("code", ""), tuple(e.get("path") or ()))
        for e in errors
    )


OPEN_DATA = """{
  district(code: "11140") {
    code name province
    airQuality { pm25 { value grade readings } pm10 { value grade } }
  }
  metrics { name unit min max }
}"""

SCOPED = """query($from: DateTime!, $to: DateTime!) {
  viewer { clientId scopes }
  sensorSeries(area: {district: "11140"}, metric: "pm2_5", from: $from, to: $to, bucket: HOUR) {
    bucket value { count mean min max stddev }
  }
  sensorHeatmap(area: {district: "11140"}, metric: "pm10", from: $from, to: $to, resolution: 9) {
    cell value { count mean }
  }
}"""


def window() -> dict[str, object]:
    now = datetime.now(UTC)
    return {"from": (now - timedelta(hours=2)).isoformat(), "to": now.isoformat()}


@pytest.mark.db
async def test_open_data_from_both_subgraphs_matches_the_hub(federation: Federation) -> None:
    hub, gateway = await both(federation, OPEN_DATA)
    assert "errors" not in hub, hub
    assert hub["data"]["district"]["airQuality"]["pm25"]["readings"] == 12 * len(FLEET)
    assert len(hub["data"]["metrics"]) >= 50
    assert gateway == hub


SEOUL = """{
  districts(province: "11") {
    code name
    airQuality { pm25 { value grade readings } pm10 { value } }
  }
}"""


@pytest.mark.db
async def test_a_list_of_districts_is_joined_with_one_entities_request(
    federation: Federation,
) -> None:
    """Platform answers the districts, sensors their airQuality through `_entities`: one
    request per subgraph for Seoul's 25 districts, not one per district."""
    for recorder in federation.subgraphs.values():
        recorder.requests.clear()
    hub, gateway = await both(federation, SEOUL)
    assert "errors" not in hub, hub
    assert len(hub["data"]["districts"]) == 25
    jung = next(d for d in hub["data"]["districts"] if d["code"] == "11140")
    assert jung["airQuality"]["pm25"]["readings"] == 12 * len(FLEET)
    assert gateway == hub
    (platform,) = federation.subgraphs["platform"].requests
    assert "districts" in platform["query"] and "_entities" not in platform["query"]
    (sensors,) = federation.subgraphs["sensors"].requests
    assert "_entities" in sensors["query"]
    representations = next(iter(sensors["variables"].values()))
    assert sorted(r["code"] for r in representations) == sorted(
        d["code"] for d in hub["data"]["districts"]
    )


@pytest.mark.db
async def test_scoped_fields_through_the_gateway_match_the_hub(federation: Federation) -> None:
    token = await federation.tokens.token("sensors:read")
    hub, gateway = await both(federation, SCOPED, token, **window())
    assert "errors" not in hub, hub
    assert hub["data"]["viewer"]["scopes"] == ["sensors:read"]
    assert sum(p["value"]["count"] for p in hub["data"]["sensorSeries"] if p["value"]) == 48
    assert hub["data"]["sensorHeatmap"]
    assert gateway == hub


@pytest.mark.db
async def test_refusals_through_the_gateway_match_the_hub(federation: Federation) -> None:
    # Without a token: the scoped fields are null with UNAUTHENTICATED.
    hub, gateway = await both(federation, SCOPED, **window())
    assert hub["data"] == {"viewer": None, "sensorSeries": None, "sensorHeatmap": None}
    assert {e["extensions"]["code"] for e in hub["errors"]} == {"UNAUTHENTICATED"}
    assert gateway["data"] == hub["data"]
    assert comparable(gateway["errors"]) == comparable(hub["errors"])
    # A token without sensors:read: the viewer answers, the sensor fields are FORBIDDEN.
    profile = await federation.tokens.token("profile")
    hub, gateway = await both(federation, SCOPED, profile, **window())
    assert hub["data"]["viewer"]["scopes"] == ["profile"]
    assert {e["extensions"]["code"] for e in hub["errors"]} == {"FORBIDDEN"}
    assert gateway["data"] == hub["data"]
    assert comparable(gateway["errors"]) == comparable(hub["errors"])
    # Bad input in each subgraph: BAD_USER_INPUT with the same message.
    token = await federation.tokens.token("sensors:read")
    bad = """{ district(code: "11x40") { name }
      sensorSeries(area: {district: "11140"}, metric: "pm3", from: "2026-01-01T00:00:00Z",
                   to: "2026-01-01T01:00:00Z") { bucket } }"""
    hub, gateway = await both(federation, bad, token)
    assert {e["extensions"]["code"] for e in hub["errors"]} == {"BAD_USER_INPUT"}
    assert len(hub["errors"]) == 2
    assert gateway["data"] == hub["data"]
    assert comparable(gateway["errors"]) == comparable(hub["errors"])


JOINED = """query($from: Date!, $to: Date!) {
  district(code: "11140") {
    code name
    airQuality { pm25 { readings } }
    wasteVolumes(from: $from, to: $to) { day collections litres kilograms totalKilograms }
  }
}"""


async def collected_waste(pool: asyncpg.Pool, district: str, kilograms: list[float]) -> None:
    """Bins of a 중구 restaurant collected today, as a collector's scans would leave them."""
    generator, site = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO waste_generators (generator_id, business_no, name, representative, phone,"
        " owner_client) VALUES ($1, $2, '명동식당', '김대표', '010-0000-0000', 'test')",
        generator,
        f"{uuid.uuid4().int % 10**10:010d}",
    )
    await pool.execute(
        "INSERT INTO waste_sites (site_id, generator_id, name, address, lat, lng, district_code)"
        " VALUES ($1, $2, '본점', '서울 중구 명동길 1', 37.5636, 126.9850, $3)",
        site,
        generator,
        district,
    )
    for kg in kilograms:
        bin_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO waste_bins (bin_id, site_id, volume_litres) VALUES ($1, $2, 120)",
            bin_id,
            site,
        )
        await pool.execute(
            "INSERT INTO waste_pickups (pickup_id, bin_id, site_id, district_code, status, basis,"
            " unit_price, quoted_amount, pickup_day, requested_by, collected_at, weight_kg,"
            " volume_litres) VALUES ($1, $2, $3, $4, 'collected', 'kg', 100, 1000,"
            " (now() AT TIME ZONE 'Asia/Seoul')::date, 'test', now(), $5, 120)",
            uuid.uuid4(),
            bin_id,
            site,
            district,
            Decimal(str(kg)),
        )


@pytest.mark.db
async def test_the_gateway_joins_air_quality_and_waste_volumes(federation: Federation) -> None:
    """One query, three subgraphs: platform's district, sensors' airQuality and waste's
    wasteVolumes, each subgraph asked once."""
    await collected_waste(federation.tokens.pool, "11140", [12.5, 30.0])
    today = datetime.now(ZoneInfo("Asia/Seoul")).date().isoformat()
    for recorder in federation.subgraphs.values():
        recorder.requests.clear()
    # City staff: one restaurant's day is withheld from open data (k-anonymity).
    city = await federation.tokens.token("waste:city")
    hub, gateway = await both(federation, JOINED, city, **{"from": today, "to": today})
    assert "errors" not in hub, hub
    district = hub["data"]["district"]
    assert district["airQuality"]["pm25"]["readings"] == 12 * len(FLEET)
    (day,) = district["wasteVolumes"]
    assert day["collections"] == 2 and day["litres"] == 240
    assert day["kilograms"] == pytest.approx(42.5)
    assert gateway == hub
    assert len(federation.subgraphs["waste"].requests) == 1
    assert len(federation.subgraphs["sensors"].requests) == 1
