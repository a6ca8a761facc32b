"""`_entities` takes any JSON as a representation (`_Any`): one that is not a reference to an
entity is the client's mistake, BAD_USER_INPUT naming `representations`, refused before
anything runs; strawberry's entities resolver failed on each with a TypeError, KeyError or
AttributeError (INTERNAL_SERVER_ERROR), found by the GraphQL fuzz (issue 17)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from hub import domains
from schema.builder import build_schema
from tests.schema.test_entities import context

pytestmark = pytest.mark.db

JONGNO = {"__typename": "District", "code": "11110"}
ENTITIES = "query ($r: [_Any!]!) { _entities(representations: $r) { ... on District { name } } }"
NOT_REFERENCES: list[Any] = [
    [],
    "x",
    11110,
    {"__typename": ""},
    {"__typename": "Nowhere", "code": "11110"},
    {"__typename": 1, "code": "11110"},
    {"__typename": ["District"], "code": "11110"},
    {"code": "11110"},
    {"__typename": "District"},  # no key
    {"__typename": "District", "code": "11110", "name": "종로구"},  # not a key field
]


async def post(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(body: dict[str, Any], index: int) -> None:
    assert body.get("data") is None, body
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "representations"}
    assert error["message"] == (
        f"_entities' representation {index} is not a reference to an entity: give an "
        "object with the entity's type in __typename and its key fields: District with code."
    )


def literal(value: Any) -> str:
    """The JSON value as a GraphQL literal (object keys unquoted)."""
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + " ".join(literal(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize("representation", NOT_REFERENCES, ids=json.dumps)
async def test_a_representation_that_is_not_a_reference_is_refused(
    client: httpx.AsyncClient, representation: Any
) -> None:
    # After a good one (whose resolve_reference was then never awaited), as a variable...
    refused(await post(client, ENTITIES, r=[JONGNO, representation]), 1)
    # ... and as a literal, in a fragment on the root too.
    found = f"_entities(representations: [{literal(representation)}]) {{ __typename }}"
    refused(await post(client, f"{{ {found} }}"), 0)
    refused(await post(client, f"{{ ...F }} fragment F on Query {{ {found} }}"), 0)


async def test_one_representation_given_without_a_list_is_checked_too(
    client: httpx.AsyncClient,
) -> None:
    refused(
        await post(client, '{ _entities(representations: {__typename: ""}) { __typename } }'), 0
    )
    query = "query ($r: [_Any!]!) { _entities(representations: $r) { __typename } }"
    refused(await post(client, query, r="x"), 0)
    defaulted = 'query ($r: _Any! = "x") { _entities(representations: [$r]) { __typename } }'
    refused(await post(client, defaulted), 0)
    # References still resolve, given alone or in a list.
    body = await post(client, ENTITIES, r=JONGNO)
    assert body == {"data": {"_entities": [{"name": "종로구"}]}}


@pytest.mark.parametrize("code", [[1], 11110, {"code": "11110"}, True], ids=json.dumps)
async def test_a_district_key_that_is_not_a_string_is_refused(
    client: httpx.AsyncClient, code: Any
) -> None:
    """platform's resolve_reference loads the district by its key: a list failed in the
    DataLoader (unhashable), a number in PostgreSQL."""
    body = await post(client, ENTITIES, r=[JONGNO, {"__typename": "District", "code": code}])
    assert body["data"] == {"_entities": [{"name": "종로구"}, None]}
    (error,) = body["errors"]
    assert error["path"] == ["_entities", 1]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "representations"}
    assert error["message"] == 'a District\'s code is a string, e.g. "11110"'


@pytest.mark.parametrize("subgraph", ["sensors", "waste"])
async def test_each_subgraph_refuses_a_district_key_that_is_not_a_string(subgraph: str) -> None:
    """sensors and waste make a District from its key without a query; a key that is not a
    string would reach their fields' SQL."""
    schema = build_schema(domains.select(subgraph))
    query = "query ($r: [_Any!]!) { _entities(representations: $r) { __typename } }"
    variables = {"r": [{"__typename": "District", "code": [1]}]}
    result = await schema.execute(query, variable_values=variables, context_value=context(None))
    assert result.data == {"_entities": [None]}
    (error,) = result.errors or []
    assert error.extensions == {"code": "BAD_USER_INPUT", "argument": "representations"}
