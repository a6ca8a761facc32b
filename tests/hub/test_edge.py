"""The GraphQL edge: what a client's mistakes get back and how they are logged, limits on
bodies and documents, subscriptions over HTTP and subscriptions whose token ends."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from graphql import GraphQLError, parse
from joserfc import jwt

from auth import keys
from hub.core.errors import Forbidden
from schema.extensions import DocumentStore, log_errors
from tests.oauth import Hub

pytestmark = pytest.mark.db

QUIET = (  # a live feed of a district no test sends readings to
    'subscription { liveReadings(area: {district: "11110"}, metrics: ["pm2_5"]) { ts } }'
)


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


# Client mistakes and how they are logged


async def test_client_mistakes_are_logged_as_such_and_our_faults_with_a_traceback(
    auth_hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = await auth_hub.token("sensors:read")
    mistakes = [
        ({"query": "{ viewer { citizen { displayName } } }"}, token, "FORBIDDEN"),
        ({"query": "{ sensorDevices { deviceId } }"}, None, "UNAUTHENTICATED"),
        ({"query": '{ district(code: "1111") { name } }'}, None, "BAD_USER_INPUT"),
        ({"query": "{ nope }"}, None, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": "{ districts { code "}, None, "GRAPHQL_VALIDATION_FAILED"),
    ]
    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=10) as http:
        for body, bearer, code in mistakes:
            headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
            answer = (await http.post("/graphql", json=body, headers=headers)).json()
            assert code in codes(answer), answer
    ours = [r for r in caplog.records if r.name in ("strawberry.execution", "schema.extensions")]
    assert [r for r in ours if r.levelno >= logging.WARNING] == []
    client_lines = [r for r in ours if r.getMessage().startswith("graphql.client_error")]
    assert len(client_lines) == len(mistakes)
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in client_lines)
    assert {code for *_, code in mistakes} <= {
        r.getMessage().split("code=")[1].split()[0] for r in client_lines
    }


def test_our_faults_are_logged_at_error_with_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def located(exc: Exception) -> GraphQLError:
        try:
            raise exc
        except Exception as raised:
            return GraphQLError(str(raised), path=["district"], original_error=raised)

    caplog.set_level(logging.INFO, logger="schema.extensions")
    log_errors([located(KeyError("a bug")), located(Forbidden("needs scope x"))])
    bug, forbidden = caplog.records
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
    assert bug.getMessage().startswith("graphql.unexpected_error")
    assert forbidden.levelno == logging.INFO and forbidden.exc_info is None


# Inputs


@pytest.mark.parametrize(
    ("query", "variables", "argument"),
    [
        ('{ districts(province: "\\u0000") { code } }', None, "province"),
        (
            "query($p: String) { districts(province: $p) { code } }",
            {"p": "서울\u0000"},
            None,
        ),
        (
            'mutation { registerSensorDevice(input: {deviceId: "d\\u0000", vehicleId: "v"}) '
            "{ deviceId } }",
            None,
            "input",
        ),
        (
            "mutation($input: RegisterSensorDeviceInput!) "
            "{ registerSensorDevice(input: $input) { deviceId } }",
            {"input": {"deviceId": "d", "vehicleId": "v\u0000"}},
            None,
        ),
        (
            "mutation($d: String!) { disableSensorDevice(deviceId: $d) { deviceId } }",
            {"d": "\u0000"},
            None,
        ),
    ],
)
async def test_a_nul_character_is_refused_before_execution(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None, argument: str | None
) -> None:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    assert response.status_code == 200
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "NUL" in error["message"]
    if argument is not None:
        assert error["extensions"]["argument"] == argument
        assert f"'{argument}'" in error["message"]
    else:
        assert "Variable '$" in error["message"]


DISTRICT = "query($code: String!) { district(code: $code) { name } }"
SERIES = (
    "query($from: DateTime!, $area: AreaInput!) "
    '{ sensorSeries(area: $area, metric: "pm2_5", from: $from, to: $from) { bucket } }'
)
SEOUL = {"district": "11110"}


@pytest.mark.parametrize(
    ("query", "variables", "says"),
    [
        (DISTRICT, {"code": 11110}, "String cannot represent"),
        (DISTRICT, {"code": None}, "non-null type"),
        (DISTRICT, {}, "to be provided"),
        (SERIES, {"from": "yesterday", "area": SEOUL}, "$from"),
        (SERIES, {"from": "2026-01-01T00:00:00Z", "area": {**SEOUL, "x": 1}}, "'x'"),
    ],
)
async def test_a_bad_variable_is_the_clients_to_fix(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], says: str
) -> None:
    body = (await client.post("/graphql", json={"query": query, "variables": variables})).json()
    assert body["data"] is None
    assert codes(body) == ["BAD_USER_INPUT"], body
    message = body["errors"][0]["message"]
    assert message.startswith("Variable '$") and says in message, message


# Subscriptions


async def test_a_subscription_over_http_is_told_to_use_the_websocket(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/graphql", json={"query": QUIET})
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "WebSocket" in error["message"] and "graphql-transport-ws" in error["message"]


@asynccontextmanager
async def subscribed(hub: Hub, token: str) -> AsyncIterator[Any]:
    url = hub.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": QUIET}}))
        yield ws


async def ending(ws: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last result of a subscription and its `complete` (bounded: it must come)."""
    last = json.loads(await asyncio.wait_for(ws.recv(), 20))
    done = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return last, done


