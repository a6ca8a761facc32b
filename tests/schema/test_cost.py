"""A document over the cost budget, or with too many `_entities` representations, is
refused before it runs, with an error naming the cost and the limit; everyday documents,
GraphiQL's introspection among them, still run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from graphql import get_introspection_query, parse

from hub import domains
from resolvers.sensors.catalog import metrics
from schema.builder import build_schema
from schema.cost import (
    COST_CEILING,
    LIST_SIZE,
    MAX_COST,
    MAX_REPRESENTATIONS,
    MAX_SUBSCRIPTIONS,
    document_cost,
)
from tests.oauth import Hub

pytestmark = pytest.mark.db

# Without the limit, each of these ran for seconds with the hub's loop blocked (10,000
# aliases of `districts { code }`: 27 s and 43 MB); bounded here so that a missing limit
# fails the test rather than stalling the run. (10,000 aliases no longer parse: a document
# has at most 15,000 tokens; 2,000 do, and cost 200 times the budget.)
BOUND_SECONDS = 30


def aliases(selection: str, count: int) -> str:
    return "{ " + " ".join(f"a{n}: {selection}" for n in range(count)) + " }"


async def post(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await asyncio.wait_for(
        client.post("/graphql", json={"query": query, "variables": variables}, timeout=None),
        BOUND_SECONDS,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("data") is None, str(body)[:300]
    (error,) = body["errors"]
    extensions: dict[str, Any] = error["extensions"]
    assert extensions["code"] == "QUERY_TOO_COSTLY", error
    assert extensions["limit"] == MAX_COST
    costs = f"{extensions['cost']:,}"
    if extensions["cost"] == COST_CEILING:
        costs = f"over {costs}"
    assert error["message"].startswith(f"This query costs {costs}, over the limit of {MAX_COST:,}")
    return extensions


@pytest.mark.parametrize(
    ("selection", "per_alias"),
    [("districts { code }", 1 + 260), ("metrics { name }", 1 + len(metrics()))],
)
async def test_thousands_of_aliases_are_refused_before_they_run(
    client: httpx.AsyncClient, selection: str, per_alias: int
) -> None:
    extensions = refusal(await post(client, aliases(selection, 2_000)))
    assert extensions["cost"] == 2_000 * per_alias


async def test_fine_cells_of_every_district_are_refused(client: httpx.AsyncClient) -> None:
    query = 'query ($r: Int!) { districts(province: "서울특별시") { h3Cells(resolution: $r) } }'
    refusal(await post(client, query, r=9))
    body = await post(client, query, r=5)  # the same at a coarse resolution runs
    assert "errors" not in body and len(body["data"]["districts"]) == 25


async def test_fragments_count_once_per_use(client: httpx.AsyncClient) -> None:
    fragment = "fragment Cells on District { h3Cells(resolution: 9) }"
    spread = 'district(code: "11110") { ...Cells }'  # about 3,800 cells a district
    body = await post(client, f"{aliases(spread, 2)} {fragment}")
    assert "errors" not in body and len(body["data"]["a1"]["h3Cells"]) > 100
    refusal(await post(client, f"{aliases(spread, 3)} {fragment}"))


async def test_introspection_runs_and_its_aliases_are_bounded(client: httpx.AsyncClient) -> None:
    body = await post(client, get_introspection_query(descriptions=True))
    assert "errors" not in body and body["data"]["__schema"]["types"]
    refusal(await post(client, aliases("__schema { types { fields { args { name } } } }", 50)))


async def test_entities_take_a_bounded_number_of_representations(
    client: httpx.AsyncClient,
) -> None:
    query = "query ($r: [_Any!]!) { _entities(representations: $r) { ... on District { name } } }"
    jongno = {"__typename": "District", "code": "11110"}
    body = await post(client, query, r=[jongno] * (MAX_REPRESENTATIONS + 1))
    assert body.get("data") is None
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "representations"}
    assert error["message"] == (
        f"_entities takes at most {MAX_REPRESENTATIONS:,} representations per request, "
        f"got {MAX_REPRESENTATIONS + 1:,}."
    )
    body = await post(client, query, r=[jongno] * 3)
    assert body == {"data": {"_entities": [{"name": "종로구"}] * 3}}


BEYOND_INT = 18446744073709551615  # 2**64 - 1: validation refuses it, but after the cost


async def test_sizes_beyond_an_int_are_refused_with_a_cost_json_can_carry(
    client: httpx.AsyncClient,
) -> None:
    """A cost counts up to COST_CEILING, and the error says "over" it: a cost of 2**64
    could not be encoded (HTTP 500)."""
    journeys = (
        "{ journeys(from: {lat: 37.55, lng: 126.97}, to: {lat: 35.11, lng: 129.04}, "
        f"limit: {BEYOND_INT}) {{ itineraries {{ minutes }} }} }}"
    )
    assert refusal(await post(client, journeys))["cost"] == COST_CEILING
    readings = (
        'query ($n: Int) { sensorReadings(area: {district: "11110"}, from: "2026-01-01T00:00Z",'
        f' to: "2026-01-02T00:00Z", first: {BEYOND_INT}) {{ edges {{ node {{ ts '
        "values { metric } } } } }"
    )
    assert refusal(await post(client, readings))["cost"] == COST_CEILING
    nested = readings.replace(f"first: {BEYOND_INT}", "first: $n")
    assert refusal(await post(client, nested, n=2**40))["cost"] == COST_CEILING


def test_costs_of_documents() -> None:
    """The arithmetic, on the whole hub's schema: lists by arguments, declared sizes, the
    default size, and a page's `first` for the lists under it."""
    schema = build_schema(domains.select(None))._schema

    def cost(query: str, **variables: Any) -> int:
        return document_cost(schema, parse(query), variables)

    assert cost("{ metrics { name unit } }") == 1 + len(metrics()) * 1
    assert cost("{ districts { code legacyCodes } }") == 1 + 260 * 1
    assert cost('{ districts(province: "11") { code } }') == 1 + 50 * 1
    assert cost("{ __typename }") == 0
    readings = (
        'query ($n: Int) { sensorReadings(area: {district: "11110"}, from: "2026-01-01T00:00Z",'
        ' to: "2026-01-02T00:00Z", first: $n) { edges { node { ts values { metric } } } } }'
    )
    assert cost(readings, n=10) == 1 + 10 * (1 + LIST_SIZE * 1)
    assert cost(readings.replace(", first: $n", "")) == 1 + 100 * (1 + LIST_SIZE * 1)
    # An operation chosen by name; a fragment that spreads itself counts nothing more.
    two = "query A { metrics { name } } query B { districts { code } }"
    assert document_cost(schema, parse(two), None, "B") == 1 + 260
    assert cost("{ ...F } fragment F on Query { metrics { name } ...F }") == 1 + len(metrics())


