"""A plugin that cannot load stops the command or the start with the reason: no silent skip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.adapters.helpers import environment

BROKEN = {
    "import": ("raise RuntimeError('the vendor SDK is missing')", "failed to import"),
    "type": ("ADAPTER = 42", "is malformed: it names a int, not an adapters.registry.Adapter"),
}


def installed_plugin(site: Path, source: str) -> Path:
    """A package with an `ieum.adapters` entry point, as pip would lay it out."""
    site.mkdir()
    (site / "broken_adapter.py").write_text(source + "\n")
    dist = site / "broken_adapter-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-adapter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ieum.adapters]\nbroken = broken_adapter:ADAPTER\n")
    return site


def ieum(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=environment(site, IEUM_DATA_DIR=str(site / "data")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_is_named_with_the_reason(tmp_path: Path, case: str) -> None:
    source, reason = BROKEN[case]
    site = installed_plugin(tmp_path / "site", source)
    listed = ieum(site, "adapters", "list")
    assert listed.returncode == 1
    assert "entry point 'broken' (broken_adapter:ADAPTER) of group ieum.adapters" in listed.stderr
    assert reason in listed.stderr


def test_the_hub_does_not_start_with_a_broken_plugin(tmp_path: Path) -> None:
    site = installed_plugin(tmp_path / "site", BROKEN["import"][0])
    serve = ieum(site, "serve", "--port", "0", "--no-demo")
    assert serve.returncode == 1
    assert "the vendor SDK is missing" in serve.stderr
    assert not (site / "data").exists()  # refused before any server was started
