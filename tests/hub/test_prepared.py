"""Prepared operations (schema.prepared): a document the hub ran before is answered
without strawberry's pipeline, and exactly as strawberry answers it.

Each case sends a request twice with a text the document cache has never seen (a query
padded with trailing spaces): the first goes through strawberry, which prepares it, the
second through the prepared path. Both answers must be the same, byte for byte, with
the same status and headers; and the second must not have reached strawberry, unless a
check would refuse it (then strawberry answers it, as before)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hub.app import GraphQLEndpoint

pytestmark = pytest.mark.db

_padding = itertools.count(1)
GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture
def strawberry_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many requests reached strawberry's view (`run`), in a one-item list."""
    count = [0]
    original = GraphQLEndpoint.run

    async def counted(self: GraphQLEndpoint, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(GraphQLEndpoint, "run", counted)
    yield count


def fresh(query: str) -> str:
    """The query as a text the document cache has not seen (same document)."""
    return query + " " * next(_padding)


async def twice(
    client: httpx.AsyncClient, runs: list[int], body: dict[str, Any], accept: str | None = None
) -> tuple[httpx.Response, httpx.Response, int]:
    """The answers to the same body sent twice, and how many of the two reached strawberry."""
    headers = {"accept": accept} if accept else {}
    before = runs[0]
    first = await client.post("/graphql", json=body, headers=headers)
    second = await client.post("/graphql", json=body, headers=headers)
    return first, second, runs[0] - before


def same(first: httpx.Response, second: httpx.Response) -> None:
    assert second.status_code == first.status_code
    assert second.content == first.content
    keep = ("content-type", "content-length", "retry-after")
    assert {k: second.headers.get(k) for k in keep} == {k: first.headers.get(k) for k in keep}


async def test_a_query_run_before_is_answered_without_strawberry_and_the_same(
    client: httpx.AsyncClient, strawberry_runs: list[int]
) -> None:
    body = {"query": fresh('{ district(code: "11110") { code name nameEn province } }')}
    first, second, reached = await twice(client, strawberry_runs, body)
    assert reached == 1
    same(first, second)
    assert first.json()["data"]["district"]["name"] == "종로구"


async def test_a_field_error_is_answered_the_same(
    client: httpx.AsyncClient, strawberry_runs: list[int]
) -> None:
    body = {"query": fresh('{ district(code: "1111") { name } }')}
    first, second, reached = await twice(client, strawberry_runs, body)
    assert reached == 1
    same(first, second)
    assert first.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_variables_and_operation_names(
    client: httpx.AsyncClient, strawberry_runs: list[int]
) -> None:
    query = fresh(
        "query One($code: String!) { district(code: $code) { name } }"
        ' query Two { district(code: "26350") { nameEn } }'
    )
    for variables, name in [({"code": "11110"}, "One"), (None, "Two")]:
        body = {"query": query, "variables": variables, "operationName": name}
        first, second, reached = await twice(client, strawberry_runs, body)
        assert reached == 1, name
        same(first, second)
    other = {"query": query, "variables": {"code": "41111"}, "operationName": "One"}
    answer = await client.post("/graphql", json=other)
    assert answer.json() == {"data": {"district": {"name": "수원시 장안구"}}}


async def test_variables_that_do_not_fit_are_refused_the_same(
    client: httpx.AsyncClient, strawberry_runs: list[int]
) -> None:
    query = fresh("query ($code: String!) { district(code: $code) { name } }")
    await client.post("/graphql", json={"query": query, "variables": {"code": "11110"}})
    wrong = {"query": query, "variables": {"code": 11110}}
    for accept in (None, GRAPHQL_RESPONSE):
        first, second, reached = await twice(client, strawberry_runs, wrong, accept)
        assert reached == 0  # the document is prepared: graphql-core refuses the value
        expected = 400 if accept else 200
        assert first.status_code == second.status_code == expected
        assert second.content == first.content
        assert second.headers["content-type"] == (accept or "application/json")
        assert "data" not in first.json() if accept else first.json()["data"] is None


async def test_what_a_check_refuses_still_goes_through_strawberry(
    client: httpx.AsyncClient, strawberry_runs: list[int]
) -> None:
    query = fresh(
        "query ($r: [_Any!]!) { _entities(representations: $r) { ... on District { name } } }"
    )
    one = [{"__typename": "District", "code": "11110"}]
    first, second, reached = await twice(
        client, strawberry_runs, {"query": query, "variables": {"r": one}}
    )
    assert reached == 1 and second.json() == {"data": {"_entities": [{"name": "종로구"}]}}
    many = {"query": query, "variables": {"r": one * 1001}}
    first, second, reached = await twice(client, strawberry_runs, many)
    assert reached == 2  # over the representations limit: refused by strawberry's path
    same(first, second)
    assert "representations" in first.json()["errors"][0]["message"]
    nul = {"query": query, "variables": {"r": [{"__typename": "District", "code": "1\x00"}]}}
    first, second, reached = await twice(client, strawberry_runs, nul)
    assert reached == 2
    same(first, second)
    assert first.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_subscriptions_over_post_and_mutations(
    client: httpx.AsyncClient, strawberry_runs: list[int]
) -> None:
    subscription = {
        "query": fresh('subscription { liveReadings(area: {district: "11110"}) { ts } }')
    }
    first, second, reached = await twice(client, strawberry_runs, subscription)
    assert reached == 2 and first.status_code == 400
    same(first, second)
    mutation = {
        "query": fresh('mutation { disableTerminal(terminalId: "t-1", reason: "lost") { id } }')
    }
    first, second, reached = await twice(client, strawberry_runs, mutation)
    assert reached == 1
    same(first, second)
    assert first.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
