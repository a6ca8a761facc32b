"""Access-token checks on the GraphQL path: signature, claims and revocation, no I/O.

Keys and revocations are read from PostgreSQL by a background task every
`REFRESH_SECONDS`, so a revoked token stops working within that time (the issue asks for
5 s) while each request pays only a signature check.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from auth import keys, store
from auth.caller import Caller

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
CLOCK_LEEWAY_SECONDS = 30


class InvalidToken(Exception):
    """The bearer token cannot be used; the message goes into WWW-Authenticate."""


class AccessTokenVerifier:
    def __init__(
        self, pool: asyncpg.Pool, *, issuer: str, audience: str, token_lifetime: timedelta
    ) -> None:
        self.pool = pool
        self.issuer = issuer
        self.audience = audience
        self.token_lifetime = token_lifetime
        self.key_set = KeySet([])
        self.revoked: frozenset[str] = frozenset()

    async def refresh(self) -> None:
        ring = await keys.load(self.pool, self.token_lifetime)
        self.key_set = KeySet.import_key_set({"keys": ring.published()})
        self.revoked = frozenset(row["jti"] for row in await store.revoked_access_tokens(self.pool))

    async def run(self) -> None:
        """Keep keys and revocations current until cancelled."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("auth.tokens.refresh_failed error=%r", exc)

    def verify(self, token: str) -> Caller:
        try:
            decoded = jwt.decode(token, self.key_set, algorithms=[keys.ALG])
        except Exception:
            # A fixed text: what a forged header contains must not reach our headers.
            raise InvalidToken("the token is malformed or its signature is invalid") from None
        if decoded.header.get("typ") != "at+jwt":
            raise InvalidToken("not an access token (typ must be at+jwt)")
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY_SECONDS,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            claim = exc.error if isinstance(exc.error, str) else "claims"
            raise InvalidToken(f"the token is expired or not for this API ({claim})") from None
        claims = decoded.claims
        if claims["jti"] in self.revoked:
            raise InvalidToken("the token was revoked")
        client_id = str(claims["client_id"])
        subject = str(claims["sub"])
        return Caller(
            client_id=client_id,
            user_id=subject if subject != client_id else None,
            scopes=frozenset(str(claims.get("scope", "")).split()),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
