"""Every example query in the docs and README returns exactly the response shown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from auth.scopes import CATALOG
from resolvers.sensors.catalog import metrics
from tests.oauth import Hub

pytestmark = pytest.mark.db

ROOT = Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A ```graphql block, and the ```json block right after it if that is its response.
EXAMPLE = re.compile(
    r"```graphql\n(?P<query>(?:(?!```).)*)```(?:\s*```json\n(?P<response>(?:(?!```).)*)```)?",
    re.DOTALL,
)


def examples() -> list[pytest.ParameterSet]:
    return [
        pytest.param(match["query"], match["response"], id=f"{document.name}#{index + 1}")
        for document in DOCUMENTS
        for index, match in enumerate(EXAMPLE.finditer(document.read_text()))
        if not match["query"].lstrip().startswith("subscription")  # WebSocket only
    ]


@pytest.fixture(scope="module")
async def every_scope(auth_hub: Hub) -> str:
    """A token that may read everything, so gated examples run too."""
    return await auth_hub.token(list(CATALOG))


def test_the_docs_have_examples() -> None:
    assert len(examples()) >= 5


@pytest.mark.parametrize(("query", "response"), examples())
async def test_example(
    client: httpx.AsyncClient, every_scope: str, query: str, response: str | None
) -> None:
    headers = {"Authorization": f"Bearer {every_scope}"}
    answer = (await client.post("/graphql", json={"query": query}, headers=headers)).json()
    if response is None:  # no response shown: it must at least succeed
        assert "errors" not in answer, answer
        assert answer["data"]
    else:
        assert answer == json.loads(response)


# The OAuth guide: its shell and Python examples run against a real hub.

AUTH_GUIDE = ROOT / "docs" / "auth.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", AUTH_GUIDE.read_text(), re.DOTALL)


async def run_example(auth_hub: Hub, *command: str) -> str:
    client = await auth_hub.client(scope_names="sensors:read")
    process = await asyncio.create_subprocess_exec(
        *command,
        env=os.environ
        | {
            "IEUM": auth_hub.url,
            "CLIENT_ID": client.client_id,
            "CLIENT_SECRET": client.client_secret or "",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_auth_guide_shell_example(auth_hub: Hub) -> None:
    (script,) = blocks("bash")
    output = await run_example(auth_hub, "bash", "-euo", "pipefail", "-c", script)
    viewer = json.loads(output)["data"]["viewer"]
    assert viewer["scopes"] == ["sensors:read"]


async def test_auth_guide_python_example(auth_hub: Hub) -> None:
    (program,) = blocks("python")
    output = await run_example(auth_hub, sys.executable, "-c", program)
    assert output.strip() == "['sensors:read']"


def test_auth_guide_explains_every_scope() -> None:
    text = AUTH_GUIDE.read_text()
    for scope, info in CATALOG.items():
        assert f"| `{scope}` | {info.ko} | {info.en} |" in text


def test_sensor_guide_lists_every_metric() -> None:
    text = (ROOT / "docs" / "sensors.md").read_text()
    for metric in metrics():
        assert f"| {metric.id} | `{metric.name}` | {metric.unit} |" in text
