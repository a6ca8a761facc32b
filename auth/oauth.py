"""The OAuth 2.0 authorization server: authlib's grants and endpoints, stricter, on asyncpg.

authlib's server core is synchronous. Each OAuth request runs authlib in a worker thread
(`anyio.to_thread`), and authlib's hooks reach PostgreSQL by calling back into the event
loop (`anyio.from_thread.run`). Only /oauth/* requests take this path; GraphQL requests
validate tokens on the event loop without touching authlib's server.

Stricter than authlib's defaults, as RFC 9700 asks: PKCE with S256 for every client and
every code; single-use codes whose replay revokes the tokens issued from them; refresh
tokens rotated on every use, a reused one revoking its whole grant (the same request sent
twice within seconds excepted); no silent scope narrowing; exact redirect URI match (any
port on loopback, RFC 8252); `iss` in authorization responses (RFC 9207). Odd input
(unreadable credentials, characters an OAuth error cannot quote) gets an OAuth error.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import unquote

import anyio.from_thread
import asyncpg
from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer as BaseAuthorizationServer
from authlib.oauth2.base import invalid_error_characters
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Request,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant as BaseCodeGrant,
)
from authlib.oauth2.rfc6749.grants import (
    ClientCredentialsGrant as BaseClientCredentialsGrant,
)
from authlib.oauth2.rfc6749.grants import (
    RefreshTokenGrant as BaseRefreshTokenGrant,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint as BaseRevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as BaseIntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from joserfc import jwt
from joserfc.jwk import KeySet

if TYPE_CHECKING:
    from joserfc.jwk import KeySetSerialization

from auth import keys, scopes, store
from auth.models import AuthorizationCode, Citizen, Client, StoredToken
from auth.tokens import is_access_token_type

T = TypeVar("T")
# How long after its first use a refresh token may be sent again in the same request
# (see RefreshTokenGrant). Major providers allow seconds to a minute; a retry or a
# parallel refresh comes within a second or two.
REFRESH_REUSE_GRACE = timedelta(seconds=10)
CONFIDENTIAL_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
ALL_METHODS = [*CONFIDENTIAL_METHODS, "none"]


def on_loop(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run an async function on the event loop from authlib's worker thread."""
    return anyio.from_thread.run(fn, *args)


@dataclass
class OAuthResponse:
    """What authlib's handle_response produces; hooks such as RFC 9207's edit `location`."""

    status: int
    body: Any
    headers: list[tuple[str, str]]

    @property
    def location(self) -> str | None:
        return dict(self.headers).get("Location")

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != "Location"] + [("Location", value)]


class StarletteOAuth2Request(OAuth2Request):
    """authlib's request, built from what the async route already read."""

    def __init__(
        self, method: str, uri: str, headers: Any, query: dict[str, str], form: dict[str, str]
    ) -> None:
        # Headers stay Starlette's case-insensitive object: authlib looks up "Authorization".
        super().__init__(method, uri, headers=headers)
        self.payload = BasicOAuth2Payload({**query, **form})
        self._form = form
        self._args = query

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class StrictCodeChallenge(CodeChallenge):
    """PKCE required for every client, S256 only, method stated explicitly."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' (S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be 'S256'")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


class AuthorizationCodeGrant(BaseCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    AUTHORIZATION_CODE_LENGTH = 48

    @staticmethod
    def validate_authorization_redirect_uri(request: OAuth2Request, client: Client) -> str:
        """authlib's check, without quoting the URI in the error: an unregistered URI
        may hold characters an OAuth error cannot carry (`\\`, `"`, non-ASCII)."""
        uri = request.payload.redirect_uri
        if uri and not client.check_redirect_uri(uri):
            raise InvalidRequestError("'redirect_uri' is not registered for this client.")
        return cast(str, BaseCodeGrant.validate_authorization_redirect_uri(request, client))

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        server: AuthorizationServer = self.server
        user: Citizen = request.user
        grant_id = on_loop(
            store.insert_grant, server.pool, request.client.client_id, user.user_id, request.scope
        )
        on_loop(
            _insert_code,
            server.pool,
            code,
            grant_id,
            {
                "client_id": request.client.client_id,
                "user_id": user.user_id,
                # As sent: the token request must then repeat it (RFC 6749 4.1.3).
                "redirect_uri": request.payload.redirect_uri or "",
                "scope": request.scope,
                "code_challenge": request.payload.data["code_challenge"],
                "expires_at": datetime.now(UTC) + server.code_lifetime,
            },
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        row = on_loop(store.take_code, self.server.pool, code, client.client_id)
        return AuthorizationCode(row) if row else None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Taken (marked used) atomically in query_authorization_code already."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Citizen | None:
        return self.server.citizen(authorization_code.user_id)


class ClientCredentialsGrant(BaseClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_METHODS


class RefreshTokenGrant(BaseRefreshTokenGrant):
    """Rotation: each refresh token works once, and presenting a used one again revokes
    its whole grant (RFC 9700 4.14.2), with one exception.

    The same request sent twice within REFRESH_REUSE_GRACE (same client, same scope)
    gets a fresh pair from the same grant: an app refreshing from two tabs or threads at
    once, or retrying after a lost answer, keeps its grant. Fresh rather than the first
    answer's pair again: refresh tokens are stored only as hashes, and the second request
    usually arrives before the first one's tokens exist. Each new refresh token is in
    turn single-use, and revoking the grant ends them all; the pair the app drops lapses
    with its expiry.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> StoredToken | None:
        """Look only: the token is used up in save_token, with its successors."""
        server: AuthorizationServer = self.server
        row = on_loop(store.find_token, server.pool, refresh_token, None)
        if row is None:
            return None
        token = StoredToken(row)
        if token.is_revoked() or token.is_expired():
            return None
        if row["used_at"] is not None:
            client: Client = self.request.client
            # The scope this request's access token would get, as the first use's got.
            scope = client.get_allowed_scope(self.request.payload.scope or token.scope) or ""
            forgiven = on_loop(
                store.forgive_reuse,
                server.pool,
                refresh_token,
                client.client_id,
                scope,
                REFRESH_REUSE_GRACE,
            )
            return token if forgiven else None
        return token

    def authenticate_user(self, refresh_token: StoredToken) -> Citizen | None:
        if refresh_token.user_id is None:
            return None
        return self.server.citizen(refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: StoredToken) -> None:
        """Already used up by save_token, in the transaction that stored its successors."""


