"""Fixed public stations feed the sensors domain through an installed adapter package.

The example AirKorea package is installed with pip (as an integrator would), its sandbox
serves AirKorea's real JSON over HTTP, `ieum sensors stations` reads it through the
`ieum.adapters` entry point, and GraphQL serves each station's values.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adapters.helpers import EXAMPLE, environment, pip_install
from tests.oauth import Hub

pytestmark = pytest.mark.db

STATIONS = """query($district: String!) {
  airStations(area: {district: $district}) {
    id name source khai position { lat lng }
    values { pollutant value grade flag }
  }
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("airkorea") / "site")


@pytest.fixture(scope="module")
def sandbox(site: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`ieum sandbox airkorea` and the settings it prints for the adapter."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "sandbox", "airkorea"],
        env=environment(site),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().rsplit(" ", 1)[1].strip()
        env = dict(
            line.strip().split("=", 1)
            for line in (process.stdout.readline() for _ in range(4))
            if line.startswith("IEUM_")
        )
        yield url, env | {"IEUM_AIRKOREA_AREA": "서울"}
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


def poll(site: Path, database_url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "sensors", "stations"],
        env=environment(site, IEUM_DATABASE_URL=database_url, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def poll_while_failing(
    site: Path, database_url: str, env: dict[str, str], url: str
) -> subprocess.CompletedProcess[str]:
    """A round while the sandbox answers 503 to everything."""
    httpx.post(f"{url}/_faults", json={"error": "5xx", "status": 503}).raise_for_status()
    try:
        return poll(site, database_url, env)
    finally:
        httpx.delete(f"{url}/_faults").raise_for_status()


def realtime(url: str, env: dict[str, str], station: str) -> dict[str, str]:
    """The station's newest hour, as AirKorea's API itself answers."""
    answer = httpx.get(
        f"{url}/ArpltnInforInqireSvc/getMsrstnAcctoRltmMesureDnsty",
        params={
            "serviceKey": env["IEUM_AIRKOREA_SERVICE_KEY"],
            "returnType": "json",
            "stationName": station,
            "dataTerm": "DAILY",
            "ver": "1.0",
        },
    )
    items: list[dict[str, str]] = answer.json()["response"]["body"]["items"]
    return items[0]


async def stations_of(hub: Hub, district: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as http:
        answer = await http.post(
            "/graphql", json={"query": STATIONS, "variables": {"district": district}}
        )
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]["airStations"]


def values(station: dict[str, Any]) -> dict[str, Any]:
    return {v["pollutant"]: v for v in station["values"]}


async def test_a_districts_single_station_shows_its_values(
    site: Path, sandbox: tuple[str, dict[str, str]], migrated_url: str, auth_hub: Hub
) -> None:
    """One station in 종로구: shown with its values (k-anonymity is for vehicles)."""
    url, env = sandbox
    result = poll(site, migrated_url, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "airkorea: 5 station-hours"

    (jongno,) = await stations_of(auth_hub, "11110")
    assert (jongno["id"], jongno["source"]) == ("airkorea:종로구", "airkorea")
    published = realtime(url, env, "종로구")
    assert values(jongno)["pm10"]["value"] == float(published["pm10Value"])
    assert values(jongno)["pm25"]["value"] == float(published["pm25Value"])
    assert values(jongno)["no2"]["value"] == float(published["no2Value"])
    assert jongno["khai"] == float(published["khaiValue"])
    assert values(jongno)["pm10"]["grade"] in {"GOOD", "MODERATE", "BAD", "VERY_BAD"}


async def test_missing_and_set_aside_values_are_null_with_the_reason(
    site: Path, sandbox: tuple[str, dict[str, str]], migrated_url: str, auth_hub: Hub
) -> None:
    """도산대로 has no SO2 sensor ("-") and its O3 is under calibration (flag)."""
    url, env = sandbox
    assert poll(site, migrated_url, env).returncode == 0
    gangnam = {s["name"]: s for s in await stations_of(auth_hub, "11680")}
    assert set(gangnam) == {"강남구", "도산대로"}
    dosan = values(gangnam["도산대로"])
    assert dosan["so2"] == {"pollutant": "so2", "value": None, "grade": None, "flag": None}
    assert dosan["o3"]["value"] is None
    assert dosan["o3"]["flag"] == "점검및교정"
    assert dosan["pm10"]["value"] == float(realtime(url, env, "도산대로")["pm10Value"])


async def test_a_failing_upstream_is_reported_and_keeps_the_last_values(
    site: Path, sandbox: tuple[str, dict[str, str]], migrated_url: str, auth_hub: Hub
) -> None:
    url, env = sandbox
    assert poll(site, migrated_url, env).returncode == 0
    before = await stations_of(auth_hub, "11110")
    failed = poll_while_failing(site, migrated_url, env, url)
    assert failed.returncode == 1
    assert "airkorea: failed" in failed.stdout
    assert "HTTP 503" in failed.stderr
    assert await stations_of(auth_hub, "11110") == before
