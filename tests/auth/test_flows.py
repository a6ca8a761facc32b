"""Every OAuth flow, driven by client libraries not written here: authlib's client and
requests-oauth2client (with discovery from the metadata document)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc.jwk import ECKey
from requests_oauth2client import (
    ClientSecretPost,
    InvalidClient,
    InvalidGrant,
    OAuth2Client,
    PrivateKeyJwt,
)

from auth import store
from tests.oauth import REDIRECT, Hub, approve, code_for, pkce, redirect_params

pytestmark = pytest.mark.db

VIEWER = "{ viewer { clientId clientName scopes expiresAt citizen { username displayName } } }"


async def viewer(hub: Hub, access_token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        return await http.post(
            "/graphql",
            json={"query": VIEWER},
            headers={"Authorization": f"Bearer {access_token}"},
        )


def discovered(hub: Hub, **auth: Any) -> OAuth2Client:
    """requests-oauth2client configured from our RFC 8414 metadata document."""
    return OAuth2Client.from_discovery_endpoint(
        f"{hub.url}/.well-known/oauth-authorization-server",
        issuer=hub.url,
        testing=True,  # plain http on loopback
        redirect_uri=REDIRECT,
        **auth,
    )


async def test_metadata_document_is_valid_rfc8414(auth_hub: Hub) -> None:
    async with httpx.AsyncClient() as http:
        metadata = (await http.get(f"{auth_hub.url}/.well-known/oauth-authorization-server")).json()
    AuthorizationServerMetadata(metadata).validate()
    assert metadata["issuer"] == auth_hub.url
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


async def test_client_credentials_with_authlib(auth_hub: Hub) -> None:
    client = await auth_hub.client(scope_names="sensors:read")

    def fetch() -> dict[str, Any]:
        with OAuth2Session(client.client_id, client.client_secret, scope="sensors:read") as s:
            return dict(
                s.fetch_token(f"{auth_hub.url}/oauth/token", grant_type="client_credentials")
            )

    token = await asyncio.to_thread(fetch)
    assert token["token_type"].lower() == "bearer"
    assert token["expires_in"] == 600
    assert "refresh_token" not in token
    body = (await viewer(auth_hub, token["access_token"])).json()
    assert body["data"]["viewer"]["clientId"] == client.client_id
    assert body["data"]["viewer"]["clientName"] == "Test app"
    assert body["data"]["viewer"]["scopes"] == ["sensors:read"]


async def test_access_token_is_an_rfc9068_jwt(auth_hub: Hub) -> None:
    client = await auth_hub.client(scope_names="sensors:read")
    token = await asyncio.to_thread(
        lambda: (
            discovered(auth_hub, auth=(client.client_id, client.client_secret))
            .client_credentials(scope="sensors:read")
            .access_token
        )
    )
    header, claims = (_b64json(part) for part in token.split(".")[:2])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert "kid" in header
    assert claims["iss"] == auth_hub.url
    assert claims["aud"] == f"{auth_hub.url}/graphql"
    assert claims["sub"] == claims["client_id"] == client.client_id
    assert claims["scope"] == "sensors:read"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["jti"]
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(f"{auth_hub.url}/.well-known/jwks.json")).json()
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    assert all("d" not in key for key in jwks["keys"])  # public halves only


async def test_code_flow_with_pkce_using_authlib(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    verifier, _ = pkce()
    session = OAuth2Session(
        client.client_id,
        client.client_secret,
        scope="profile",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
    )
    url, state = session.create_authorization_url(
        f"{auth_hub.url}/oauth/authorize", code_verifier=verifier
    )
    response = await approve(auth_hub.url, url, await auth_hub.citizen())
    params = redirect_params(response)
    assert params["state"] == state
    assert params["iss"] == auth_hub.url  # RFC 9207

    def fetch() -> dict[str, Any]:
        with session:
            return dict(
                session.fetch_token(
                    f"{auth_hub.url}/oauth/token",
                    authorization_response=response.headers["location"],
                    code_verifier=verifier,
                )
            )

    token = await asyncio.to_thread(fetch)
    assert token["refresh_token"]
    body = (await viewer(auth_hub, token["access_token"])).json()
    assert body["data"]["viewer"]["citizen"]["displayName"] == "김시민"


async def test_public_client_code_flow_with_discovery(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT], public=True)
    oauth = await asyncio.to_thread(discovered, auth_hub, client_id=client.client_id)
    request = oauth.authorization_request(scope="profile", nonce=None)
    response = await approve(auth_hub.url, str(request.uri), await auth_hub.citizen())
    # requests-oauth2client checks state and the RFC 9207 iss itself.
    authorization = request.validate_callback(response.headers["location"])
    token = await asyncio.to_thread(oauth.authorization_code, authorization)
    assert token.refresh_token
    body = (await viewer(auth_hub, token.access_token)).json()
    assert body["data"]["viewer"]["citizen"]["username"].startswith("citizen_")


async def test_refresh_rotates_and_reuse_revokes_the_grant(auth_hub: Hub) -> None:
    client = await auth_hub.client(redirect_uris=[REDIRECT])
    code, verifier = await code_for(auth_hub, client.client_id)
    oauth = await asyncio.to_thread(
        discovered, auth_hub, auth=ClientSecretPost(client.client_id, client.client_secret or "")
    )
    first = await asyncio.to_thread(
        oauth.authorization_code, code, code_verifier=verifier, redirect_uri=REDIRECT
    )
    second = await asyncio.to_thread(oauth.refresh_token, first.refresh_token or "")
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert (await viewer(auth_hub, second.access_token)).status_code == 200

    # The same request again within auth.oauth.REFRESH_REUSE_GRACE is forgiven (a retry,
    # two tabs); past it, it is reuse. Moved back in time rather than waited for.
    await auth_hub.pool.execute(
        "UPDATE oauth_refresh_tokens SET used_at = used_at - interval '1 minute'"
        " WHERE token_hash = $1",
        store.digest(first.refresh_token or ""),
    )
    with pytest.raises(InvalidGrant):  # the first refresh token again: reuse
        await asyncio.to_thread(oauth.refresh_token, first.refresh_token or "")
    with pytest.raises(InvalidGrant):  # the whole grant is gone, the newest token too
        await asyncio.to_thread(oauth.refresh_token, second.refresh_token)
    await _until_unauthorized(auth_hub, second.access_token)


async def test_private_key_jwt_client(auth_hub: Hub) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "partner-1", "alg": "ES256"})
    client = await auth_hub.client(
        scope_names="sensors:ingest", jwks={"keys": [key.as_dict(private=False)]}
    )
    assert client.client_secret is None
    auth = PrivateKeyJwt(client.client_id, key.as_dict(private=True), alg="ES256")
    oauth = await asyncio.to_thread(discovered, auth_hub, auth=auth)
    token = await asyncio.to_thread(oauth.client_credentials, scope="sensors:ingest")
    body = (await viewer(auth_hub, token.access_token)).json()
    assert body["data"]["viewer"]["scopes"] == ["sensors:ingest"]

    # The same assertion a second time is a replay.
    fixed = PrivateKeyJwt(
        client.client_id, key.as_dict(private=True), alg="ES256", jti_gen=lambda: "same-jti"
    )
    replaying = await asyncio.to_thread(discovered, auth_hub, auth=fixed)
    await asyncio.to_thread(replaying.client_credentials, scope="sensors:ingest")
    with pytest.raises(InvalidClient):
        await asyncio.to_thread(replaying.client_credentials, scope="sensors:ingest")


async def test_private_key_jwt_with_authlib_client(auth_hub: Hub) -> None:
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

    key = ECKey.generate_key("P-256", parameters={"kid": "partner-2", "alg": "ES256"})
    client = await auth_hub.client(
        scope_names="sensors:ingest", jwks={"keys": [key.as_dict(private=False)]}
    )

    def fetch() -> dict[str, Any]:
        token_url = f"{auth_hub.url}/oauth/token"
        with OAuth2Session(
            client.client_id,
            key,
            token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="ES256"),
        ) as session:
            return dict(session.fetch_token(token_url, grant_type="client_credentials"))

    token = await asyncio.to_thread(fetch)
    assert token["scope"] == "sensors:ingest"


async def test_introspection_and_revocation(auth_hub: Hub) -> None:
    client = await auth_hub.client(scope_names="sensors:read")
    oauth = await asyncio.to_thread(
        discovered, auth_hub, auth=(client.client_id, client.client_secret)
    )
    token = await asyncio.to_thread(oauth.client_credentials, scope="sensors:read")
    info = await asyncio.to_thread(oauth.introspect_token, token.access_token)
    assert info["active"] is True
    assert info["client_id"] == client.client_id
    assert info["scope"] == "sensors:read"

    # Another client may not look at this token.
    other = await auth_hub.client(scope_names="sensors:read")
    stranger = await asyncio.to_thread(
        discovered, auth_hub, auth=(other.client_id, other.client_secret)
    )
    assert (await asyncio.to_thread(stranger.introspect_token, token.access_token)) == {
        "active": False
    }

    assert await asyncio.to_thread(oauth.revoke_access_token, token.access_token)
    info = await asyncio.to_thread(oauth.introspect_token, token.access_token)
    assert info == {"active": False}
    await _until_unauthorized(auth_hub, token.access_token)


async def test_disabled_client_loses_its_tokens(auth_hub: Hub) -> None:
    from auth import store

    client = await auth_hub.client(scope_names="sensors:read")
    oauth = await asyncio.to_thread(
        discovered, auth_hub, auth=(client.client_id, client.client_secret)
    )
    token = await asyncio.to_thread(oauth.client_credentials, scope="sensors:read")
    assert await store.disable_client(auth_hub.pool, client.client_id)
    with pytest.raises(InvalidClient):
        await asyncio.to_thread(oauth.client_credentials, scope="sensors:read")
    await _until_unauthorized(auth_hub, token.access_token)


async def _until_unauthorized(hub: Hub, access_token: str, within: float = 5.0) -> None:
    """Revocation reaches GraphQL within `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await viewer(hub, access_token)
        if response.status_code == 401:
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
            return
        assert asyncio.get_running_loop().time() < deadline, "still accepted after revocation"
        await asyncio.sleep(0.2)


def _b64json(part: str) -> dict[str, Any]:
    import base64

    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