class PrivateKeyJWT(JWTBearerClientAssertion):
    """RFC 7523 client authentication, each assertion accepted once.

    The assertion's `aud` may name the issuer, the token endpoint (RFC 7523 3) or the
    endpoint being called, which is what requests-oauth2client sends to /oauth/revoke
    and /oauth/introspect. authlib asks for the audiences without the request, so one
    instance is made per request (`for_request`).
    """

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: AuthorizationServer, endpoint: str) -> None:
        super().__init__(validate_jti=True, leeway=60)
        self.server = server
        self.endpoint = endpoint

    @staticmethod
    def for_request(server: AuthorizationServer) -> Callable[..., Client | None]:
        def authenticate(query_client: Callable[[str], Client | None], request: Any) -> Any:
            return PrivateKeyJWT(server, request.uri)(query_client, request)

        return authenticate

    def get_audiences(self) -> list[str]:
        return [self.server.issuer, self.server.issuer + "/oauth/token", self.endpoint]

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if not client.jwks:  # joserfc would fail on an empty set, as a server error
            raise InvalidClientError(description="The client has no keys for 'private_key_jwt'.")
        return KeySet.import_key_set(cast("KeySetSerialization", client.jwks))

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC) + timedelta(seconds=60)
        return on_loop(store.use_assertion_jti, self.server.pool, claims["sub"], jti, expires)


