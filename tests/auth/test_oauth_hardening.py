"""The authorization server on odd input, on standards points the audit found missing,
and under parallel refreshes (issue 17): each test fails without its fix."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.oauth import REDIRECT, Hub, authorize_url, pkce

pytestmark = pytest.mark.db

VIEWER = "{ viewer { clientId } }"


async def post(hub: Hub, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        return await http.post(path, data=data, **kwargs)


async def graphql_status(hub: Hub, access_token: str) -> int:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        response = await http.post(
            "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {access_token}"}
        )
    return response.status_code


async def introspect(hub: Hub, token: str, auth: tuple[str, str]) -> dict[str, Any]:
    answer = await post(hub, "/oauth/introspect", {"token": token}, auth=auth)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def location_params(response: httpx.Response, redirect_uri: str) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert (
        location._replace(query="").geturl() == urlsplit(redirect_uri)._replace(query="").geturl()
    )
    return {k: v[0] for k, v in parse_qs(location.query).items()}


# 500s on odd input


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
@pytest.mark.parametrize(
    "credentials",
    [
        base64.b64encode(b"\xff\xfe:\xc3\x28").decode(),
        base64.b64encode(b"client\x00id:secret").decode(),
        base64.b64encode(b"no-colon-here").decode(),
        "not base64 at all!",
    ],
    ids=["not utf-8", "nul byte", "no colon", "not base64"],
)
async def test_unreadable_basic_credentials_are_invalid_client(
    auth_hub: Hub, path: str, credentials: str
) -> None:
    response = await post(
        auth_hub,
        path,
        {"grant_type": "client_credentials", "token": "whatever"},
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    assert isinstance(body["error_description"], str)
    assert response.headers["www-authenticate"].startswith('Basic error="invalid_client"')
    assert response.headers["cache-control"] == "no-store"


async def test_readable_basic_credentials_still_work(auth_hub: Hub) -> None:
    """The control for the test above: RFC 6749 2.3.1 form-encodes id and secret first."""
    client = await auth_hub.client(scope_names="sensors:read")
    secret = client.client_secret or ""
    encoded = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
    response = await post(
        auth_hub,
        "/oauth/token",
        {"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {encoded}"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        'http://127.0.0.1:9999/call"back',
        "http://127.0.0.1:9999/call\\back",
        "http://127.0.0.1:9999/콜백",
        "https://앱.example/callback",
    ],
    ids=["quote", "backslash", "non-ascii path", "non-ascii host"],
)
async def test_unregistered_odd_redirect_uri_is_an_error_page(
    auth_hub: Hub, redirect_uri: str
) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1], redirect_uri=redirect_uri)
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 400, response.text
    assert "location" not in response.headers  # never sent to an unregistered URI
    assert "redirect_uri" in response.text


async def test_odd_response_type_is_an_error_page(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1], response_type="코드")
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 400, response.text
    assert "unsupported_response_type" in response.text


def b64json(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
async def test_assertion_naming_a_client_without_keys_is_invalid_client(
    auth_hub: Hub, path: str
) -> None:
    """A private_key_jwt assertion whose `sub` is a client with a secret and no keys."""
    client = await auth_hub.client(scope_names="sensors:read")
    claims = {"iss": client.client_id, "sub": client.client_id, "aud": auth_hub.url + path}
    response = await post(
        auth_hub,
        path,
        {
            "grant_type": "client_credentials",
            "token": "whatever",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": f"{b64json({'alg': 'ES256'})}.{b64json(claims)}.c2ln",
        },
    )
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] == "invalid_client"
