"""The one check every scanned tag goes through, QR or NFC, cheap enough for thousands a
second: keys are opened once and kept in memory, re-read every few seconds.

A revoked QR label or key is refused by every process within `refresh_seconds` (at once
by the process that revoked it, after `forget`). An NFC tap is decided in one SQL
statement that also checks revocation and moves the tag's read counter forward, so a
copied or replayed tap is refused even when two arrive at the same instant; a scan runs
that statement (`store.ACCEPT_READ`) inside its own, so `check` leaves it out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Final, Literal

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub.core.errors import IeumError
from resolvers.waste.errors import (
    NfcBadCmac,
    NfcCounterReplayed,
    TagForged,
    TagKeyRevoked,
    TagRevoked,
)
from resolvers.waste.tags import keys, qr, store, sun

REFRESH_SECONDS: Final = 5.0
# A tag made by a key this process has not seen yet reloads the keys, at most this often.
MISS_RELOAD_SECONDS: Final = 1.0


@dataclass(frozen=True)
class QrTag:
    text: str


@dataclass(frozen=True)
class NfcTap:
    """The two values a tag mirrors into its URL, in hex."""

    picc_data: str
    cmac: str

    @classmethod
    def from_url(cls, url: str) -> NfcTap:
        return cls(*sun.from_url(url))


TagInput = QrTag | NfcTap


@dataclass(frozen=True)
class VerifiedTag:
    tag_id: uuid.UUID
    bin_id: uuid.UUID
    district_code: str
    kind: Literal["qr", "nfc"]
    counter: int | None  # the NFC read counter accepted


@dataclass(frozen=True)
class NfcRead:
    """A tap whose CMAC verified: the read of tag `uid` (made from key `key_id`) that
    still has to be accepted, its counter moved forward (`store.ACCEPT_READ`)."""

    uid: str
    key_id: int
    counter: int


@dataclass(frozen=True)
class _NfcKey:
    key_id: int
    master: bytes
    meta_key: bytes
    revoked: bool


@dataclass(frozen=True)
class _Ring:
    loaded_at: float
    qr_keys: dict[int, qr.VerifyingKey]
    nfc_keys: list[_NfcKey]  # newest first
    revoked_tags: frozenset[uuid.UUID]


class Verifier:
    """Verifies tags for one process; make one per process and keep it."""

    def __init__(
        self, pool: asyncpg.Pool, secret: bytes, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self.pool = pool
        self.secret = secret
        self.refresh_seconds = refresh_seconds
        self._ring: _Ring | None = None
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """Re-read keys and revocations before the next check (this process revoked one)."""
        self._ring = None

    async def verify(self, tag: TagInput) -> VerifiedTag:
        checked = await self.check(tag)
        if isinstance(checked, VerifiedTag):
            return checked
        row = await store.advance_counter(self.pool, checked.uid, checked.key_id, checked.counter)
        if row is None:
            raise await self.refusal(checked)
        return VerifiedTag(
            row["tag_id"], row["bin_id"], row["district_code"], "nfc", checked.counter
        )

    async def check(self, tag: TagInput) -> VerifiedTag | NfcRead:
        """Everything `verify` checks but an NFC read's counter, which the caller accepts."""
        if isinstance(tag, QrTag):
            return await self._qr(tag.text)
        return await self._nfc(tag)

    async def _qr(self, text: str) -> VerifiedTag:
        ring = await self._current()
        if qr.named_key(text) not in ring.qr_keys and await self._reload_on_miss(ring):
            ring = await self._current()
        claims = qr.verify(text, ring.qr_keys)
        if claims.tag_id in ring.revoked_tags:
            raise TagRevoked("this label was revoked (lost or replaced): use the bin's new one")
        return VerifiedTag(claims.tag_id, claims.bin_id, claims.district_code, "qr", None)

    async def _nfc(self, tap: NfcTap) -> NfcRead:
        try:
            picc_data, mac = bytes.fromhex(tap.picc_data), bytes.fromhex(tap.cmac)
        except ValueError:
            raise TagForged("picc_data and cmac are hex strings") from None
        if len(picc_data) != 16 or len(mac) != 8:
            raise TagForged("an NTAG 424 DNA tap has 16 bytes of picc_data and an 8-byte cmac")
        ring = await self._current()
        found = _match(ring, picc_data, mac)
        if found is None and await self._reload_on_miss(ring):
            found = _match(await self._current(), picc_data, mac)
        if found is None:
            raise NfcBadCmac("the tap's CMAC does not verify: it was not made by a city tag")
        key, picc = found
        if key.revoked:
            raise TagKeyRevoked("the tag's keys were revoked by the city; the bin needs a new tag")
        return NfcRead(picc.uid.hex().upper(), key.key_id, picc.counter)

    async def refusal(self, read: NfcRead) -> IeumError:
        """Why `read` was not accepted."""
        tag = await store.nfc_tag(self.pool, read.uid, read.key_id)
        if tag is None:
            return TagForged(f"tag {read.uid} is not one the city issued")
        if tag["key_revoked_at"] is not None:
            return TagKeyRevoked("the tag's keys were revoked by the city; the bin needs a new tag")
        if tag["revoked_at"] is not None:
            return TagRevoked("this tag was revoked (lost or replaced): use the bin's new one")
        return NfcCounterReplayed(
            f"read counter {read.counter} is not above {tag['last_counter']}, the last one seen: "
            "a copied or replayed tap"
        )

    async def _current(self) -> _Ring:
        ring = self._ring
        if ring is not None and time.monotonic() - ring.loaded_at < self.refresh_seconds:
            return ring
        async with self._lock:
            ring = self._ring
            if ring is None or time.monotonic() - ring.loaded_at >= self.refresh_seconds:
                ring = self._ring = await self._load()
            return ring

    async def _reload_on_miss(self, ring: _Ring) -> bool:
        """Forget `ring` if it is old enough that a key made since may be missing from it."""
        if time.monotonic() - ring.loaded_at < MISS_RELOAD_SECONDS:
            return False
        if self._ring is ring:
            self._ring = None
        return True

    async def _load(self) -> _Ring:
        qr_keys, nfc_keys = {}, []
        for key in sorted(await keys.all_keys(self.pool), key=lambda k: -k.key_id):
            revoked = key.revoked_at is not None
            if key.public_key is not None:
                public = Ed25519PublicKey.from_public_bytes(key.public_key)
                qr_keys[key.key_id] = qr.VerifyingKey(public, revoked)
            else:
                master = key.open(self.secret)
                nfc_keys.append(_NfcKey(key.key_id, master, sun.meta_read_key(master), revoked))
        return _Ring(
            loaded_at=time.monotonic(),
            qr_keys=qr_keys,
            nfc_keys=nfc_keys,
            revoked_tags=frozenset(await store.revoked_qr_tags(self.pool)),
        )


def _match(ring: _Ring, picc_data: bytes, mac: bytes) -> tuple[_NfcKey, sun.PiccData] | None:
    """The master key whose tag made this tap, and what the tap says."""
    for key in ring.nfc_keys:
        picc = sun.decrypt_picc(key.meta_key, picc_data)
        if picc is not None:
            file_key = sun.tag_key(key.master, picc.uid, sun.FILE_READ_KEY)
            if sun.mac_matches(file_key, picc, mac):
                return key, picc
    return None
