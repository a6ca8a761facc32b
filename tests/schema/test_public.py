"""The API schema apps see: plain GraphQL, no federation machinery, scopes described."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from graphql import build_schema as plain_schema
from graphql import parse, validate

from hub import cli, domains
from schema.builder import build_schema
from schema.public import api_sdl, scopes_sentence

ROOT = Path(__file__).parents[2]
PUBLISHED = ROOT / "docs" / "schema.graphql"
GATED = re.compile(r"(\w+)(?:\([^)]*\))?: [^\n]* @requiresScopes\(scopes: (\[\[.*?\]\])\)")


@pytest.fixture(scope="module")
def subgraph_sdl() -> str:
    return build_schema(domains.by_names(None)).as_str()


def test_the_api_schema_loads_in_plain_graphql_core(subgraph_sdl: str) -> None:
    with pytest.raises(TypeError, match="Unknown directive '@link'"):
        plain_schema(subgraph_sdl)  # what a gateway reads; plain tools refuse it
    schema = plain_schema(api_sdl(subgraph_sdl))
    assert {"_Any", "_Entity", "_Service", "FieldSet"}.isdisjoint(schema.type_map)
    assert schema.query_type is not None
    assert {"_entities", "_service"}.isdisjoint(schema.query_type.fields)
    assert {d.name for d in schema.directives} == {
        "include", "skip", "deprecated", "specifiedBy", "oneOf",
    }  # fmt: skip


def test_every_gated_field_names_its_scopes(subgraph_sdl: str) -> None:
    api = plain_schema(api_sdl(subgraph_sdl))
    gated = GATED.findall(subgraph_sdl)
    assert len(gated) > 20
    described = {
        field.description
        for kind in api.type_map.values()
        for field in getattr(kind, "fields", {}).values()
        if field.description
    }
    for name, groups in gated:
        sentence = scopes_sentence(json.loads(groups))
        assert any(text.endswith(sentence) for text in described), (name, sentence)


def test_scopes_read_as_apollo_means_them() -> None:
    assert scopes_sentence([["sensors:read"]]) == "Needs scope `sensors:read`."
    assert scopes_sentence([["a", "b"], ["c"]]) == "Needs scopes `a` and `b`, or `c`."


def test_the_docs_queries_fit_the_api_schema(subgraph_sdl: str) -> None:
    api = plain_schema(api_sdl(subgraph_sdl))
    blocks = [
        block
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        for block in re.findall(r"```graphql\n(.*?)```", path.read_text(), re.DOTALL)
        if "_entities" not in block and "_service" not in block  # gateways' fields
    ]
    assert len(blocks) > 20
    for block in blocks:
        assert validate(api, parse(block)) == [], block


def test_the_published_api_schema_is_current(
    subgraph_sdl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/schema.graphql is `ieum schema print --api`; regenerate it with
    IEUM_UPDATE_SCHEMA=1 pytest tests/schema/test_public.py -k published."""
    assert cli.main(["schema", "print", "--api"]) == 0
    printed = capsys.readouterr().out
    assert printed == api_sdl(subgraph_sdl)
    if os.environ.get("IEUM_UPDATE_SCHEMA"):
        PUBLISHED.write_text(printed)
    assert PUBLISHED.read_text() == printed, "regenerate docs/schema.graphql (see docstring)"


def test_graphiql_users_see_the_scopes_too() -> None:
    """Introspection (what GraphiQL's docs show) carries the same sentence as the API
    schema, once."""
    schema = build_schema(domains.by_names(None))
    result = schema.execute_sync('{ __type(name: "Mutation") { fields { name description } } }')
    assert result.data is not None
    fields = {f["name"]: f["description"] for f in result.data["__type"]["fields"]}
    described = fields["registerSensorDevice"]
    assert described.endswith("Needs scope `sensors:ingest`.")
    assert described.count("Needs scope") == 1
