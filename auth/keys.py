"""Token signing keys: creation, rotation, which key signs now and which are published.

A new key is published in the JWKS as soon as it is created but signs only from
`signs_from`, so resource servers that cache the JWKS learn it before they meet a token
signed with it. A key that stopped signing stays published until every token it signed
has expired. Exactly one key, the newest whose `signs_from` has passed, signs.

Private keys are stored sealed under the KEK (auth/kek.py) and opened only to sign. Keys
stored before that, as plain JWKs, still work; `ieum keys encrypt` or the next rotation
seals them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from joserfc.jwk import ECKey

from auth import kek, key_store, store

ALG = "ES256"
# Tolerated clock difference between the hub and resource servers.
LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    stored_private: dict[str, Any]  # sealed (auth/kek.py), or a plain JWK stored before
    public_jwk: dict[str, Any]
    signs_from: datetime

    @property
    def sealed(self) -> bool:
        return kek.is_sealed(self.stored_private)

    def private_key(self) -> ECKey:
        """The key to sign with, opened with this process's KEK."""
        if not self.sealed:
            return ECKey.import_key(self.stored_private)
        private_jwk = json.loads(kek.current().open(self.stored_private, _context(self.kid)))
        return ECKey.import_key(private_jwk)


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
    """A new key, published now, signing after `signs_in`; keys still stored plain are
    sealed on the way."""
    kid = f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"
    key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"})
    new = SigningKey(
        kid=kid,
        stored_private=_seal(kid, key.as_dict(private=True)),
        public_jwk=key.as_dict(private=False),
        signs_from=datetime.now(UTC) + signs_in,
    )
    await store.insert_signing_key(
        pool,
        kid=new.kid,
        alg=ALG,
        private_jwk=new.stored_private,
        public_jwk=new.public_jwk,
        signs_from=new.signs_from,
    )
    await seal_plain(pool)
    return new


async def seal_plain(pool: asyncpg.Pool) -> list[str]:
    """Seal every private key still stored as a plain JWK; the kids sealed."""
    sealed = []
    for row in await store.signing_keys(pool):
        if not kek.is_sealed(row["private_jwk"]):
            stored = _seal(row["kid"], row["private_jwk"])
            if await key_store.replace_plain_private(pool, row["kid"], stored):
                sealed.append(row["kid"])
    return sealed


def _seal(kid: str, private_jwk: dict[str, Any]) -> dict[str, Any]:
    return kek.current().seal(json.dumps(private_jwk).encode(), _context(kid))


def _context(kid: str) -> bytes:
    """The associated data that ties a sealed key to its row."""
    return f"ieum.signing-key:{kid}".encode()


async def ensure_one(pool: asyncpg.Pool) -> None:
    """On a new database, the first key signs at once: no token exists that it could break."""
    if not await store.signing_keys(pool):
        await add(pool, signs_in=timedelta(0))
