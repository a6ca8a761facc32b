"""Installing adapter packages the way an integrator does: pip, offline, into a folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "ieum-airkorea"


def pip_install(source: Path, target: Path) -> Path:
    """`pip install` the package at `source` into `target` (no index, no isolation)."""
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"),
            *("--no-build-isolation", "--target", str(target), str(source)),
        ],
        check=True,
        capture_output=True,
        cwd=source.parent,
    )
    return target


def environment(site: Path, **extra: str) -> dict[str, str]:
    """This interpreter's environment with `site` on the path, as if installed there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IEUM_")}
    return env | {"PYTHONPATH": str(site)} | extra


def ieum(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the adapter commands (`ieum adapters …`, `ieum sandbox …`) in that environment."""
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        env=environment(site, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def contract_kit(site: Path, name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The contract kit as an adapter author runs it from their package."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore"),
            *("--pyargs", "adapters.testing.contract", "--ieum-adapter", name),
        ],
        env=environment(site),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
