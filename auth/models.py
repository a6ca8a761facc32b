"""What authlib asks of clients, codes and tokens, over rows of our tables."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin

from auth import store
from auth.clients import redirect_uri_matches

SECRET_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class Citizen:
    user_id: uuid.UUID
    username: str
    display_name: str

    def get_user_id(self) -> str:
        return str(self.user_id)


class Client(ClientMixin):
    def __init__(self, row: asyncpg.Record) -> None:
        self.client_id: str = row["client_id"]
        self.name: str = row["name"]
        self.auth_method: str = row["auth_method"]
        self.secret_hash: str | None = row["secret_hash"]
        self.jwks: dict[str, Any] | None = row["jwks"]
        self.redirect_uris: list[str] = list(row["redirect_uris"])
        self.scopes: list[str] = list(row["scopes"])
        self.grant_types: list[str] = list(row["grant_types"])
        self.disabled = row["disabled_at"] is not None

    @property
    def public(self) -> bool:
        return self.auth_method == "none"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Only unambiguous: with several registered, the request must name one.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope if the client may hold all of it; None (invalid_scope) if not.

        No silent narrowing: asking for more than allowed is an error, never a smaller grant.
        An omitted scope means every scope the client may hold.
        """
        if not scope:
            return " ".join(self.scopes)
        requested = scope.split()
        if not set(requested) <= set(self.scopes):
            return None
        return " ".join(sorted(set(requested)))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_matches(redirect_uri, self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(store.digest(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.disabled:
            return False
        if self.auth_method == "client_secret":
            return method in SECRET_METHODS
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class AuthorizationCode(AuthorizationCodeMixin):
    def __init__(self, row: asyncpg.Record) -> None:
        self.grant_id: uuid.UUID = row["grant_id"]
        self.user_id: uuid.UUID = row["user_id"]
        self.redirect_uri: str = row["redirect_uri"]
        self.scope: str = row["scope"]
        self.code_challenge: str = row["code_challenge"]
        self.code_challenge_method = "S256"

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri or None

    def get_scope(self) -> str:
        return self.scope


class StoredToken(TokenMixin):
    """An access or refresh token as the database knows it."""

    def __init__(self, row: asyncpg.Record) -> None:
        self.kind: str = row.get("kind", "refresh_token")
        self.jti: str | None = row.get("jti")
        self.grant_id: uuid.UUID = row["grant_id"]
        self.client_id: str = row["client_id"]
        self.user_id: uuid.UUID | None = row["user_id"]
        self.scope: str = row["scope"]
        self.issued_at = row["issued_at"]
        self.expires_at = row["expires_at"]
        self.revoked = row["revoked_at"] is not None or (row.get("grant_revoked_at") is not None)

    def check_client(self, client: ClientMixin) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.expires_at - self.issued_at).total_seconds())

    def is_expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)

    def is_revoked(self) -> bool:
        return self.revoked
