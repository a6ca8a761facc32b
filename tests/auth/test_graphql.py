"""Scopes on GraphQL fields: declared once with @requiresScopes, enforced exactly so."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import strawberry
import websockets

from hub.core.caller import ANONYMOUS, Caller
from hub.core.context import Context
from hub.core.domain import Domain
from schema.builder import build_schema
from tests.oauth import REDIRECT, Hub, code_for

# A schema of its own, to pin Apollo's reading: outer list any-of, inner list all-of.


@strawberry.type
class Secrets:
    @strawberry.federation.field(requires_scopes=[["a", "b"], ["c"]])
    def a_and_b_or_c(self) -> str | None:
        return "opened"


@strawberry.federation.type(requires_scopes=[["t"]])
class Guarded:
    @strawberry.field
    def inside(self) -> str | None:
        return "inside"


@strawberry.type
class SecretsQuery:
    @strawberry.field
    def secrets(self) -> Secrets:
        return Secrets()

    @strawberry.field
    def guarded(self) -> Guarded | None:
        return Guarded()


TEST_DOMAIN = Domain(name="scopes_test", query=SecretsQuery)


@pytest.fixture(scope="module")
def schema() -> strawberry.federation.Schema:
    return build_schema([TEST_DOMAIN])


async def run(schema: strawberry.federation.Schema, query: str, scopes: set[str] | None) -> Any:
    caller = (
        ANONYMOUS
        if scopes is None
        else Caller(client_id="app", scopes=frozenset(scopes), expires_at=datetime.now(UTC))
    )
    context = Context(connection=None, db=None, caller=caller)  # type: ignore[arg-type]
    return await schema.execute(query, context_value=context)


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        ({"a", "b"}, True),
        ({"c"}, True),
        ({"a", "b", "c"}, True),
        ({"a"}, False),
        ({"b"}, False),
        (set(), False),
    ],
)
async def test_outer_list_is_any_of_inner_list_all_of(
    schema: strawberry.federation.Schema, scopes: set[str], allowed: bool
) -> None:
    result = await run(schema, "{ secrets { aAndBOrC } }", scopes)
    if allowed:
        assert result.errors is None
        assert result.data == {"secrets": {"aAndBOrC": "opened"}}
    else:
        assert result.data == {"secrets": {"aAndBOrC": None}}  # partial data
        assert result.errors[0].extensions == {
            "code": "FORBIDDEN",
            "requiredScopes": [["a", "b"], ["c"]],
        }


async def test_anonymous_caller_is_told_to_authenticate(
    schema: strawberry.federation.Schema,
) -> None:
    result = await run(schema, "{ secrets { aAndBOrC } }", None)
    assert result.errors[0].extensions["code"] == "UNAUTHENTICATED"


async def test_type_level_scopes_guard_every_field_of_the_type(
    schema: strawberry.federation.Schema,
) -> None:
    result = await run(schema, "{ guarded { inside } }", {"x"})
    assert result.data == {"guarded": {"inside": None}}
    assert result.errors[0].extensions["requiredScopes"] == [["t"]]
    ok = await run(schema, "{ guarded { inside } }", {"t"})
    assert ok.data == {"guarded": {"inside": "inside"}}


def test_printed_sdl_carries_the_enforced_declaration(
    schema: strawberry.federation.Schema,
) -> None:
    sdl = schema.as_str()
    assert 'aAndBOrC: String @requiresScopes(scopes: [["a", "b"], ["c"]])' in sdl
    assert 'type Guarded @requiresScopes(scopes: [["t"]])' in sdl


# The hub's own fields, over HTTP and WebSocket

VIEWER = "{ viewer { clientId scopes citizen { displayName } } }"


async def post(hub: Hub, query: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        return await http.post("/graphql", json={"query": query}, headers=headers)


@pytest.mark.db
async def test_open_data_needs_no_token(auth_hub: Hub) -> None:
    response = await post(
        auth_hub, '{ district(code: "11110") { name } viewer { clientId } }', None
    )
    assert response.json() == {"data": {"district": {"name": "종로구"}, "viewer": None}}


@pytest.mark.db
async def test_token_without_the_scope_gets_partial_data(auth_hub: Hub) -> None:
    token = await auth_hub.token("sensors:read")
    body = (await post(auth_hub, VIEWER, token)).json()
    assert body["data"]["viewer"]["scopes"] == ["sensors:read"]
    assert body["data"]["viewer"]["citizen"] is None
    error = body["errors"][0]
    assert error["path"] == ["viewer", "citizen"]
    assert error["extensions"] == {"code": "FORBIDDEN", "requiredScopes": [["profile"]]}


@pytest.mark.db
async def test_token_with_the_scope_sees_the_citizen(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT], scope_names="profile")
    code, verifier = await code_for(auth_hub, client.client_id)
    async with httpx.AsyncClient(base_url=auth_hub.url) as http:
        tokens = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(client.client_id, client.client_secret or ""),
        )
    body = (await post(auth_hub, VIEWER, tokens.json()["access_token"])).json()
    assert "errors" not in body
    assert body["data"]["viewer"]["citizen"] == {"displayName": "김시민"}


async def ws_session(hub: Hub, init: dict[str, Any], query: str) -> list[dict[str, Any]]:
    url = hub.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        return [json.loads(await ws.recv()), json.loads(await ws.recv())]


@pytest.mark.db
async def test_websocket_takes_the_token_in_connection_init(auth_hub: Hub) -> None:
    token = await auth_hub.token("sensors:read")
    messages = await ws_session(auth_hub, {"Authorization": f"Bearer {token}"}, VIEWER)
    payload = messages[0]["payload"]
    assert payload["data"]["viewer"]["scopes"] == ["sensors:read"]
    assert payload["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # same rule as HTTP
    anonymous = await ws_session(auth_hub, {}, "{ viewer { clientId } }")
    assert anonymous[0]["payload"] == {"data": {"viewer": None}}


@pytest.mark.db
async def test_websocket_with_a_bad_token_is_closed(auth_hub: Hub) -> None:
    url = auth_hub.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer x.y.z"}})
        )
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


@pytest.mark.db
async def test_key_rotation_publishes_first_and_signs_with_one_key(auth_hub: Hub) -> None:
    from auth import keys

    async def jwks() -> set[str]:
        async with httpx.AsyncClient() as http:
            document = (await http.get(f"{auth_hub.url}/.well-known/jwks.json")).json()
        return {key["kid"] for key in document["keys"]}

    def kid_of(token: str) -> str:
        import base64

        header = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]

    before = await auth_hub.token("sensors:read")
    upcoming = await keys.add(auth_hub.pool, signs_in=timedelta(hours=1))
    assert upcoming.kid in await jwks()  # published before it signs
    assert kid_of(await auth_hub.token("sensors:read")) == kid_of(before)

    now = await keys.add(auth_hub.pool, signs_in=timedelta(0))
    after = await auth_hub.token("sensors:read")
    assert kid_of(after) == now.kid  # exactly the current key signs
    published = await jwks()
    assert {kid_of(before), upcoming.kid, now.kid} <= published  # old one kept while tokens live
    await asyncio.sleep(2.5)  # the GraphQL side reloads keys every 2 s
    for token in (before, after):
        assert (await post(auth_hub, "{ viewer { clientId } }", token)).status_code == 200


@pytest.mark.db
async def test_a_token_checked_before_is_refused_once_its_key_is_withdrawn(
    auth_hub: Hub,
) -> None:
    """Signatures are remembered between requests, but only while the key is published."""
    from auth import keys

    token = await auth_hub.token("sensors:read")
    assert (await post(auth_hub, "{ viewer { clientId } }", token)).status_code == 200
    await keys.add(auth_hub.pool, signs_in=timedelta(0))
    header = token.split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    await auth_hub.pool.execute("DELETE FROM oauth_signing_keys WHERE kid = $1", kid)
    await asyncio.sleep(2.5)  # the GraphQL side reloads keys every 2 s
    refused = await post(auth_hub, "{ viewer { clientId } }", token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


@pytest.mark.db
async def test_websocket_operations_recheck_a_revoked_token(auth_hub: Hub) -> None:
    client = await auth_hub.client(scope_names="sensors:read")
    async with httpx.AsyncClient(base_url=auth_hub.url) as http:
        issued = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret or ""),
        )
    token = issued.json()["access_token"]
    url = auth_hub.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"

        async def viewer(op_id: str) -> Any:
            await ws.send(
                json.dumps(
                    {
                        "id": op_id,
                        "type": "subscribe",
                        "payload": {"query": "{ viewer { clientId } }"},
                    }
                )
            )
            answer = json.loads(await ws.recv())
            await ws.recv()  # complete
            return answer["payload"]["data"]["viewer"]

        assert await viewer("1") == {"clientId": client.client_id}
        async with httpx.AsyncClient(base_url=auth_hub.url) as http:
            await http.post(
                "/oauth/revoke",
                data={"token": token},
                auth=(client.client_id, client.client_secret or ""),
            )
        await asyncio.sleep(2.5)
        assert await viewer("2") is None  # the socket is anonymous now
