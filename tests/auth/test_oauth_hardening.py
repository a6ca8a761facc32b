"""The authorization server on odd input, on standards points the audit found missing,
and under parallel refreshes (issue 17): each test fails without its fix."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from requests_oauth2client import InvalidClient, OAuth2Client, PrivateKeyJwt

from auth import keys, store
from tests.oauth import REDIRECT, Hub, approve, authorize_url, code_for, pkce

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


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
async def test_a_body_that_is_not_a_form_is_an_oauth_error(auth_hub: Hub, endpoint: str) -> None:
    """A multipart body without its boundary got Starlette's plain-text 400."""
    async with httpx.AsyncClient(base_url=auth_hub.url) as http:
        answer = await http.post(
            endpoint, content=b"x", headers={"Content-Type": "multipart/form-data"}
        )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


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


# RFC 9068: the typ of an access token


async def resigned(hub: Hub, access_token: str, typ: str) -> str:
    """The claims of `access_token`, signed again with the hub's key under header `typ`."""
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    key = (await keys.load(hub.pool, timedelta(seconds=600))).current()
    header = {"alg": keys.ALG, "typ": typ, "kid": key.kid}
    return jwt.encode(header, claims, key.private_key(), algorithms=[keys.ALG])


async def test_access_token_typed_application_at_jwt_is_accepted(auth_hub: Hub) -> None:
    """RFC 9068 4: a resource server accepts `at+jwt` and `application/at+jwt`."""
    client = await auth_hub.client(scope_names="sensors:read")
    auth = (client.client_id, client.client_secret or "")
    issued = await post(auth_hub, "/oauth/token", {"grant_type": "client_credentials"}, auth=auth)
    access_token = issued.json()["access_token"]
    for typ in ("at+jwt", "application/at+jwt", "Application/AT+JWT"):
        token = await resigned(auth_hub, access_token, typ)
        assert await graphql_status(auth_hub, token) == 200, typ
        assert (await introspect(auth_hub, token, auth))["active"] is True, typ
    for typ in ("JWT", "application/jwt", "at+jwt+other"):
        token = await resigned(auth_hub, access_token, typ)
        assert await graphql_status(auth_hub, token) == 401, typ
        assert await introspect(auth_hub, token, auth) == {"active": False}, typ


# RFC 7523: the audience of a private_key_jwt assertion


async def test_private_key_jwt_assertion_may_name_the_endpoint_called(auth_hub: Hub) -> None:
    """requests-oauth2client puts the URL it posts to in `aud`, for every endpoint."""
    key = ECKey.generate_key("P-256", parameters={"kid": "endpoint-aud", "alg": "ES256"})
    client = await auth_hub.client(
        scope_names="sensors:read", jwks={"keys": [key.as_dict(private=False)]}
    )

    def oauth(aud: str | None = None) -> OAuth2Client:
        return OAuth2Client.from_discovery_endpoint(
            f"{auth_hub.url}/.well-known/oauth-authorization-server",
            issuer=auth_hub.url,
            testing=True,
            auth=PrivateKeyJwt(client.client_id, key.as_dict(private=True), alg="ES256", aud=aud),
        )

    partner = await asyncio.to_thread(oauth)
    token = await asyncio.to_thread(partner.client_credentials, scope="sensors:read")
    info = await asyncio.to_thread(partner.introspect_token, token.access_token)
    assert info["active"] is True
    assert await asyncio.to_thread(partner.revoke_access_token, token.access_token)
    assert (await asyncio.to_thread(partner.introspect_token, token.access_token)) == {
        "active": False
    }

    # The issuer itself is still an audience; somebody else's endpoint is not.
    by_issuer = await asyncio.to_thread(oauth, auth_hub.url)
    assert await asyncio.to_thread(by_issuer.client_credentials, scope="sensors:read")
    elsewhere = await asyncio.to_thread(oauth, "https://other-server.example/oauth/introspect")
    with pytest.raises(InvalidClient):
        await asyncio.to_thread(elsewhere.introspect_token, token.access_token)


# RFC 8252 7.3: loopback redirect URIs with any port


@pytest.mark.parametrize(
    ("registered", "used"),
    [
        (REDIRECT, "http://127.0.0.1:51234/callback"),
        ("http://[::1]:8080/done?app=1", "http://[::1]:61000/done?app=1"),
        ("http://127.0.0.1/callback", "http://127.0.0.1:40000/callback"),
    ],
    ids=["ipv4", "ipv6 with query", "registered without port"],
)
async def test_loopback_redirect_uri_may_use_any_port(
    auth_hub: Hub, registered: str, used: str
) -> None:
    client = await auth_hub.client(redirect_uris=[registered])
    verifier, challenge = pkce()
    url = authorize_url(auth_hub.url, client.client_id, challenge, redirect_uri=used)
    response = await approve(auth_hub.url, url, await auth_hub.citizen())
    code = location_params(response, used)["code"]
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": used,  # the one the request used (RFC 6749 4.1.3)
        "code_verifier": verifier,
    }
    auth = (client.client_id, client.client_secret or "")
    tokens = await post(auth_hub, "/oauth/token", exchange, auth=auth)
    assert tokens.status_code == 200, tokens.text


@pytest.mark.parametrize(
    "used",
    [
        "http://127.0.0.1:51234/callback/other",
        "http://127.0.0.1:51234/callback?x=1",
        "http://[::1]:9999/callback",
        "http://localhost:51234/callback",
        "https://127.0.0.1:51234/callback",
        "http://127.0.0.1.evil.example:51234/callback",
    ],
    ids=["other path", "other query", "other address", "host name", "https", "look-alike"],
)
async def test_only_the_port_of_a_loopback_redirect_uri_may_differ(
    auth_hub: Hub, used: str
) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1], redirect_uri=used)
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 400, response.text
    assert "location" not in response.headers


