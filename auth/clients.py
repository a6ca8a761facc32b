"""Registering OAuth clients: ids, secrets, redirect URIs and what each client may do."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import asyncpg
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

if TYPE_CHECKING:
    from joserfc.jwk import KeySetSerialization

from auth import scopes, store


class ClientError(ValueError):
    """The client registration is invalid; the message says what to change."""


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str | None
    name: str
    auth_method: str
    scopes: list[str]
    redirect_uris: list[str]
    grant_types: list[str]


def check_redirect_uri(uri: str) -> str:
    """An absolute URI without fragment: https, http on loopback only (RFC 8252 native
    apps), or an app's private-use scheme such as `kr.go.seoul.app:/callback`."""
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment:
        raise ClientError(f"redirect URI {uri!r} must be absolute and have no #fragment")
    if parts.scheme in ("javascript", "data", "file", "vbscript"):
        raise ClientError(f"redirect URI {uri!r} uses a forbidden scheme")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ClientError(f"redirect URI {uri!r} has no host")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise ClientError(f"redirect URI {uri!r} must use https (http only on loopback)")
    return uri


# A loopback IP literal with an optional port, and nothing else, as a redirect URI's host.
_LOOPBACK_NETLOC = re.compile(r"(127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")


def redirect_uri_matches(uri: str, registered: Sequence[str]) -> bool:
    """Exact string match (RFC 9700 4.1.3), except that a loopback IP redirect URI may
    name any port (RFC 8252 7.3: a native app listens on whatever port it is given), with
    the same scheme, address, path and query as a registered one."""
    if uri in registered:
        return True
    key = _loopback_key(uri)
    return key is not None and any(_loopback_key(other) == key for other in registered)


def _loopback_key(uri: str) -> tuple[str, str, str] | None:
    """The parts of an http://127.0.0.1 or http://[::1] URI that must match (the
    address, path and query), or None for any other URI."""
    parts = urlsplit(uri)
    match = _LOOPBACK_NETLOC.fullmatch(parts.netloc)
    if parts.scheme != "http" or match is None or parts.fragment:
        return None
    return match.group(1), parts.path, parts.query


async def create(
    pool: asyncpg.Pool,
    *,
    name: str,
    scope_names: str | list[str],
    redirect_uris: Sequence[str] = (),
    public: bool = False,
    jwks: dict[str, Any] | None = None,
    client_id: str | None = None,
) -> NewClient:
    """Register a client; its secret (if any) is returned here once and stored hashed."""
    try:
        allowed = scopes.parse(scope_names)
    except scopes.UnknownScope as exc:
        raise ClientError(str(exc)) from None
    if not allowed:
        raise ClientError("a client needs at least one scope")
    uris = [check_redirect_uri(uri) for uri in redirect_uris]
    if public and jwks:
        raise ClientError("a public client holds no keys: leave out --jwks")
    if public and not uris:
        raise ClientError("a public client signs citizens in: give at least one --redirect-uri")
    if jwks is not None:
        try:
            KeySet.import_key_set(cast("KeySetSerialization", jwks))
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ClientError(f"--jwks is not a valid public JWK set: {exc}") from None
    auth_method = "none" if public else ("private_key_jwt" if jwks else "client_secret")
    grant_types = (["authorization_code", "refresh_token"] if uris else []) + (
        [] if public else ["client_credentials"]
    )
    secret = None if auth_method != "client_secret" else secrets.token_urlsafe(32)
    new = NewClient(
        client_id=client_id or f"ieum_{secrets.token_hex(8)}",
        client_secret=secret,
        name=name,
        auth_method=auth_method,
        scopes=allowed,
        redirect_uris=uris,
        grant_types=grant_types,
    )
    await store.insert_client(
        pool,
        client_id=new.client_id,
        name=name,
        auth_method=auth_method,
        secret_hash=store.digest(secret) if secret else None,
        jwks=jwks,
        redirect_uris=uris,
        scopes=allowed,
        grant_types=grant_types,
    )
    return new


async def rotate_secret(pool: asyncpg.Pool, client_id: str) -> str:
    """A new secret for a client_secret client; the old one stops working at once."""
    secret = secrets.token_urlsafe(32)
    if not await store.set_client_secret(pool, client_id, store.digest(secret)):
        raise ClientError(f"no client {client_id!r} that authenticates with a secret")
    return secret