class RevocationEndpoint(BaseRevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:
        return self.server.stored_token(token_string)

    def revoke_token(self, token: StoredToken, request: OAuth2Request) -> None:
        if token.kind == "refresh_token":
            on_loop(store.revoke_grant, self.server.pool, token.grant_id)
        else:
            assert token.jti
            on_loop(store.revoke_access_token, self.server.pool, token.jti)


class IntrospectionEndpoint(BaseIntrospectionEndpoint):
    """A client may introspect the tokens issued to it; others come back inactive."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:
        return self.server.stored_token(token_string)

    def check_permission(self, token: StoredToken, client: Client, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: StoredToken) -> dict[str, Any]:
        return {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "scope": token.scope,
            "sub": str(token.user_id) if token.user_id else token.client_id,
            "iss": self.server.issuer,
            "aud": self.server.audience,
            "exp": int(token.expires_at.timestamp()),
            "iat": int(token.issued_at.timestamp()),
            **({"jti": token.jti} if token.jti else {}),
        }


class Issuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class AuthorizationServer(BaseAuthorizationServer):
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        issuer: str,
        audience: str,
        access_token_lifetime: timedelta,
        refresh_token_lifetime: timedelta,
        code_lifetime: timedelta = timedelta(minutes=2),
    ) -> None:
        super().__init__(scopes_supported=scopes.names())
        self.pool = pool
        self.issuer = issuer
        self.audience = audience
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.code_lifetime = code_lifetime
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=self._access_token,
                refresh_token_generator=lambda **_: generate_token(48),
                expires_generator=lambda client, grant_type: int(
                    access_token_lifetime.total_seconds()
                ),
            ),
        )
        self.register_grant(AuthorizationCodeGrant, [StrictCodeChallenge(required=True)])
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(RefreshTokenGrant)
        self.register_client_auth_method("client_secret_basic", _strict_basic)
        self.register_client_auth_method("private_key_jwt", PrivateKeyJWT.for_request(self))
        self.register_endpoint(RevocationEndpoint)
        self.register_endpoint(IntrospectionEndpoint)
        self.register_extension(Issuer(issuer))

    # What authlib asks of a framework integration

    def query_client(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str) or _control_characters(client_id):
            return None  # e.g. a private_key_jwt `sub` PostgreSQL could not even compare
        row = on_loop(store.get_client, self.pool, client_id)
        if row is None or row["disabled_at"] is not None:
            return None
        return Client(row)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        claims = _unverified_claims(token["access_token"])
        grant_type = request.payload.grant_type
        if grant_type == "authorization_code":
            grant_id = request.authorization_code.grant_id
        elif grant_type == "refresh_token":
            grant_id = request.refresh_token.grant_id
        else:
            grant_id = on_loop(
                store.insert_grant, self.pool, request.client.client_id, None, token["scope"]
            )
        user_id = request.user.user_id if request.user else None
        record = {
            "grant_id": grant_id,
            "client_id": request.client.client_id,
            "user_id": user_id,
            "scope": token["scope"],
        }
        # A refresh token keeps the whole grant's scope: asking for less on one refresh
        # narrows that access token only, not the grant.
        refresh_scope = (
            request.refresh_token.scope if grant_type == "refresh_token" else token["scope"]
        )
        stored = on_loop(
            store.insert_tokens_unless_revoked,
            self.pool,
            record
            | {"jti": claims["jti"], "expires_at": datetime.fromtimestamp(claims["exp"], UTC)},
            token.get("refresh_token"),
            datetime.now(UTC) + self.refresh_token_lifetime,
            refresh_scope,
            request.form["refresh_token"] if grant_type == "refresh_token" else None,
            REFRESH_REUSE_GRACE,
        )
        if not stored:  # a replay revoked the grant, or the token was used meanwhile
            raise InvalidGrantError("The refresh token or its grant is no longer valid.")

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No listeners: revocation and issuance are recorded in save_token/revoke_token."""

    def get_authorization_grant(self, request: OAuth2Request) -> Any:
        if invalid_error_characters(request.payload.response_type or ""):
            # authlib would quote it in its error, which cannot carry such characters
            raise UnsupportedResponseTypeError("", "Only response_type=code is supported.")
        return super().get_authorization_grant(request)

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # routes build StarletteOAuth2Request themselves

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers))

    # Helpers for grants and endpoints (called in the worker thread)

    def citizen(self, user_id: uuid.UUID) -> Citizen | None:
        row = on_loop(store.get_citizen, self.pool, user_id)
        return Citizen(row["user_id"], row["username"], row["display_name"]) if row else None

    def stored_token(self, token_string: str) -> StoredToken | None:
        jti = self.verified_jti(token_string) if token_string.count(".") == 2 else None
        row = on_loop(store.find_token, self.pool, token_string, jti)
        if row is None:
            return None
        token = StoredToken(row)
        return None if token.is_expired() or token.is_revoked() else token

    def verified_jti(self, token: str) -> str | None:
        """The jti of an access token we signed; None for anything else (forgeries too)."""
        ring = on_loop(keys.load, self.pool, self.access_token_lifetime)
        try:
            decoded = jwt.decode(
                token, KeySet.import_key_set({"keys": ring.published()}), algorithms=[keys.ALG]
            )
        except Exception:
            return None
        jti = decoded.claims.get("jti")
        if not is_access_token_type(decoded.header.get("typ")) or not isinstance(jti, str):
            return None
        return jti

    def _access_token(
        self, client: Client, grant_type: str, user: Citizen | None, scope: str
    ) -> str:
        """An RFC 9068 JWT signed by exactly the current key."""
        key = on_loop(keys.load, self.pool, self.access_token_lifetime).current()
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user.get_user_id() if user else client.client_id,
            "client_id": client.client_id,
            "scope": scope,
            "jti": generate_token(24),
            "iat": now,
            "exp": now + int(self.access_token_lifetime.total_seconds()),
        }
        header = {"alg": keys.ALG, "typ": "at+jwt", "kid": key.kid}
        return jwt.encode(header, claims, key.private_key(), algorithms=[keys.ALG])


def _strict_basic(query_client: Callable[[str], Client | None], request: Any) -> Client | None:
    """authlib's client_secret_basic, once the header is known to be readable: Basic
    credentials that are not base64 of UTF-8 `id:secret` (RFC 7617; both parts
    form-encoded, RFC 6749 2.3.1) fail authentication with 401 invalid_client instead
    of an error inside authlib (it decodes them as UTF-8 unguarded)."""
    scheme, _, credentials = str(request.headers.get("Authorization", "")).partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        client_id, secret = (unquote(part, errors="strict") for part in decoded.split(":", 1))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidClientError(
            status_code=401,
            description="The Authorization header is not HTTP Basic 'client_id:secret'.",
        ) from None
    if _control_characters(client_id + secret):
        raise InvalidClientError(
            status_code=401, description="The client credentials contain control characters."
        )
    return cast("Client | None", authenticate_client_secret_basic(query_client, request))


def _control_characters(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


async def _insert_code(
    pool: asyncpg.Pool, code: str, grant_id: uuid.UUID, fields: dict[str, Any]
) -> None:
    await store.insert_code(pool, code, grant_id, **fields)


def _unverified_claims(token: str) -> dict[str, Any]:
    """Claims of a JWT we issued ourselves a moment ago (or garbage: then {})."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    if not isinstance(claims, dict):
        return {}
    return claims
