"""Bin tags: NXP's published SUN and diversification vectors, signed QR labels (offline and
at the hub, forged, revoked, rotated) and NFC taps (bad CMAC, replayed and copied
counters), their keys sealed at rest, and `ieum waste tags-issue` output read back."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import random
import re
import secrets as secrets_module
import stat
import struct
import threading
import uuid
import zlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
import segno
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.core import db
from hub.core.errors import BadUserInput
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.waste.errors import (
    BinNotFound,
    NfcBadCmac,
    NfcCounterReplayed,
    TagForged,
    TagKeyRevoked,
    TagRevoked,
)
from resolvers.waste.tags import issue, keys, qr, store, sun
from resolvers.waste.tags.verify import NfcTap, QrTag, Verifier
from schema.waste import tags_cli

SECRET_TEXT = "a test secret that is long enough for the hub"
SECRET = keys.derive_secret(SECRET_TEXT)
ZERO_KEY = bytes(16)


# NXP's published vectors (AN12196: NTAG 424 DNA features and hints; AN10922: key
# diversification). Nothing of ours is involved: these pin the primitives to NXP's tags.


def test_an12196_picc_data_decrypts_to_uid_and_read_counter() -> None:
    # AN12196, SUN message, AES: SDMMetaReadKey 00…00, e=EF963FF7828658A599F3041510671E88.
    picc = sun.decrypt_picc(ZERO_KEY, bytes.fromhex("EF963FF7828658A599F3041510671E88"))
    assert picc == sun.PiccData(bytes.fromhex("04DE5F1EACC040"), 0x3D)


def test_an12196_sdmmac_over_an_empty_mac_input() -> None:
    # Same example: SDMFileReadKey 00…00, c=94EED9EE65337086.
    mac = sun.sdm_mac(ZERO_KEY, bytes.fromhex("04DE5F1EACC040"), 61)
    assert mac == bytes.fromhex("94EED9EE65337086")
    picc = sun.PiccData(bytes.fromhex("04DE5F1EACC040"), 61)
    assert sun.mac_matches(ZERO_KEY, picc, mac)
    assert not sun.mac_matches(ZERO_KEY, sun.PiccData(picc.uid, 62), mac)


def test_an12196_sdmmac_over_mirrored_file_data() -> None:
    # AN12196's second example: encrypted file data mirrored, the MAC input being the
    # ASCII from it up to the MAC; KSesSDMFileReadMAC 3ED0920E5E6A0320D823D5987FEAFBB1.
    picc = sun.decrypt_picc(ZERO_KEY, bytes.fromhex("FD91EC264309878BE6345CBE53BADF40"))
    assert picc == sun.PiccData(bytes.fromhex("04958CAA5C5E80"), 8)
    session = sun.cmac(ZERO_KEY, sun.SV2_PREFIX + picc.uid + bytes([8, 0, 0]))
    assert session == bytes.fromhex("3ED0920E5E6A0320D823D5987FEAFBB1")
    mac = sun.sdm_mac(ZERO_KEY, picc.uid, 8, b"CEE9A53E3E463EF1F459635736738962&cmac=")
    assert mac == bytes.fromhex("ECC1E7F6C6C73BF6")


def test_an10922_aes128_diversification() -> None:
    # AN10922's AES-128 example: UID 04782E21801D80, AID 3042F5, system id "NXP Abu".
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    data = bytes.fromhex("04782E21801D803042F54E585020416275")
    assert sun.diversify(master, data) == bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")
    with pytest.raises(ValueError):
        sun.diversify(master, data[:10])  # CMAC would pad it differently from AN10922


def test_each_tag_has_its_own_keys_but_one_meta_read_key() -> None:
    master = bytes(range(16))
    first = sun.tag_keys(master, bytes.fromhex("04000000000001"))
    second = sun.tag_keys(master, bytes.fromhex("04000000000002"))
    assert len(set(first)) == 5
    assert first[sun.META_READ_KEY] == second[sun.META_READ_KEY] == sun.meta_read_key(master)
    assert all(first[k] != second[k] for k in (0, 2, 3, 4))
    uid = bytes.fromhex("04000000000001")
    picc_data, mac = sun.tap(first[1], first[2], uid, 7)
    picc = sun.decrypt_picc(sun.meta_read_key(master), bytes.fromhex(picc_data))
    assert picc == sun.PiccData(uid, 7)
    assert sun.mac_matches(first[2], picc, bytes.fromhex(mac))
    assert not sun.mac_matches(second[2], sun.PiccData(uid, 7), bytes.fromhex(mac))


# At the hub


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


@pytest.fixture
async def verifier(pool: asyncpg.Pool) -> Verifier:
    return Verifier(pool, SECRET)


async def new_site(pool: asyncpg.Pool, bins: int = 1, district: str = "11680") -> uuid.UUID:
    generator, site = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO waste_generators (generator_id, business_no, name, representative, phone,"
        " owner_client) VALUES ($1, $2, '한식당', '김대표', '010-0000-0000', 'test')",
        generator,
        f"{random.randrange(10**10):010d}",
    )
    await pool.execute(
        "INSERT INTO waste_sites (site_id, generator_id, name, address, lat, lng, district_code)"
        " VALUES ($1, $2, '본점', '서울 강남구 테헤란로 1', 37.5, 127.03, $3)",
        site,
        generator,
        district,
    )
    for _ in range(bins):
        await pool.execute(
            "INSERT INTO waste_bins (bin_id, site_id, volume_litres) VALUES ($1, $2, 120)",
            uuid.uuid4(),
            site,
        )
    return site


async def new_bins(
    pool: asyncpg.Pool, count: int = 1, district: str = "11680"
) -> list[asyncpg.Record]:
    site = await new_site(pool, count, district)
    return await issue.bins(pool, site_id=site)


async def label_for(pool: asyncpg.Pool, district: str = "11680") -> issue.Label:
    issued = await issue.issue(pool, SECRET, await new_bins(pool, district=district))
    return issued.labels[0]


def random_uid() -> str:
    return "04" + uuid.uuid4().hex[:12].upper()


async def nfc_tag(pool: asyncpg.Pool) -> tuple[issue.NfcTag, str]:
    (row,) = await new_bins(pool)
    issued = await issue.issue(pool, SECRET, [row], {row["bin_id"]: random_uid()})
    return issued.nfc[0], row["district_code"]


def tap(tag: issue.NfcTag, counter: int) -> NfcTap:
    """A read of the tag personalised with the keys `tags-issue` gave for it."""
    return NfcTap(*sun.tap(tag.keys[1], tag.keys[2], bytes.fromhex(tag.uid), counter))


def flip(text: str, index: int) -> str:
    """`text` with one byte of its base64url part `index` (1 payload, 2 signature) changed."""
    parts = text.split(".")
    raw = bytearray(qr.unb64(parts[index]))
    raw[len(raw) // 2] ^= 0x01
    parts[index] = qr.b64(bytes(raw))
    return ".".join(parts)


@pytest.mark.db
async def test_a_label_verifies_at_the_hub_and_offline(
    pool: asyncpg.Pool, verifier: Verifier
) -> None:
    label = await label_for(pool, district="11110")
    verified = await verifier.verify(QrTag(label.text))
    assert (verified.tag_id, verified.bin_id, verified.district_code, verified.kind) == (
        label.tag_id,
        label.bin_id,
        "11110",
        "qr",
    )
    claims = qr.verify_offline(label.text, await keys.public_keys(pool))
    assert (claims.tag_id, claims.bin_id, claims.district_code) == (
        label.tag_id,
        label.bin_id,
        "11110",
    )
    assert tags_cli.label(label.text).designator == "10-Q"  # 57 × 57 modules


@pytest.mark.db
@pytest.mark.parametrize("part", [1, 2], ids=["payload", "signature"])
async def test_a_label_with_one_byte_changed_is_forged(
    pool: asyncpg.Pool, verifier: Verifier, part: int
) -> None:
    forged = flip((await label_for(pool)).text, part)
    with pytest.raises(TagForged):
        await verifier.verify(QrTag(forged))
    with pytest.raises(TagForged):
        qr.verify_offline(forged, await keys.public_keys(pool))


@pytest.mark.db
@pytest.mark.parametrize(
    "text",
    ["", "hello", "IEUM1.AAAA.AAAA", "IEUM2.a.b", "IEUM1.!!!.???", "https://example.com/x"],
)
async def test_anything_else_is_forged(verifier: Verifier, text: str) -> None:
    with pytest.raises(TagForged):
        await verifier.verify(QrTag(text))


@pytest.mark.db
async def test_a_label_signed_by_a_key_of_our_own_making_is_forged(
    pool: asyncpg.Pool, verifier: Verifier
) -> None:
    real = qr.verify_offline((await label_for(pool)).text, await keys.public_keys(pool))
    forged = qr.sign(real, Ed25519PrivateKey.generate())  # same claims, the forger's key
    with pytest.raises(TagForged):
        await verifier.verify(QrTag(forged))


@pytest.mark.db
async def test_a_label_signed_with_a_revoked_key_is_refused(
    pool: asyncpg.Pool, verifier: Verifier
) -> None:
    key = await keys.rotate(pool, SECRET, keys.QR)
    label = await label_for(pool)
    assert qr.named_key(label.text) == key.key_id
    await verifier.verify(QrTag(label.text))
    await keys.revoke(pool, key.key_id)
    verifier.forget()
    with pytest.raises(TagKeyRevoked):
        await verifier.verify(QrTag(label.text))
    published = await keys.public_keys(pool)
    assert str(key.key_id) not in [jwk["kid"] for jwk in published["keys"]]
    with pytest.raises(TagKeyRevoked):
        qr.verify_offline(label.text, published)
    # A forger naming the revoked key still only forges.
    with pytest.raises(TagForged):
        await verifier.verify(QrTag(flip(label.text, 2)))
    # New labels come from a new key.
    assert qr.named_key((await label_for(pool)).text) != key.key_id


@pytest.mark.db
async def test_labels_of_a_rotated_key_still_verify(pool: asyncpg.Pool, verifier: Verifier) -> None:
    old = await label_for(pool)
    new_key = await keys.rotate(pool, SECRET, keys.QR)
    new = await label_for(pool)
    assert qr.named_key(new.text) == new_key.key_id != qr.named_key(old.text)
    verifier.forget()
    for label in (old, new):
        assert (await verifier.verify(QrTag(label.text))).tag_id == label.tag_id
        qr.verify_offline(label.text, await keys.public_keys(pool))


@pytest.mark.db
async def test_a_revoked_or_replaced_label_is_refused(pool: asyncpg.Pool) -> None:
    verifier = Verifier(pool, SECRET, refresh_seconds=0.2)  # another hub process
    label = await label_for(pool)
    await verifier.verify(QrTag(label.text))
    assert await store.revoke_tags(pool, "label torn off", tag_ids=[label.tag_id]) == [label.tag_id]
    await asyncio.sleep(0.3)
    with pytest.raises(TagRevoked):
        await verifier.verify(QrTag(label.text))
    # A new label for the bin replaces the one before it.
    (row,) = await issue.bins(pool, [label.bin_id])
    first = (await issue.issue(pool, SECRET, [row])).labels[0]
    second = (await issue.issue(pool, SECRET, [row])).labels[0]
    verifier.forget()
    assert (await verifier.verify(QrTag(second.text))).bin_id == label.bin_id
    with pytest.raises(TagRevoked):
        await verifier.verify(QrTag(first.text))


@pytest.mark.db
async def test_a_key_made_by_another_process_verifies_without_waiting(pool: asyncpg.Pool) -> None:
    verifier = Verifier(pool, SECRET, refresh_seconds=3600)
    await verifier.verify(QrTag((await label_for(pool)).text))
    await asyncio.sleep(1.1)  # keys read more than a second ago may be missing a new one
    await keys.rotate(pool, SECRET, keys.QR)
    label = await label_for(pool)
    assert (await verifier.verify(QrTag(label.text))).tag_id == label.tag_id


@pytest.mark.db
async def test_nfc_taps_with_rising_counters_are_accepted(
    pool: asyncpg.Pool, verifier: Verifier
) -> None:
    tag, district = await nfc_tag(pool)
    for counter in (0, 1, 5, 6, 1000):
        verified = await verifier.verify(tap(tag, counter))
        assert (verified.tag_id, verified.bin_id, verified.district_code) == (
            tag.tag_id,
            tag.bin_id,
            district,
        )
        assert (verified.kind, verified.counter) == ("nfc", counter)


@pytest.mark.db
async def test_the_sun_url_itself_verifies(pool: asyncpg.Pool, verifier: Verifier) -> None:
    tag, _ = await nfc_tag(pool)
    picc_data, mac = sun.tap(tag.keys[1], tag.keys[2], bytes.fromhex(tag.uid), 3)
    url = f"https://hub.example/waste/tap?picc_data={picc_data}&cmac={mac}"
    assert (await verifier.verify(NfcTap.from_url(url))).counter == 3


@pytest.mark.db
async def test_an_nfc_tap_with_a_bad_cmac_is_refused(
    pool: asyncpg.Pool, verifier: Verifier
) -> None:
    tag, _ = await nfc_tag(pool)
    good = tap(tag, 1)
    bad_mac = NfcTap(good.picc_data, good.cmac[:-1] + ("0" if good.cmac[-1] != "0" else "1"))
    with pytest.raises(NfcBadCmac):
        await verifier.verify(bad_mac)
    # Another tag's keys, or keys that are not the city's at all.
    other, _ = await nfc_tag(pool)
    wrong_file_key = sun.tap(tag.keys[1], other.keys[2], bytes.fromhex(tag.uid), 2)
    with pytest.raises(NfcBadCmac):
        await verifier.verify(NfcTap(*wrong_file_key))
    with pytest.raises(NfcBadCmac):
        await verifier.verify(NfcTap(*sun.tap(ZERO_KEY, ZERO_KEY, bytes.fromhex(tag.uid), 2)))
    # A refused tap does not move the counter: the genuine one still goes through.
    assert (await verifier.verify(good)).counter == 1


@pytest.mark.db
@pytest.mark.parametrize(
    ("picc_data", "cmac"),
    [("", ""), ("zz" * 16, "00" * 8), ("00" * 15, "00" * 8), ("00" * 16, "00" * 9)],
)
async def test_a_malformed_nfc_tap_is_forged(verifier: Verifier, picc_data: str, cmac: str) -> None:
    with pytest.raises(TagForged):
        await verifier.verify(NfcTap(picc_data, cmac))


@pytest.mark.db
async def test_a_replayed_nfc_tap_is_refused(pool: asyncpg.Pool, verifier: Verifier) -> None:
    tag, _ = await nfc_tag(pool)
    seen = tap(tag, 10)
    await verifier.verify(seen)
    with pytest.raises(NfcCounterReplayed):
        await verifier.verify(seen)  # the same URL again
    with pytest.raises(NfcCounterReplayed):
        await verifier.verify(tap(tag, 9))  # an older read, kept and sent later
    assert (await verifier.verify(tap(tag, 11))).counter == 11


@pytest.mark.db
async def test_a_copied_tag_is_refused(pool: asyncpg.Pool, verifier: Verifier) -> None:
    """A copy made with the tag's keys, or two taps showing one counter at once: one wins."""
    tag, _ = await nfc_tag(pool)
    await verifier.verify(tap(tag, 20))
    original, copy = tap(tag, 21), tap(tag, 21)  # one counter, different padding
    assert original != copy
    await verifier.verify(original)
    with pytest.raises(NfcCounterReplayed):
        await verifier.verify(copy)
    results = await asyncio.gather(
        *(verifier.verify(tap(tag, 22)) for _ in range(8)), return_exceptions=True
    )
    assert sum(not isinstance(result, Exception) for result in results) == 1
    assert all(isinstance(r, NfcCounterReplayed) for r in results if isinstance(r, Exception))


