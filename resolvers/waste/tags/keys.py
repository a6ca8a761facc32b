"""Tag keys: made, sealed at rest, rotated, revoked, and the public ones published.

Two algorithms: Ed25519 keys sign QR labels, AES-128 master keys give NFC tags their keys
(`sun.tag_keys`). Of each, the newest key makes new tags; rotating retires it, and a
retired key still verifies what it made, because labels on bins stay for years. Revoking
a key (it leaked) makes every tag it made refused.

Private keys are sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
IEUM_WASTE_TAG_SECRET, with the algorithm and public key as associated data, so a copy of
the database alone gives no key, and a sealed key moved to another row does not open.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hub.core.settings import Settings
from resolvers.waste.settings import WasteSettings
from resolvers.waste.tags import qr, store

Algorithm = Literal["Ed25519", "AES128-AN10922"]
QR: Final[Algorithm] = "Ed25519"
NFC: Final[Algorithm] = "AES128-AN10922"
SECRET_FILE: Final = "waste-tag-secret"  # noqa: S105 (a file name)
_NONCE_BYTES: Final = 12


class SecretMismatch(RuntimeError):
    """A sealed key does not open with this process's secret."""


@dataclass(frozen=True)
class TagKey:
    key_id: int
    algorithm: Algorithm
    public_key: bytes | None
    sealed: bytes
    created_at: datetime
    retired_at: datetime | None
    revoked_at: datetime | None

    def open(self, secret: bytes) -> bytes:
        """The private key (Ed25519 raw, or the AES master key)."""
        try:
            return AESGCM(secret).decrypt(
                self.sealed[:_NONCE_BYTES], self.sealed[_NONCE_BYTES:], self._aad()
            )
        except InvalidTag:
            raise SecretMismatch(
                f"tag key {self.key_id} was sealed under another IEUM_WASTE_TAG_SECRET: "
                "set the same secret on every hub process"
            ) from None

    def _aad(self) -> bytes:
        return self.algorithm.encode() + (self.public_key or b"")


def secret(settings: Settings) -> bytes:
    """The key that seals tag keys, from IEUM_WASTE_TAG_SECRET or the data folder."""
    configured = settings.section(WasteSettings).tag_secret
    if configured is not None:
        return derive_secret(configured.get_secret_value())
    return derive_secret(_kept_secret(settings.data_dir / SECRET_FILE))


def _kept_secret(path: Path) -> str:
    """The secret kept at `path`, made on first use. It is written whole to a file of its
    own (mode 600) and then linked to `path`, which fails if `path` exists: a reader never
    sees the file half written, and of processes starting together the first to link wins
    and every other reads its secret (os.replace would let a later one overwrite it)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(32))
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(temporary, path)
        finally:
            Path(temporary).unlink()
    text = path.read_text().strip()
    if not text:
        raise SecretMismatch(f"{path} is empty: delete it, or set IEUM_WASTE_TAG_SECRET")
    return text


def derive_secret(text: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"ieum.waste.tag-keys").derive(text.encode())


def _seal(secret: bytes, algorithm: Algorithm, public_key: bytes | None, private: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    aad = algorithm.encode() + (public_key or b"")
    return nonce + AESGCM(secret).encrypt(nonce, private, aad)


def _row(row: asyncpg.Record) -> TagKey:
    return TagKey(
        row["key_id"],
        row["algorithm"],
        row["public_key"],
        row["private_key"],
        row["created_at"],
        row["retired_at"],
        row["revoked_at"],
    )


async def all_keys(pool: asyncpg.Pool) -> list[TagKey]:
    return [_row(row) for row in await store.keys(pool)]


async def rotate(pool: asyncpg.Pool, secret: bytes, algorithm: Algorithm) -> TagKey:
    """A new key of `algorithm` makes new tags from now on; the previous one is retired."""
    row = await _add(pool, secret, algorithm, retire=True)
    assert row is not None
    return _row(row)


async def current(pool: asyncpg.Pool, secret: bytes, algorithm: Algorithm) -> TagKey:
    """The key that makes new tags of `algorithm`, made now if there is none yet."""
    row = await store.current_key(pool, algorithm)
    if row is None:  # the first tag of its kind; a concurrent first one may win
        row = await _add(pool, secret, algorithm, retire=False)
        row = row or await store.current_key(pool, algorithm)
    return _row(row)


async def revoke(pool: asyncpg.Pool, key_id: int) -> TagKey | None:
    row = await store.revoke_key(pool, key_id)
    return None if row is None else _row(row)


async def public_keys(pool: asyncpg.Pool) -> dict[str, Any]:
    """The QR verifying keys as a JWK set for phones: `keys` verify labels; labels signed
    with a key in `revoked_keys` are refused (a reader that ignores that member refuses
    them too, as made by an unknown key)."""
    found = [key for key in await all_keys(pool) if key.algorithm == QR]
    return {
        "keys": [_jwk(key) for key in found if key.revoked_at is None],
        "revoked_keys": [_jwk(key) for key in found if key.revoked_at is not None],
    }


def _jwk(key: TagKey) -> dict[str, Any]:
    assert key.public_key is not None
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": qr.b64(key.public_key),
        "kid": str(key.key_id),
        "alg": "EdDSA",
        "use": "sig",
    }


async def _add(
    pool: asyncpg.Pool, secret: bytes, algorithm: Algorithm, *, retire: bool
) -> asyncpg.Record | None:
    if algorithm == QR:
        signing = Ed25519PrivateKey.generate()
        private = signing.private_bytes_raw()
        public: bytes | None = signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:
        private, public = secrets.token_bytes(16), None
    sealed = _seal(secret, algorithm, public, private)
    return await store.add_key(pool, algorithm, public, sealed, retire=retire)
