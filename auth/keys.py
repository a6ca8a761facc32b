"""Token signing keys: creation, rotation, which key signs now and which are published.

A new key is published in the JWKS as soon as it is created but signs only from
`signs_from`, so resource servers that cache the JWKS learn it before they meet a token
signed with it. A key that stopped signing stays published until every token it signed
has expired. Exactly one key, the newest whose `signs_from` has passed, signs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from joserfc.jwk import ECKey

from auth import store

ALG = "ES256"
# Tolerated clock difference between the hub and resource servers.
LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_jwk: dict[str, Any]
    public_jwk: dict[str, Any]
    signs_from: datetime

    def private_key(self) -> ECKey:
        return ECKey.import_key(self.private_jwk)


class KeyRing:
    """The keys in the database, read at one moment."""

    def __init__(self, keys: list[SigningKey], token_lifetime: timedelta) -> None:
        self.keys = sorted(keys, key=lambda k: k.signs_from)
        self.token_lifetime = token_lifetime

    def current(self, now: datetime | None = None) -> SigningKey:
        now = now or datetime.now(UTC)
        signing = [key for key in self.keys if key.signs_from <= now]
        if not signing:
            raise LookupError("no signing key is active; run `ieum keys rotate`")
        return signing[-1]

    def published(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Public JWKs: upcoming keys, the current one, and retired ones still in use."""
        now = now or datetime.now(UTC)
        nexts = [key.signs_from for key in self.keys[1:]] + [None]
        return [
            key.public_jwk
            for key, next_from in zip(self.keys, nexts, strict=True)
            if next_from is None or next_from + self.token_lifetime + LEEWAY > now
        ]


async def load(pool: asyncpg.Pool, token_lifetime: timedelta) -> KeyRing:
    rows = await store.signing_keys(pool)
    return KeyRing(
        [
            SigningKey(row["kid"], row["private_jwk"], row["public_jwk"], row["signs_from"])
            for row in rows
        ],
        token_lifetime,
    )


async def add(pool: asyncpg.Pool, signs_in: timedelta) -> SigningKey:
    """A new key, published now, signing after `signs_in`."""
    kid = f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
    key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"})
    new = SigningKey(
        kid=kid,
        private_jwk=key.as_dict(private=True),
        public_jwk=key.as_dict(private=False),
        signs_from=datetime.now(UTC) + signs_in,
    )
    await store.insert_signing_key(
        pool,
        kid=new.kid,
        alg=ALG,
        private_jwk=new.private_jwk,
        public_jwk=new.public_jwk,
        signs_from=new.signs_from,
    )
    return new


async def ensure_one(pool: asyncpg.Pool) -> None:
    """On a new database, the first key signs at once: no token exists that it could break."""
    if not await store.signing_keys(pool):
        await add(pool, signs_in=timedelta(0))