@pytest.mark.db
async def test_a_revoked_nfc_tag_or_key_is_refused(pool: asyncpg.Pool, verifier: Verifier) -> None:
    tag, _ = await nfc_tag(pool)
    await store.revoke_tags(pool, "bin stolen", bin_ids=[tag.bin_id])
    with pytest.raises(TagRevoked):
        await verifier.verify(tap(tag, 1))
    key = await keys.rotate(pool, SECRET, keys.NFC)
    verifier.forget()
    tag, _ = await nfc_tag(pool)
    await verifier.verify(tap(tag, 1))
    await keys.revoke(pool, key.key_id)  # this process has not re-read the keys yet
    with pytest.raises(TagKeyRevoked):
        await verifier.verify(tap(tag, 2))
    verifier.forget()
    with pytest.raises(TagKeyRevoked):
        await verifier.verify(tap(tag, 3))


@pytest.mark.db
async def test_a_genuine_tag_the_city_never_issued_is_forged(
    pool: asyncpg.Pool, verifier: Verifier
) -> None:
    master = (await keys.current(pool, SECRET, keys.NFC)).open(SECRET)
    uid = bytes.fromhex(random_uid())
    stray = sun.tag_keys(master, uid)
    verifier.forget()
    with pytest.raises(TagForged):
        await verifier.verify(NfcTap(*sun.tap(stray[1], stray[2], uid, 1)))


