"""QR labels: a small signed payload a collector's phone can check with no network.

The text in the QR code is `IEUM1.<payload>.<signature>`, both parts base64url without
padding. The payload is 41 bytes, big-endian:

    0      version (1)
    1–16   tag id (UUID)
    17–32  bin id (UUID)
    33–36  district code (the 5-digit 시군구 code as a number)
    37–38  key id
    39–40  issue day (days since 1970-01-01)

The signature is Ed25519 over the ASCII text before the second dot (`IEUM1.<payload>`),
by the key `key id` names. Anyone holding the public keys can verify a label; only the
hub can make one.
"""

from __future__ import annotations

import base64
import binascii
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from resolvers.waste.errors import TagForged, TagKeyRevoked

PREFIX: Final = "IEUM1"
VERSION: Final = 1
_LAYOUT: Final = struct.Struct(">B16s16sIHH")
_EPOCH: Final = date(1970, 1, 1)
_SIGNATURE_BYTES: Final = 64


@dataclass(frozen=True)
class Claims:
    """What a label says, once its signature is checked."""

    tag_id: uuid.UUID
    bin_id: uuid.UUID
    district_code: str
    key_id: int
    issued_on: date


@dataclass(frozen=True)
class VerifyingKey:
    public: Ed25519PublicKey
    revoked: bool


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: Claims, key: Ed25519PrivateKey) -> str:
    payload = _LAYOUT.pack(
        VERSION,
        claims.tag_id.bytes,
        claims.bin_id.bytes,
        int(claims.district_code),
        claims.key_id,
        (claims.issued_on - _EPOCH).days,
    )
    signed = f"{PREFIX}.{b64(payload)}"
    return f"{signed}.{b64(key.sign(signed.encode()))}"


def verify(text: str, keys: Mapping[int, VerifyingKey]) -> Claims:
    """The label's claims; TagForged unless a key in `keys` signed exactly this text,
    TagKeyRevoked when the key that did is revoked."""
    claims, signed, signature = _parse(text)
    key = keys.get(claims.key_id)
    if key is None:
        raise TagForged(f"the tag names key {claims.key_id}, which the hub never made")
    try:
        key.public.verify(signature, signed)
    except InvalidSignature:
        raise TagForged("the tag's signature does not verify: it was altered or forged") from None
    if key.revoked:
        raise TagKeyRevoked(
            f"the tag was signed with key {claims.key_id}, which the city revoked; "
            "the bin needs a new label"
        )
    return claims


def named_key(text: str) -> int:
    """The key id a label names, before any check of its signature."""
    return _parse(text)[0].key_id


def verify_offline(text: str, key_set: Mapping[str, Any]) -> Claims:
    """What the collector's phone does: check a label against the published key set
    (`keys.public_keys`), with no call to the hub. Revoked labels are only known there."""
    return verify(text, keys_from_set(key_set))


def keys_from_set(key_set: Mapping[str, Any]) -> dict[int, VerifyingKey]:
    def read(jwks: Sequence[Mapping[str, Any]], revoked: bool) -> dict[int, VerifyingKey]:
        return {
            int(jwk["kid"]): VerifyingKey(
                Ed25519PublicKey.from_public_bytes(unb64(jwk["x"])), revoked
            )
            for jwk in jwks
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
        }

    return read(key_set.get("keys", []), False) | read(key_set.get("revoked_keys", []), True)


def _parse(text: str) -> tuple[Claims, bytes, bytes]:
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TagForged(f"not an Ieum bin label (expected {PREFIX}.<payload>.<signature>)")
    try:
        payload, signature = unb64(parts[1]), unb64(parts[2])
    except (binascii.Error, ValueError):
        raise TagForged("the tag is not valid base64url") from None
    if b64(payload) != parts[1] or b64(signature) != parts[2]:  # one text per label
        raise TagForged("the tag is not canonical base64url")
    if len(payload) != _LAYOUT.size or len(signature) != _SIGNATURE_BYTES:
        raise TagForged("the tag's payload or signature has the wrong length")
    version, tag_id, bin_id, district, key_id, day = _LAYOUT.unpack(payload)
    if version != VERSION or district > 99999:
        raise TagForged("the tag's payload is not one the hub writes")
    claims = Claims(
        uuid.UUID(bytes=tag_id),
        uuid.UUID(bytes=bin_id),
        f"{district:05d}",
        key_id,
        _EPOCH + timedelta(days=day),
    )
    return claims, f"{parts[0]}.{parts[1]}".encode(), signature
