"""Attacks on the authorization server and on GraphQL, each refused with the right error."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, OctKey

from auth import keys
from tests.oauth import (
    PASSWORD,
    REDIRECT,
    Hub,
    approve,
    authorize_url,
    code_for,
    hidden_fields,
    pkce,
    redirect_params,
)

pytestmark = pytest.mark.db

VIEWER = "{ viewer { clientId } }"


async def token_request(hub: Hub, data: dict[str, str], auth: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        return await http.post("/oauth/token", data=data, auth=auth)


async def graphql_as(hub: Hub, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        return await http.post(
            "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"}
        )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def valid_claims(hub: Hub) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": hub.url,
        "aud": f"{hub.url}/graphql",
        "sub": "intruder",
        "client_id": "intruder",
        "scope": "profile sensors:read",
        "jti": f"forged-{now}",
        "iat": now,
        "exp": now + 300,
    }


async def signed_with_hub_key(hub: Hub, claims: dict[str, Any]) -> str:
    """A token signed with the hub's real current key: only the claims can be wrong."""
    ring = await keys.load(hub.pool, keys.timedelta(seconds=600))
    key = ring.current()
    header = {"alg": keys.ALG, "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key.private_key(), algorithms=[keys.ALG])


async def assert_invalid_token(hub: Hub, token: str) -> None:
    response = await graphql_as(hub, token)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# Forged and misused access tokens on GraphQL


async def test_alg_none_token_is_refused(auth_hub: Hub) -> None:
    claims = await valid_claims(auth_hub)
    token = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims)}."
    await assert_invalid_token(auth_hub, token)


async def test_hs256_signed_with_the_public_key_is_refused(auth_hub: Hub) -> None:
    async with httpx.AsyncClient() as http:
        public = (await http.get(f"{auth_hub.url}/.well-known/jwks.json")).json()["keys"][0]
    secret = OctKey.import_key(json.dumps(public).encode())
    header = {"alg": "HS256", "typ": "at+jwt", "kid": public["kid"]}
    token = jwt.encode(header, await valid_claims(auth_hub), secret, algorithms=["HS256"])
    await assert_invalid_token(auth_hub, token)


async def test_token_with_embedded_jwk_header_is_refused(auth_hub: Hub) -> None:
    attacker = ECKey.generate_key("P-256")
    header = {
        "alg": "ES256",
        "typ": "at+jwt",
        "jwk": attacker.as_dict(private=False),
        "kid": "attacker",
    }
    token = jws.serialize_compact(
        header, json.dumps(await valid_claims(auth_hub)).encode(), attacker, algorithms=["ES256"]
    )
    await assert_invalid_token(auth_hub, token)


async def test_expired_token_is_refused(auth_hub: Hub) -> None:
    claims = await valid_claims(auth_hub)
    claims |= {"iat": claims["iat"] - 3600, "exp": claims["iat"] - 1800}
    await assert_invalid_token(auth_hub, await signed_with_hub_key(auth_hub, claims))


async def test_wrong_audience_is_refused(auth_hub: Hub) -> None:
    claims = await valid_claims(auth_hub) | {"aud": "https://another-api.example/graphql"}
    await assert_invalid_token(auth_hub, await signed_with_hub_key(auth_hub, claims))


async def test_wrong_issuer_is_refused(auth_hub: Hub) -> None:
    claims = await valid_claims(auth_hub) | {"iss": "https://evil.example"}
    await assert_invalid_token(auth_hub, await signed_with_hub_key(auth_hub, claims))


async def test_correctly_signed_token_is_accepted(auth_hub: Hub) -> None:
    # The control for the four above: only the broken part makes them fail.
    token = await signed_with_hub_key(auth_hub, await valid_claims(auth_hub))
    response = await graphql_as(auth_hub, token)
    assert response.json() == {"data": {"viewer": {"clientId": "intruder"}}}


async def test_malformed_authorization_header_is_refused(auth_hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=auth_hub.url) as http:
        for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt"):
            response = await http.post(
                "/graphql", json={"query": VIEWER}, headers={"Authorization": header}
            )
            assert response.status_code == 401, header


# The authorization code


async def test_replayed_code_is_refused_and_revokes_its_tokens(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    code, verifier = await code_for(auth_hub, client.client_id)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    auth = (client.client_id, client.client_secret)
    first = await token_request(auth_hub, exchange, auth)
    assert first.status_code == 200
    assert (await graphql_as(auth_hub, first.json()["access_token"])).status_code == 200

    replay = await token_request(auth_hub, exchange, auth)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    refresh = await token_request(
        auth_hub,
        {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]},
        auth,
    )
    assert refresh.json()["error"] == "invalid_grant"  # the grant died with the replay


async def test_code_is_bound_to_its_client(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    thief = await auth_hub.client(redirect_uris=[REDIRECT])
    code, verifier = await code_for(auth_hub, client.client_id)
    stolen = await token_request(
        auth_hub,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        (thief.client_id, thief.client_secret),
    )
    assert stolen.json()["error"] == "invalid_grant"


# PKCE


async def test_authorization_without_pkce_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    response = await approve(
        auth_hub.url, authorize_url(auth_hub.url, client.client_id, None), "nobody"
    )
    params = redirect_params(response)
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]
    assert params["iss"] == auth_hub.url  # RFC 9207 on error responses too