async def test_a_quiet_subscription_ends_when_its_token_is_revoked(auth_hub: Hub) -> None:
    client = await auth_hub.client(scope_names="sensors:read")
    async with httpx.AsyncClient(base_url=auth_hub.url) as http:
        issued = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret or ""),
        )
        token = issued.json()["access_token"]
        async with subscribed(auth_hub, token) as ws:
            await http.post(
                "/oauth/revoke",
                data={"token": token},
                auth=(client.client_id, client.client_secret or ""),
            )
            last, done = await ending(ws)
    assert last["type"] == "next" and last["payload"]["data"] is None
    (error,) = last["payload"]["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "revoked" in error["message"]
    assert done == {"id": "1", "type": "complete"}


async def test_a_quiet_subscription_ends_when_its_token_expires(auth_hub: Hub) -> None:
    client = await auth_hub.client(scope_names="sensors:read")
    key = (await keys.load(auth_hub.pool, timedelta(minutes=10))).current()
    now = int(time.time())
    claims = {
        "iss": auth_hub.url,
        "aud": f"{auth_hub.url}/graphql",
        "sub": client.client_id,
        "client_id": client.client_id,
        "scope": "sensors:read",
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 3,
    }
    header = {"alg": keys.ALG, "typ": "at+jwt", "kid": key.kid}
    token = jwt.encode(header, claims, key.private_key(), algorithms=[keys.ALG])
    async with subscribed(auth_hub, token) as ws:
        last, done = await ending(ws)
    (error,) = last["payload"]["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "expired" in error["message"]
    assert done == {"id": "1", "type": "complete"}


# Limits


async def test_a_body_over_the_limit_is_refused_unread(client: httpx.AsyncClient) -> None:
    padding = " " * (1024 * 1024)
    declared = await client.post("/graphql", json={"query": "{ __typename }" + padding})
    assert declared.status_code == 413
    assert codes(declared.json()) == ["BAD_REQUEST"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"query": "{ __typename }'
        for _ in range(64):
            yield b" " * 32 * 1024
        yield b'"}'

    streamed = await client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert "IEUM_GRAPHQL_MAX_BODY_BYTES" in streamed.json()["errors"][0]["message"]
    ok = await client.post("/graphql", json={"query": "{ __typename }" + " " * 1000})
    assert ok.json() == {"data": {"__typename": "Query"}}


async def test_a_document_over_the_token_limit_is_refused(client: httpx.AsyncClient) -> None:
    query = "{ " + " ".join(f"a{i}: __typename" for i in range(6000)) + " }"  # 18,002 tokens
    body = (await client.post("/graphql", json={"query": query})).json()
    assert body["data"] is None
    assert "more than 15000 tokens" in body["errors"][0]["message"]
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]


def test_the_document_cache_is_bounded_by_bytes() -> None:
    store = DocumentStore(max_entries=100, max_bytes=1000, max_document_bytes=300)
    document = parse("{ __typename }")
    assert store.put("x" * 301, (), document) is None  # too large to keep
    for i in range(10):
        store.put(f"{i:0>250}", (), document)
    assert store.bytes <= 1000 and len(store) == 4
    assert store.get(f"{9:0>250}", ()) is not None
    assert store.get(f"{0:0>250}", ()) is None  # the oldest went first


# Media types


async def test_graphql_response_json_is_answered_in_kind(client: httpx.AsyncClient) -> None:
    accept = {"accept": "application/graphql-response+json"}
    fine = await client.post("/graphql", json={"query": "{ __typename }"}, headers=accept)
    assert fine.status_code == 200
    assert fine.headers["content-type"].startswith("application/graphql-response+json")
    assert fine.json() == {"data": {"__typename": "Query"}}
    for query in ("{ districts { code ", "{ nope }"):
        refused = await client.post("/graphql", json={"query": query}, headers=accept)
        assert refused.status_code == 400
        assert refused.headers["content-type"].startswith("application/graphql-response+json")
        assert "data" not in refused.json() and refused.json()["errors"]
    field_error = await client.post(
        "/graphql", json={"query": '{ district(code: "1111") { name } }'}, headers=accept
    )
    assert field_error.status_code == 200  # it ran: a field's error, not the request's

    legacy = await client.post("/graphql", json={"query": "{ nope }"})
    assert legacy.status_code == 200
    assert legacy.headers["content-type"].startswith("application/json")
    assert legacy.json()["data"] is None


async def test_a_request_refused_before_graphql_still_has_the_graphql_shape(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert codes(response.json()) == ["BAD_REQUEST"]
    nested = b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    deep = await client.post(
        "/graphql", content=nested, headers={"content-type": "application/json"}
    )
    assert deep.status_code == 400
    assert codes(deep.json()) == ["BAD_REQUEST"]
