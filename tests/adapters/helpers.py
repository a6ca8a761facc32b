"""Adapters as an integrator meets them: packages installed with pip, offline, into a
folder; sandboxes and `ieum adapters check` run as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
    env = outside_environment()
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


@contextmanager
def sandbox_process(name: str, lines: int = 3) -> Iterator[tuple[str, dict[str, str]]]:
    """`ieum sandbox NAME` as a process: its URL and the IEUM_* settings it prints (read
    from its next `lines` lines). Stopped when the block ends."""
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "sandbox", name],
        env=outside_environment(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        first = sandbox.stdout.readline()
        assert first.startswith(f"sandbox {name}"), first
        url = first.rsplit(" ", 1)[1].strip()
        printed = [sandbox.stdout.readline() for _ in range(lines)]
        yield url, dict(line.strip().split("=", 1) for line in printed if line.startswith("IEUM_"))
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        if sandbox.stdout:
            sandbox.stdout.close()


def adapters_check(name: str, settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`ieum adapters check NAME` with `settings` as its only IEUM_* variables."""
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", "adapters", "check", name],
        env=outside_environment() | settings,
        capture_output=True,
        text=True,
    )


def outside_environment() -> dict[str, str]:
    """This process's environment without any IEUM_* variable (a test's own settings)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IEUM_")}