async def test_plain_pkce_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    verifier, _ = pkce()
    url = authorize_url(
        auth_hub.url,
        client.client_id,
        None,
        code_challenge=verifier,
        code_challenge_method="plain",
    )
    params = redirect_params(await approve(auth_hub.url, url, "nobody"))
    assert params["error"] == "invalid_request"
    assert "S256" in params["error_description"]


async def test_wrong_or_missing_verifier_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    auth = (client.client_id, client.client_secret)
    for verifier_field in ({"code_verifier": pkce()[0]}, {}):
        code, _ = await code_for(auth_hub, client.client_id)
        response = await token_request(
            auth_hub,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                **verifier_field,
            },
            auth,
        )
        assert response.status_code == 400
        assert response.json()["error"] in ("invalid_grant", "invalid_request"), response.text


# Redirect URIs


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT + "/extra",
        REDIRECT + "?next=https://evil.example",
        "https://127.0.0.1:9999/callback",
        "http://127.0.0.1.evil.example:9999/callback",
        "http://localhost:9999/callback",
    ],
    # Another port is allowed on loopback (RFC 8252 7.3): test_oauth_hardening.py
    ids=["extra path", "extra query", "other scheme", "look-alike host", "other host name"],
)
async def test_redirect_uri_must_match_exactly(auth_hub: Hub, redirect_uri: str) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1], redirect_uri=redirect_uri)
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    # Never a redirect to the unregistered URI: an error page on the hub itself.
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_request" in response.text or "redirect" in response.text.lower()


# Scopes, client authentication, grant types


async def test_scope_escalation_at_token_endpoint_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client(scope_names="sensors:read")
    response = await token_request(
        auth_hub,
        {"grant_type": "client_credentials", "scope": "sensors:read sensors:ingest"},
        (client.client_id, client.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


async def test_scope_escalation_at_refresh_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT], scope_names="profile sensors:read")
    code, verifier = await code_for(auth_hub, client.client_id, scope="profile")
    auth = (client.client_id, client.client_secret)
    tokens = await token_request(
        auth_hub,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth,
    )
    refresh_token = tokens.json()["refresh_token"]
    wider = await token_request(
        auth_hub,
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": "sensors:read"},
        auth,
    )
    assert wider.json()["error"] == "invalid_scope"
    # The refused attempt did not use up the refresh token.
    same = await token_request(
        auth_hub, {"grant_type": "refresh_token", "refresh_token": refresh_token}, auth
    )
    assert same.status_code == 200, same.text


async def test_narrower_refresh_does_not_narrow_the_grant(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT], scope_names="profile sensors:read")
    code, verifier = await code_for(auth_hub, client.client_id, scope="profile sensors:read")
    auth = (client.client_id, client.client_secret)
    tokens = await token_request(
        auth_hub,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth,
    )
    narrow = await token_request(
        auth_hub,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens.json()["refresh_token"],
            "scope": "profile",
        },
        auth,
    )
    assert narrow.json()["scope"] == "profile"
    wide = await token_request(
        auth_hub,
        {
            "grant_type": "refresh_token",
            "refresh_token": narrow.json()["refresh_token"],
            "scope": "profile sensors:read",
        },
        auth,
    )
    assert wide.status_code == 200, wide.text
    assert wide.json()["scope"] == "profile sensors:read"


async def test_authorization_asking_for_unallowed_scope_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT], scope_names="profile")
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1], scope="profile sensors:precise")
    params = redirect_params(await approve(auth_hub.url, url, "nobody"))
    assert params["error"] == "invalid_scope"


async def test_wrong_client_secret_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client()
    response = await token_request(
        auth_hub, {"grant_type": "client_credentials"}, (client.client_id, "not-the-secret")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_disabled_client_is_refused(auth_hub: Hub) -> None:
    from auth import store

    client = await auth_hub.client()
    await store.disable_client(auth_hub.pool, client.client_id)
    response = await token_request(
        auth_hub, {"grant_type": "client_credentials"}, (client.client_id, client.client_secret)
    )
    assert response.json()["error"] == "invalid_client"
    async with httpx.AsyncClient() as http:
        page = await http.get(authorize_url(auth_hub.url, client.client_id, pkce()[1]))
    assert page.status_code == 400


async def test_public_client_cannot_use_client_credentials(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT], public=True)
    response = await token_request(
        auth_hub, {"grant_type": "client_credentials", "client_id": client.client_id}
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")


async def test_wrong_password_shows_the_sign_in_page_again(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1])
    response = await approve(auth_hub.url, url, await auth_hub.citizen(), password="wrong-password")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text


async def test_denied_consent_returns_access_denied(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1])
    response = await approve(auth_hub.url, url, await auth_hub.citizen(), decision="deny")
    params = redirect_params(response)
    assert params["error"] == "access_denied"
    assert params["iss"] == auth_hub.url


