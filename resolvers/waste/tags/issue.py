"""Issuing tags for bins: a signed QR label for each, and an NFC tag for those whose tag
UID is given. A bin has one live tag of each kind: a new one revokes the one before."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.core.errors import BadUserInput
from resolvers.waste.errors import BinNotFound
from resolvers.waste.tags import keys, qr, store, sun

_UID = re.compile(r"^[0-9A-F]{14}$")


@dataclass(frozen=True)
class Label:
    tag_id: uuid.UUID
    bin_id: uuid.UUID
    site_id: uuid.UUID
    district_code: str
    text: str  # what the QR code holds


@dataclass(frozen=True)
class NfcTag:
    tag_id: uuid.UUID
    bin_id: uuid.UUID
    uid: str
    keys: list[bytes]  # keys 0–4 to write to the tag


@dataclass(frozen=True)
class Issued:
    labels: list[Label]
    nfc: list[NfcTag]
    qr_key_id: int
    nfc_key_id: int | None


async def bins(
    pool: asyncpg.Pool, bin_ids: Sequence[uuid.UUID] = (), site_id: uuid.UUID | None = None
) -> list[asyncpg.Record]:
    """The bins to tag: those named, or every bin of the site; BinNotFound for any other."""
    wanted = list(bin_ids) if site_id is None else await store.site_bins(pool, site_id)
    if not wanted:
        raise BinNotFound("no bins to tag: name bins, or a site that has some")
    found = await store.bins(pool, wanted)
    missing = set(wanted) - {row["bin_id"] for row in found}
    if missing:
        raise BinNotFound(f"no such bin in service: {', '.join(sorted(map(str, missing)))}")
    return found


def uid(text: str) -> str:
    """A 7-byte NFC UID in upper-case hex, as the tag reports it."""
    normal = text.replace(":", "").strip().upper()
    if not _UID.match(normal):
        raise BadUserInput(f"an NTAG 424 DNA UID is 7 bytes in hex (14 digits), not {text!r}")
    return normal


async def issue(
    pool: asyncpg.Pool,
    secret: bytes,
    bins: Sequence[asyncpg.Record],
    uids: Mapping[uuid.UUID, str] | None = None,
) -> Issued:
    """Labels for `bins`, and NFC tags for the bins in `uids`, stored in one transaction."""
    uids = uids or {}
    if set(uids) - {row["bin_id"] for row in bins}:
        raise BadUserInput("NFC UIDs are given for bins that are not being tagged")
    qr_key = await keys.current(pool, secret, keys.QR)
    signing = Ed25519PrivateKey.from_private_bytes(qr_key.open(secret))
    today = datetime.now(UTC).date()
    labels = []
    for row in bins:
        claims = qr.Claims(uuid.uuid4(), row["bin_id"], row["district_code"], qr_key.key_id, today)
        text = qr.sign(claims, signing)
        labels.append(
            Label(claims.tag_id, row["bin_id"], row["site_id"], row["district_code"], text)
        )
    nfc, nfc_key_id = [], None
    if uids:
        nfc_key = await keys.current(pool, secret, keys.NFC)
        master, nfc_key_id = nfc_key.open(secret), nfc_key.key_id
        for bin_id, tag_uid in uids.items():
            normal = uid(tag_uid)
            nfc.append(
                NfcTag(uuid.uuid4(), bin_id, normal, sun.tag_keys(master, bytes.fromhex(normal)))
            )
    await store.insert_tags(
        pool,
        [(label.tag_id, label.bin_id, "qr", qr_key.key_id, None) for label in labels]
        + [(tag.tag_id, tag.bin_id, "nfc", nfc_key_id, tag.uid) for tag in nfc],
    )
    return Issued(labels, nfc, qr_key.key_id, nfc_key_id)