LIVE = """subscription ($cells: [String!]) {
  liveReadings(area: {cells: $cells}, metrics: ["pm2_5"]) { ts }
}"""


async def test_a_client_holds_a_bounded_number_of_subscriptions_over_all_its_sockets(
    auth_hub: Hub,
) -> None:
    """Two sockets of one client share its allowance; closing them gives it back, and
    another client has its own."""
    token = await auth_hub.token("sensors:read")
    variables = {"cells": ["8930e1c3243ffff"]}
    async with socket(auth_hub, token) as first, socket(auth_hub, token) as second:
        for n in range(MAX_SUBSCRIPTIONS + 1):  # they start in their own order: one is refused
            await subscribe((first, second)[n % 2], f"s{n}", LIVE, variables)
        error = await first_message(first, second)
        assert error["type"] == "error", error
        (payload,) = error["payload"]
        assert payload["extensions"] == {
            "code": "TOO_MANY_SUBSCRIPTIONS",
            "limit": MAX_SUBSCRIPTIONS,
        }
        assert payload["message"].startswith(
            f"This client already holds {MAX_SUBSCRIPTIONS} subscriptions"
        )
        await still_open(first)
        await still_open(second)
        async with socket(auth_hub, await auth_hub.token("sensors:read")) as other:
            await subscribe(other, "other", LIVE, variables)
            await still_open(other)
    async with socket(auth_hub, token) as again:  # both sockets closed: their slots freed
        for n in range(MAX_SUBSCRIPTIONS):
            await subscribe(again, f"again{n}", LIVE, variables)
        await still_open(again)


async def first_message(*sockets: websockets.ClientConnection) -> dict[str, Any]:
    receiving = [asyncio.create_task(ws.recv()) for ws in sockets]
    done, pending = await asyncio.wait(
        receiving, timeout=BOUND_SECONDS, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    assert done, "no answer"
    message: dict[str, Any] = json.loads(done.pop().result())
    return message


@asynccontextmanager
async def socket(hub: Hub, token: str) -> AsyncIterator[websockets.ClientConnection]:
    url = hub.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        yield ws


async def subscribe(
    ws: websockets.ClientConnection, id_: str, query: str, variables: dict[str, Any]
) -> None:
    payload = {"query": query, "variables": variables}
    await ws.send(json.dumps({"id": id_, "type": "subscribe", "payload": payload}))


async def still_open(ws: websockets.ClientConnection) -> None:
    """No (other) subscription on the socket was refused: a ping is answered first."""
    await ws.send(json.dumps({"type": "ping"}))
    answer = json.loads(await asyncio.wait_for(ws.recv(), BOUND_SECONDS))
    assert answer == {"type": "pong"}, answer
