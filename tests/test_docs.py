"""Every example query in the docs and README returns exactly the response shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

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
    ]


def test_the_docs_have_examples() -> None:
    assert len(examples()) >= 5


@pytest.mark.parametrize(("query", "response"), examples())
async def test_example(client: httpx.AsyncClient, query: str, response: str | None) -> None:
    answer = (await client.post("/graphql", json={"query": query})).json()
    if response is None:  # no response shown: it must at least succeed
        assert "errors" not in answer, answer
        assert answer["data"]
    else:
        assert answer == json.loads(response)
