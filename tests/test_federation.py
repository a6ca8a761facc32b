"""The printed subgraph SDL composes in a real federation composition library."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schema.builder import DOMAINS

ROOT = Path(__file__).parents[1]
TOOLS = ROOT / "tests" / "federation"
CACHE = ROOT / ".cache" / "federation"
IEUM = str(Path(sys.executable).parent / "ieum")


@pytest.fixture(scope="module")
def compose() -> Path:
    """compose.mjs with its pinned npm packages installed once into .cache/."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the composition check and are not installed")
    manifest = (TOOLS / "package.json").read_text()
    CACHE.mkdir(parents=True, exist_ok=True)
    installed = CACHE / "package.json"
    if (
        not installed.exists()
        or installed.read_text() != manifest
        or not (CACHE / "node_modules" / "@theguild" / "federation-composition").exists()
    ):
        installed.write_text(manifest)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CACHE,
            check=True,
            capture_output=True,
            timeout=300,
        )
    script = CACHE / "compose.mjs"
    shutil.copyfile(TOOLS / "compose.mjs", script)
    return script


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
    subgraphs = {name: printed_sdl(tmp_path, name) for name in DOMAINS}
    result = composed(compose, subgraphs)
    assert "errors" not in result, result


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