async def test_a_non_loopback_redirect_uri_must_match_its_port(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=["https://app.example:8443/callback"])
    url = authorize_url(
        auth_hub.url, client.client_id, pkce()[1], redirect_uri="https://app.example/callback"
    )
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 400, response.text


# Parallel refreshes: the same request twice within the grace window


async def signed_in_tokens(hub: Hub, scope: str = "profile") -> tuple[dict[str, Any], Any]:
    client = await hub.client(redirect_uris=[REDIRECT], scope_names="profile sensors:read")
    code, verifier = await code_for(hub, client.client_id, scope=scope)
    auth = (client.client_id, client.client_secret or "")
    first = await post(
        hub,
        "/oauth/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=auth,
    )
    assert first.status_code == 200, first.text
    return dict(first.json()), auth


def refresh(token: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": token, **extra}


async def test_parallel_refreshes_both_succeed_and_the_grant_lives(auth_hub: Hub) -> None:
    first, auth = await signed_in_tokens(auth_hub)
    answers = await asyncio.gather(
        *(post(auth_hub, "/oauth/token", refresh(first["refresh_token"]), auth=auth) for _ in "ab")
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    pairs = [a.json() for a in answers]
    assert pairs[0]["refresh_token"] != pairs[1]["refresh_token"]  # a fresh pair each
    for pair in pairs:
        assert pair["scope"] == "profile"
        assert await graphql_status(auth_hub, pair["access_token"]) == 200
        assert (await introspect(auth_hub, pair["access_token"], auth))["active"] is True
        # Each new refresh token works, once, like any other.
        again = await post(auth_hub, "/oauth/token", refresh(pair["refresh_token"]), auth=auth)
        assert again.status_code == 200, again.text


async def test_a_retried_refresh_gets_tokens(auth_hub: Hub) -> None:
    """The same request again after its answer was lost (sent one after the other)."""
    first, auth = await signed_in_tokens(auth_hub, scope="profile sensors:read")
    request = refresh(first["refresh_token"], scope="sensors:read")
    lost = await post(auth_hub, "/oauth/token", request, auth=auth)
    retried = await post(auth_hub, "/oauth/token", request, auth=auth)
    assert lost.status_code == retried.status_code == 200, retried.text
    assert retried.json()["scope"] == "sensors:read"
    assert (await introspect(auth_hub, lost.json()["access_token"], auth))["active"] is True


async def backdate_first_use(hub: Hub, refresh_token: str, seconds: int) -> None:
    """As if the refresh token had been used `seconds` ago (no test waits for a clock)."""
    await hub.pool.execute(
        "UPDATE oauth_refresh_tokens SET used_at = used_at - make_interval(secs => $2)"
        " WHERE token_hash = $1",
        store.digest(refresh_token),
        seconds,
    )


async def assert_grant_revoked(hub: Hub, tokens: list[dict[str, Any]], auth: Any) -> None:
    for pair in tokens:
        assert await introspect(hub, pair["access_token"], auth) == {"active": False}
        replay = await post(hub, "/oauth/token", refresh(pair["refresh_token"]), auth=auth)
        assert replay.json()["error"] == "invalid_grant"


async def test_reuse_after_the_grace_window_revokes_the_grant(auth_hub: Hub) -> None:
    first, auth = await signed_in_tokens(auth_hub)
    second = await post(auth_hub, "/oauth/token", refresh(first["refresh_token"]), auth=auth)
    assert second.status_code == 200
    await backdate_first_use(auth_hub, first["refresh_token"], seconds=11)

    reuse = await post(auth_hub, "/oauth/token", refresh(first["refresh_token"]), auth=auth)
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    await assert_grant_revoked(auth_hub, [first, second.json()], auth)


async def test_reuse_asking_another_scope_revokes_the_grant(auth_hub: Hub) -> None:
    first, auth = await signed_in_tokens(auth_hub, scope="profile sensors:read")
    second = await post(auth_hub, "/oauth/token", refresh(first["refresh_token"]), auth=auth)
    assert second.status_code == 200
    other = await post(
        auth_hub, "/oauth/token", refresh(first["refresh_token"], scope="profile"), auth=auth
    )
    assert other.json()["error"] == "invalid_grant"
    await assert_grant_revoked(auth_hub, [first, second.json()], auth)


async def test_reuse_by_another_client_revokes_the_grant(auth_hub: Hub) -> None:
    first, auth = await signed_in_tokens(auth_hub)
    second = await post(auth_hub, "/oauth/token", refresh(first["refresh_token"]), auth=auth)
    assert second.status_code == 200
    thief = await auth_hub.client(redirect_uris=[REDIRECT], scope_names="profile sensors:read")
    stolen = await post(
        auth_hub,
        "/oauth/token",
        refresh(first["refresh_token"]),
        auth=(thief.client_id, thief.client_secret or ""),
    )
    assert stolen.json()["error"] == "invalid_grant"
    await assert_grant_revoked(auth_hub, [first, second.json()], auth)


async def test_a_token_refreshed_within_the_window_still_expires_with_it(auth_hub: Hub) -> None:
    """The window starts at the first use, not at each forgiven one."""
    first, auth = await signed_in_tokens(auth_hub)
    request = refresh(first["refresh_token"])
    assert (await post(auth_hub, "/oauth/token", request, auth=auth)).status_code == 200
    await backdate_first_use(auth_hub, first["refresh_token"], seconds=5)
    assert (await post(auth_hub, "/oauth/token", request, auth=auth)).status_code == 200
    await backdate_first_use(auth_hub, first["refresh_token"], seconds=6)
    late = await post(auth_hub, "/oauth/token", request, auth=auth)
    assert late.json()["error"] == "invalid_grant"
