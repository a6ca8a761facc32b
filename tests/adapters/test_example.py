"""The example package, installed with pip and found through its entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.adapters.helpers import EXAMPLE, contract_kit, environment, ieum, pip_install


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pip_install(EXAMPLE, tmp_path_factory.mktemp("airkorea") / "site")


def test_adapters_list_shows_the_installed_package(site: Path) -> None:
    bare = ieum(site, "adapters", "list")
    assert bare.returncode == 0, bare.stderr
    assert "airkorea" in bare.stdout and "ieum-airkorea 0.1.0" in bare.stdout
    assert "not configured: set IEUM_AIRKOREA_SERVICE_KEY; set IEUM_AIRKOREA_AREA" in bare.stdout

    configured = ieum(
        site, "adapters", "list", IEUM_AIRKOREA_SERVICE_KEY="k", IEUM_AIRKOREA_AREA="서울 강남구"
    )
    assert "air_quality_stations" in configured.stdout
    (listed,) = [line for line in configured.stdout.splitlines() if line.startswith("airkorea")]
    assert listed.endswith(" configured")  # other installed adapters are listed too


def test_adapters_check_against_the_sandbox(site: Path) -> None:
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "sandbox", "airkorea"],
        env=environment(site),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        first = sandbox.stdout.readline()
        assert first.startswith("sandbox airkorea"), first
        url = first.rsplit(" ", 1)[1].strip()
        env = dict(
            line.strip().split("=", 1)
            for line in (sandbox.stdout.readline() for _ in range(4))
            if line.startswith("IEUM_")
        )
        assert env["IEUM_AIRKOREA_BASE_URL"] == url

        healthy = ieum(site, "adapters", "check", "airkorea", **env)
        assert healthy.returncode == 0, healthy.stderr
        assert healthy.stdout.strip() == "airkorea: healthy"

        httpx.post(f"{url}/_faults", json={"error": "5xx", "status": 503}).raise_for_status()
        down = ieum(site, "adapters", "check", "airkorea", **env)
        assert down.returncode == 1
        assert "airkorea health check failed: airkorea is unavailable: HTTP 503" in down.stderr

        httpx.delete(f"{url}/_faults").raise_for_status()
        wrong_key = ieum(
            site, "adapters", "check", "airkorea", **env | {"IEUM_AIRKOREA_SERVICE_KEY": "x"}
        )
        assert "SERVICE_KEY_IS_NOT_REGISTERED_ERROR" in wrong_key.stderr
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        if sandbox.stdout:
            sandbox.stdout.close()


def test_check_of_an_unconfigured_adapter_says_what_to_set(site: Path) -> None:
    result = ieum(site, "adapters", "check", "airkorea")
    assert result.returncode == 1
    assert "airkorea is not configured: set IEUM_AIRKOREA_SERVICE_KEY" in result.stderr


def test_the_contract_kit_passes_on_the_example(site: Path, tmp_path: Path) -> None:
    result = contract_kit(site, "airkorea", tmp_path)
    assert result.returncode == 0, result.stdout
    assert "7 passed" in result.stdout


BROKEN = {
    "dash_as_zero": (
        "parse.py",
        "if raw is None or raw in MISSING:\n        return None",
        "if raw is None or raw in MISSING:\n        return 0.0",
        "test_main_call_returns_the_kinds_typed_data",
        "so2: 0.0 instead of None",
    ),
    "no_health_check": (
        "client.py",
        "        if not await self._fetch_stations():",
        "        if not []:\n            return\n        if not await self._fetch_stations():",
        "test_health_check_fails_naming_the_upstream_on_5xx",
        "health() passed while every upstream call answered 503",
    ),
    "midnight_as_kst_utc_confusion": (
        "parse.py",
        ".replace(tzinfo=KST)",
        ".replace(tzinfo=UTC)",
        "test_main_call_returns_the_kinds_typed_data",
        "measured_at",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_the_contract_kit_fails_on_a_broken_copy(breakage: str, tmp_path: Path) -> None:
    file, right, wrong, failing_test, message = BROKEN[breakage]
    copy = tmp_path / "ieum-airkorea"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    source = copy / "src" / "ieum_airkorea" / file
    assert source.read_text().count(right) == 1
    source.write_text(source.read_text().replace(right, wrong))
    site = pip_install(copy, tmp_path / "site")

    result = contract_kit(site, "airkorea", tmp_path)
    assert result.returncode == 1, result.stdout
    assert f"FAILED ::{failing_test} " in result.stdout
    assert "1 failed, 6 passed" in result.stdout
    assert message in result.stdout


async def test_midnight_is_reported_as_24_00_of_the_day_before(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(site))
    from ieum_airkorea import AirKorea, AirKoreaSettings, sandbox

    from adapters.sandbox.server import Sandbox, running

    clock = datetime(2026, 3, 1, 15, 20, tzinfo=UTC)  # 2026-03-02 00:20 KST
    fixed = Sandbox(
        "airkorea",
        "fixed clock",
        lambda: sandbox.create_app(lambda: clock),
        sandbox.SANDBOX.configure,
    )
    async with running(fixed) as served, httpx.AsyncClient(base_url=served.url) as client:
        probe = await client.get(
            "/ArpltnInforInqireSvc/getMsrstnAcctoRltmMesureDnsty",
            params={"serviceKey": sandbox.SERVICE_KEY, "stationName": "강남구", "numOfRows": 1},
        )
        assert probe.json()["response"]["body"]["items"][0]["dataTime"] == "2026-03-01 24:00"
        adapter = AirKorea(AirKoreaSettings(**served.settings()))
        try:
            found = await adapter.measurements()
        finally:
            await adapter.aclose()
    assert {m.measured_at for m in found} == {datetime(2026, 3, 1, 15, 0, tzinfo=UTC)}
    assert [m.station for m in found] == ["강남구", "도산대로"]
    dosan = found[1]
    assert dosan.so2 is None and dosan.o3 is None and dosan.flags == (("o3", "점검및교정"),)
    assert dosan.pm10 is not None and dosan.pm10 > 0
