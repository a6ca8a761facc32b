"""`make run` installs what the hub needs, and the hub needs nothing from the test tools."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("hub", "schema", "resolvers", "adapters", "auth")
TESTING_KIT = ROOT / "adapters" / "testing"  # a pytest plugin for adapter authors' own tests


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _runtime_closure() -> set[str]:
    """Every distribution `pip install .` brings: the project's requirements without
    extras, and theirs, recursively (markers for other platforms are not followed)."""
    found: set[str] = set()
    todo = ["ieum"]
    while todo:
        name = todo.pop()
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            dependency = _name(requirement)
            if dependency not in found:
                found.add(dependency)
                todo.append(dependency)
    return found


def _imported_packages() -> dict[str, Path]:
    """Top-level names imported anywhere in the production packages, with one file each."""
    imported: dict[str, Path] = {}
    for package in PRODUCTION:
        for path in (ROOT / package).rglob("*.py"):
            if path.is_relative_to(TESTING_KIT):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    imported.setdefault(name.partition(".")[0], path)
    return imported


def test_the_hub_imports_only_what_its_own_dependencies_install() -> None:
    runtime = _runtime_closure()
    providers = metadata.packages_distributions()
    ours = set(PRODUCTION)
    missing = []
    for name, path in sorted(_imported_packages().items()):
        if name in sys.stdlib_module_names or name in ours:
            continue
        distributions = {d.lower().replace("_", "-") for d in providers.get(name, [])}
        if not distributions & runtime:
            missing.append(f"{name} ({path.relative_to(ROOT)}) from {sorted(distributions)}")
    assert not missing, "imported by the hub but not a runtime dependency: " + ", ".join(missing)


def test_the_runtime_dependencies_leave_out_the_test_tools() -> None:
    runtime = _runtime_closure()
    assert not {"pytest", "playwright", "mypy", "ruff"} & runtime


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_run_installs_the_hub_without_the_test_tools(tmp_path: Path) -> None:
    """Dry runs (`make -n`) against a venv path that does not exist yet."""
    venv = tmp_path / "venv"

    def plan(target: str) -> str:
        return subprocess.run(
            ["make", "-n", target, f"VENV={venv}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    run = plan("run")
    assert "pip install --quiet -e ." in run
    assert "[dev]" not in run
    assert "ieum serve" in run
    assert "pip install --quiet -e '.[dev]'" in plan("test")
