"""Access-token checks on the GraphQL path: signature, claims and revocation, no I/O.

Keys and revocations are read from PostgreSQL by a background task every
`REFRESH_SECONDS`, so a revoked token stops working within that time (the issue asks for
5 s) while each request pays only a signature check. When they cannot be read for
`MAX_STALE_SECONDS` (the database is down), tokens are refused with "unavailable" rather
than accepted unchecked: a revocation made meanwhile must not be ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import asyncpg
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from auth import keys, store
from hub.core.caller import Caller

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
MAX_STALE_SECONDS = 30.0
CLOCK_LEEWAY_SECONDS = 30
# Valid tokens remembered (signature, then claims): an app sends the same token many
# times, and a process's subscriptions recheck theirs every second. Above the tokens a
# process holds subscriptions for (10,000 measured), or each tick re-verified signatures
# in least-recently-used order; only tokens that verified take room (a few kB each).
VERIFIED_TOKENS = 50_000


def is_access_token_type(typ: object) -> bool:
    """The JWT `typ` of an access token: `at+jwt` as we issue it, or the full media type
    `application/at+jwt`, which RFC 9068 4 says a resource server must accept too (media
    types compare case-insensitively, RFC 7515 4.1.9)."""
    return isinstance(typ, str) and typ.lower().removeprefix("application/") == "at+jwt"


class InvalidToken(Exception):
    """The bearer token cannot be used; the message goes into WWW-Authenticate."""


class TokenChecksUnavailable(Exception):
    """Revocations could not be read lately, so no token can be checked: try again later."""


class AccessTokenVerifier:
    def __init__(
        self, pool: asyncpg.Pool, *, issuer: str, audience: str, token_lifetime: timedelta
    ) -> None:
        self.pool = pool
        self.issuer = issuer
        self.audience = audience
        self.token_lifetime = token_lifetime
        self.key_set = KeySet([])
        self.published: list[dict[str, object]] = []
        self.revoked: frozenset[str] = frozenset()
        # token → claims of a token whose signature and type checked out against the
        # current key set. An ES256 check costs more than the rest of a small query;
        # claims (expiry) and revocation are still checked on every use.
        self.verified: OrderedDict[str, dict[str, object]] = OrderedDict()
        # token → (caller, exp, jti) of a token whose claims checked out too: they stay
        # valid until exp (nothing else in them depends on the time), so a token seen
        # again costs an expiry and a revocation lookup, not the claims registry (about
        # 30 µs; a hub's 10,000 subscriptions recheck their tokens every second).
        self.callers: OrderedDict[str, tuple[Caller, int, str]] = OrderedDict()
        self.refreshed_at: float | None = None  # monotonic time of the last refresh
        # Moves on whenever a token that checked out may check out no longer (revocations
        # or keys changed): a caller holding many checked tokens rechecks them only then.
        self.version = 0

    def stale_for(self) -> float | None:
        """Seconds since keys and revocations were last read, once that is too long."""
        if self.refreshed_at is None:
            return None
        age = time.monotonic() - self.refreshed_at
        return age if age > MAX_STALE_SECONDS else None

    async def refresh(self) -> None:
        ring = await keys.load(self.pool, self.token_lifetime)
        published = ring.published()
        if published != self.published:  # a key retired: its tokens must be checked again
            self.key_set = KeySet.import_key_set({"keys": published})
            self.published = published
            self.verified.clear()
            self.callers.clear()
            self.version += 1
        revoked = frozenset(row["jti"] for row in await store.revoked_access_tokens(self.pool))
        if revoked != self.revoked:
            self.revoked = revoked
            self.version += 1
        self.refreshed_at = time.monotonic()

    def standing(self) -> tuple[int, bool]:
        """What a token's check depends on besides the token and the clock: the version,
        and whether checks are unavailable (`stale_for`)."""
        return self.version, self.stale_for() is not None

    async def run(self) -> None:
        """Keep keys and revocations current until cancelled."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("auth.tokens.refresh_failed error=%r", exc)

    def verify(self, token: str) -> Caller:
        if (age := self.stale_for()) is not None:
            raise TokenChecksUnavailable(
                f"token revocations could not be read for {age:.0f} s; try again shortly"
            )
        known = self.callers.get(token)
        if known is not None:
            caller, exp, jti = known
            if exp > time.time() - CLOCK_LEEWAY_SECONDS and jti not in self.revoked:
                self.callers.move_to_end(token)
                return caller
            # expired or revoked: the full check below says which
        claims = self._signed_claims(token)
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
            registry.validate(claims)
        except JoseError as exc:
            claim = exc.error if isinstance(exc.error, str) else "claims"
            raise InvalidToken(f"the token is expired or not for this API ({claim})") from None
        if claims["jti"] in self.revoked:
            raise InvalidToken("the token was revoked")
        client_id = str(claims["client_id"])
        subject = str(claims["sub"])
        exp = int(str(claims["exp"]))
        caller = Caller(
            client_id=client_id,
            user_id=subject if subject != client_id else None,
            scopes=frozenset(str(claims.get("scope", "")).split()),
            expires_at=datetime.fromtimestamp(exp, UTC),
        )
        self.callers[token] = (caller, exp, str(claims["jti"]))
        if len(self.callers) > VERIFIED_TOKENS:
            self.callers.popitem(last=False)
        return caller

    def _signed_claims(self, token: str) -> dict[str, object]:
        """The claims of a token signed by a published key as an access token."""
        claims = self.verified.get(token)
        if claims is not None:
            self.verified.move_to_end(token)
            return claims
        try:
            decoded = jwt.decode(token, self.key_set, algorithms=[keys.ALG])
        except Exception:
            # A fixed text: what a forged header contains must not reach our headers.
            raise InvalidToken("the token is malformed or its signature is invalid") from None
        if not is_access_token_type(decoded.header.get("typ")):
            raise InvalidToken("not an access token (typ must be at+jwt)")
        self.verified[token] = decoded.claims
        if len(self.verified) > VERIFIED_TOKENS:
            self.verified.popitem(last=False)
        return decoded.claims