@pytest.mark.db
async def test_the_guide_s_offline_check_agrees_with_the_hub(pool: asyncpg.Pool) -> None:
    """docs/waste-tags.md shows phone developers the whole label check: run it."""
    guide = (Path(__file__).parents[2] / "docs" / "waste-tags.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", guide, re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 (our own guide)
    check_label = namespace["check_label"]
    label = await label_for(pool, district="11110")
    key_set = await keys.public_keys(pool)
    claims = qr.verify_offline(label.text, key_set)
    assert check_label(label.text, key_set) == (
        label.tag_id,
        label.bin_id,
        "11110",
        claims.issued_on,
    )
    for forged in (flip(label.text, 1), flip(label.text, 2), label.text + "A", "IEUM1.a.b"):
        with pytest.raises(ValueError, match="TAG_FORGED"):
            check_label(forged, key_set)
    key = await keys.rotate(pool, SECRET, keys.QR)
    revoked = await label_for(pool)
    await keys.revoke(pool, key.key_id)
    with pytest.raises(ValueError, match="TAG_KEY_REVOKED"):
        check_label(revoked.text, await keys.public_keys(pool))


@pytest.mark.db
async def test_keys_are_sealed_at_rest(pool: asyncpg.Pool) -> None:
    await label_for(pool)
    current = await keys.current(pool, SECRET, keys.QR)
    private = current.open(SECRET)
    row = await pool.fetchrow(
        "SELECT private_key FROM waste_tag_keys WHERE key_id = $1", current.key_id
    )
    assert private not in row["private_key"] and len(private) == 32
    with pytest.raises(keys.SecretMismatch):
        current.open(keys.derive_secret("another secret, of another hub process"))


def test_without_a_secret_one_is_kept_in_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IEUM_WASTE_TAG_SECRET", raising=False)
    settings = Settings.from_env(data_dir=tmp_path)
    made = keys.secret(settings)
    assert keys.secret(settings) == made
    assert stat.S_IMODE((tmp_path / keys.SECRET_FILE).stat().st_mode) == 0o600


def test_a_process_starting_while_the_secret_is_written_reads_the_same_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second process looks while the first is making the secret (here: while it draws
    # the random text): it must not read a file still empty, and both end on one secret.
    monkeypatch.delenv("IEUM_WASTE_TAG_SECRET", raising=False)
    settings = Settings.from_env(data_dir=tmp_path)
    draw, seen, calls = secrets_module.token_urlsafe, [], []

    def drawn_while_another_starts(size: int) -> str:
        calls.append(size)
        if len(calls) == 1:
            seen.append(keys.secret(settings))
        return draw(size)

    monkeypatch.setattr(secrets_module, "token_urlsafe", drawn_while_another_starts)
    assert keys.secret(settings) == seen[0] == keys.secret(settings)
    assert stat.S_IMODE((tmp_path / keys.SECRET_FILE).stat().st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == [keys.SECRET_FILE]


def test_threads_starting_together_agree_on_one_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IEUM_WASTE_TAG_SECRET", raising=False)
    for attempt in range(20):
        settings = Settings.from_env(data_dir=tmp_path / str(attempt))
        start = threading.Barrier(6)

        def first_start(settings: Settings = settings, start: threading.Barrier = start) -> bytes:
            start.wait()
            return keys.secret(settings)

        with ThreadPoolExecutor(6) as pool:
            made = set(pool.map(lambda _: first_start(), range(6)))
        assert len(made) == 1
        assert [p.name for p in settings.data_dir.iterdir()] == [keys.SECRET_FILE]


def test_an_empty_secret_file_is_refused_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IEUM_WASTE_TAG_SECRET", raising=False)
    (tmp_path / keys.SECRET_FILE).write_text("")
    with pytest.raises(keys.SecretMismatch, match="empty"):
        keys.secret(Settings.from_env(data_dir=tmp_path))


@pytest.mark.db
async def test_issuing_refuses_unknown_bins_and_bad_uids(pool: asyncpg.Pool) -> None:
    with pytest.raises(BinNotFound):
        await issue.bins(pool, [uuid.uuid4()])
    with pytest.raises(BinNotFound):
        await issue.bins(pool, site_id=uuid.uuid4())
    rows = await new_bins(pool)
    with pytest.raises(BadUserInput):
        await issue.issue(pool, SECRET, rows, {rows[0]["bin_id"]: "04DE5F1EACC0"})


# ieum waste tags-issue


def read_png(path: Path) -> np.ndarray:
    """A grey-scale PNG as segno writes it (1 bit, filters None and Up) into pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (1, 0)
        elif kind == b"IDAT":
            chunks += body
    raw, stride = zlib.decompress(chunks), (width + 7) // 8
    rows, previous = [], bytes(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        assert line[0] in (0, 2)
        row = (
            bytes(line[1:])
            if line[0] == 0
            else bytes((a + b) & 0xFF for a, b in zip(line[1:], previous, strict=True))
        )
        rows.append(np.unpackbits(np.frombuffer(row, np.uint8))[:width])
        previous = row
    return (np.array(rows) * 255).astype(np.uint8)


async def ieum_waste(migrated_url: str, name: str, *argv: str) -> tuple[int, str]:
    """`ieum waste NAME ARGV…` through the command's own function, in a thread (it runs its
    own event loop); its exit code and output."""
    (command,) = [c for c in tags_cli.COMMANDS if c.name == name]
    parser = argparse.ArgumentParser()
    command.arguments(parser)
    args = parser.parse_args(argv)
    out = io.StringIO()

    def call() -> int:
        with redirect_stdout(out):
            return command.run(Settings.from_env(), Servers(migrated_url, None), args)

    return await asyncio.to_thread(call), out.getvalue()


@pytest.mark.db
async def test_tags_issue_writes_labels_that_read_back_and_verify(
    pool: asyncpg.Pool,
    migrated_url: str,
    verifier: Verifier,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IEUM_WASTE_TAG_SECRET", SECRET_TEXT)
    site = await new_site(pool, bins=3)
    bins = [row["bin_id"] for row in await issue.bins(pool, site_id=site)]
    uid = random_uid()
    code, output = await ieum_waste(
        migrated_url,
        "tags-issue",
        *("--site", str(site), "--out", str(tmp_path), "--format", "png", "--nfc"),
        *("--uid", f"{bins[0]}={uid}"),
    )
    assert code == 0, output
    assert "3 QR labels" in output
    with (tmp_path / "labels.csv").open(encoding="utf-8") as file:
        listed = list(csv.DictReader(file))
    assert sorted(row["bin_id"] for row in listed) == sorted(map(str, bins))
    for row in listed:
        image = tmp_path / row["file"]
        assert image.name == f"{row['bin_id']}.png"
        # QR codes only: the reader may also see some other symbology in one now and then.
        reads = zxingcpp.read_barcodes(read_png(image), formats=zxingcpp.BarcodeFormat.QRCode)
        assert [read.text for read in reads] == [row["qr_text"]]
        verified = await verifier.verify(QrTag(reads[0].text))
        assert (str(verified.bin_id), str(verified.tag_id)) == (row["bin_id"], row["tag_id"])
        assert verified.district_code == row["district_code"] == "11680"

    # NFC: keys for the bin whose UID was read, a placeholder for the others.
    nfc_file = tmp_path / "nfc.json"
    assert stat.S_IMODE(nfc_file.stat().st_mode) == 0o600
    document = json.loads(nfc_file.read_text())
    by_bin = {tag["bin_id"]: tag for tag in document["tags"]}
    assert by_bin[str(bins[1])] == {
        "bin_id": str(bins[1]),
        "uid": None,
        "tag_id": None,
        "keys": None,
    }
    written = by_bin[str(bins[0])]
    assert written["uid"] == uid and len(written["keys"]) == 5
    master = (await keys.current(pool, SECRET, keys.NFC)).open(SECRET).hex().upper()
    assert master not in nfc_file.read_text() and master not in output
    meta, file_key = (bytes.fromhex(k) for k in written["keys"][1:3])
    verified = await verifier.verify(NfcTap(*sun.tap(meta, file_key, bytes.fromhex(uid), 1)))
    assert (str(verified.tag_id), verified.bin_id) == (written["tag_id"], bins[0])

    # The URL the tag carries, with the offsets where the tag writes the SUN message.
    sdm = document["sdm"]
    assert sdm["url"].startswith("http://127.0.0.1:8000/waste/tap?picc_data=")
    ndef = b"\x00\x00\xd1\x01\x00\x55\x03" + sdm["url"].removeprefix("http://").encode()
    assert ndef[sdm["picc_data_offset"] :][:32] == b"0" * 32
    assert ndef[sdm["sdmmac_offset"] :] == b"0" * 16


@pytest.mark.db
async def test_tags_issue_svg_labels_hold_the_label_text(
    pool: asyncpg.Pool, migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IEUM_WASTE_TAG_SECRET", SECRET_TEXT)
    rows = await new_bins(pool, 2)
    code, _ = await ieum_waste(
        migrated_url,
        "tags-issue",
        "--bins",
        *(str(r["bin_id"]) for r in rows),
        "--out",
        str(tmp_path),
    )
    assert code == 0
    with (tmp_path / "labels.csv").open(encoding="utf-8") as file:
        for row in csv.DictReader(file):
            expected = io.BytesIO()
            qr_code = segno.make(row["qr_text"], error="q", micro=False)
            qr_code.save(expected, kind="svg", scale=8, border=4)
            assert (tmp_path / row["file"]).read_bytes() == expected.getvalue()
    assert not (tmp_path / "nfc.json").exists()


@pytest.mark.db
async def test_tags_issue_refuses_unknown_bins(
    migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IEUM_WASTE_TAG_SECRET", SECRET_TEXT)
    code, _ = await ieum_waste(
        migrated_url, "tags-issue", "--bins", str(uuid.uuid4()), "--out", str(tmp_path)
    )
    assert code == 1
    assert not (tmp_path / "labels.csv").exists()


@pytest.mark.db
async def test_tags_revoke_and_keys_commands(
    pool: asyncpg.Pool, migrated_url: str, verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IEUM_WASTE_TAG_SECRET", SECRET_TEXT)
    label = await label_for(pool)
    code, output = await ieum_waste(
        migrated_url, "tags-revoke", "--tag", str(label.tag_id), "--reason", "torn"
    )
    assert (code, output.strip()) == (0, f"revoked tag {label.tag_id}")
    with pytest.raises(TagRevoked):
        await verifier.verify(QrTag(label.text))

    code, output = await ieum_waste(migrated_url, "keys-rotate", "--kind", "qr")
    assert code == 0
    key_id = int(output.split()[1])
    fresh = await label_for(pool)
    assert qr.named_key(fresh.text) == key_id
    code, output = await ieum_waste(migrated_url, "keys-revoke", str(key_id))
    assert code == 0 and str(fresh.bin_id) in output
    verifier.forget()
    with pytest.raises(TagKeyRevoked):
        await verifier.verify(QrTag(fresh.text))