async def test_consent_post_without_the_csrf_token_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1])
    username = await auth_hub.citizen()
    async with httpx.AsyncClient(base_url=auth_hub.url) as browser:
        page = await browser.get(url)
        fields = hidden_fields(page.text)
        signed_in = await browser.post(
            "/oauth/login", data=fields | {"username": username, "password": PASSWORD}
        )
        assert signed_in.status_code == 303
        consent = hidden_fields((await browser.get(signed_in.headers["location"])).text)
        for csrf in ("", "forged-token"):
            forged = await browser.post(
                "/oauth/authorize", data=consent | {"csrf_token": csrf, "decision": "approve"}
            )
            assert forged.status_code == 403
            assert "location" not in forged.headers
        # The real token still works: the check is what refused the others.
        real = await browser.post("/oauth/authorize", data=consent | {"decision": "approve"})
        assert "code" in redirect_params(real)


async def test_login_without_the_csrf_token_is_refused(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    url = authorize_url(auth_hub.url, client.client_id, pkce()[1])
    username = await auth_hub.citizen()
    async with httpx.AsyncClient(base_url=auth_hub.url) as browser:
        fields = hidden_fields((await browser.get(url)).text)
        response = await browser.post(
            "/oauth/login",
            data=fields | {"csrf_token": "x", "username": username, "password": PASSWORD},
        )
    assert response.status_code == 403


async def test_pages_cannot_be_framed(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    async with httpx.AsyncClient() as http:
        page = await http.get(authorize_url(auth_hub.url, client.client_id, pkce()[1]))
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_concurrent_refresh_reuse_leaves_no_working_token(auth_hub: Hub) -> None:
    """Concurrent uses of one refresh token that are not the same request (here: other
    scopes) are reuse; the same request twice is forgiven (test_oauth_hardening.py)."""
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    code, verifier = await code_for(auth_hub, client.client_id, scope="profile sensors:read")
    auth = (client.client_id, client.client_secret)
    first = await token_request(
        auth_hub,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth,
    )
    refresh = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}
    scopes = ("profile", "sensors:read", "profile sensors:read")
    answers = await asyncio.gather(
        *(token_request(auth_hub, refresh | {"scope": scope}, auth) for scope in scopes)
    )
    issued = [a.json()["access_token"] for a in answers if a.status_code == 200]
    assert len(issued) <= 1
    await asyncio.sleep(2.5)  # GraphQL reloads revocations every 2 s
    for access_token in [first.json()["access_token"], *issued]:
        assert (await graphql_as(auth_hub, access_token)).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "ES256", "typ": "at+jwt", "crit": [1]},
        {"alg": "ES256", "typ": "at+jwt", "kid": "키"},
        {"alg": "ES256\r\nX-Injected: 1", "typ": "at+jwt"},
    ],
    ids=["crit", "non-ascii kid", "crlf alg"],
)
async def test_odd_token_headers_get_401_not_500(auth_hub: Hub, header: dict[str, Any]) -> None:
    token = f"{b64(header)}.{b64(await valid_claims(auth_hub))}.c2ln"
    await assert_invalid_token(auth_hub, token)


async def test_control_characters_in_oauth_parameters_are_refused(auth_hub: Hub) -> None:
    response = await token_request(
        auth_hub, {"grant_type": "client_credentials", "client_id": "a\x00b"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{auth_hub.url}/oauth/authorize?client_id=%00")
    assert page.status_code == 400


async def test_repeated_oauth_parameters_are_refused(auth_hub: Hub) -> None:
    """RFC 6749 3.1/3.2: a parameter must not repeat; taking either copy could let one
    part of a system read a different value than another."""
    client = await auth_hub.client(scope_names="sensors:read")
    auth = (client.client_id, client.client_secret or "")
    async with httpx.AsyncClient(base_url=auth_hub.url) as http:
        once = await http.post(
            "/oauth/token",
            content="grant_type=client_credentials&scope=sensors:read",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=auth,
        )
        twice = await http.post(
            "/oauth/token",
            content="grant_type=client_credentials&scope=sensors:read&scope=profile",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=auth,
        )
        page = await http.get("/oauth/authorize?response_type=code&client_id=a&client_id=b")
    assert once.status_code == 200
    assert twice.status_code == 400
    assert twice.json() == {
        "error": "invalid_request",
        "error_description": "'scope' is given more than once",
    }
    assert page.status_code == 400
    assert "given more than once" in page.text


async def test_forged_token_with_a_real_jti_is_not_active(auth_hub: Hub) -> None:
    client = await auth_hub.client(scope_names="sensors:read")
    auth = (client.client_id, client.client_secret)
    issued = (await token_request(auth_hub, {"grant_type": "client_credentials"}, auth)).json()
    real = json.loads(base64.urlsafe_b64decode(issued["access_token"].split(".")[1] + "=="))
    forged = f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(real)}."
    async with httpx.AsyncClient(base_url=auth_hub.url) as http:
        answer = await http.post("/oauth/introspect", data={"token": forged}, auth=auth)
    assert answer.json() == {"active": False}
