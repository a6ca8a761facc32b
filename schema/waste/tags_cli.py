"""`ieum waste tags-issue`, `tags-revoke`, `keys-rotate` and `keys-revoke`: printable QR
labels and NFC key material for a batch of bins, and the city's controls over tags.

A running hub notices a revocation within a few seconds (resolvers/waste/tags/verify.py).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import segno

from hub.core import db
from hub.core.domain import Command
from hub.core.errors import IeumError
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.waste.tags import issue, keys, store, sun

T = TypeVar("T")
TAP_PATH = "/waste/tap"  # the URL an NFC tag carries, under the hub's public URL
QR_ERROR = "q"  # recovers about a quarter of the code: bins get dirty


@dataclass(frozen=True)
class Written:
    labels: list[Path]
    manifest: Path
    nfc: Path | None
    issued: issue.Issued


def label(text: str) -> segno.QRCode:
    """The QR code printed on a bin for a label's text."""
    return segno.make(text, error=QR_ERROR, micro=False, boost_error=False)


def write(
    issued: issue.Issued,
    bins: list[asyncpg.Record],
    out: Path,
    *,
    image_format: str,
    nfc: bool,
    tap_url: str,
) -> Written:
    """Write issued tags into `out`: one QR image per bin (<bin id>.svg or .png),
    labels.csv, and with `nfc` nfc.json, the key material to personalise the tags
    (readable by its owner only: it holds the tags' keys, never the master key)."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for each in issued.labels:
        path = out / f"{each.bin_id}.{image_format}"
        label(each.text).save(str(path), kind=image_format, scale=8, border=4)
        files.append(path)
    manifest = out / "labels.csv"
    with manifest.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["bin_id", "site_id", "district_code", "tag_id", "file", "qr_text"])
        for each, path in zip(issued.labels, files, strict=True):
            writer.writerow(
                [each.bin_id, each.site_id, each.district_code, each.tag_id, path.name, each.text]
            )
    nfc_path = _write_nfc(out, issued, bins, tap_url) if nfc else None
    return Written(files, manifest, nfc_path, issued)


def _write_nfc(out: Path, issued: issue.Issued, bins: list[asyncpg.Record], tap_url: str) -> Path:
    tags = {tag.bin_id: tag for tag in issued.nfc}
    document = {
        "key_id": issued.nfc_key_id,
        "sdm": sun.ndef_settings(tap_url),
        "tags": [
            {
                "bin_id": str(row["bin_id"]),
                "uid": tags[row["bin_id"]].uid,
                "tag_id": str(tags[row["bin_id"]].tag_id),
                "keys": [key.hex().upper() for key in tags[row["bin_id"]].keys],
            }
            if row["bin_id"] in tags
            else {"bin_id": str(row["bin_id"]), "uid": None, "tag_id": None, "keys": None}
            for row in bins
        ],
    }
    path = out / "nfc.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
    return path


def _run(settings: Settings, servers: Servers, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = await db.create_pool(servers.database, settings)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def _fail(message: object) -> int:
    print(f"ieum: {message}", file=sys.stderr)
    return 1


def _issue(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    if args.uid and not args.nfc:
        return _fail("--uid is for NFC tags: add --nfc")
    uids = {}
    for pair in args.uid:
        bin_id, _, tag_uid = pair.partition("=")
        try:
            uids[uuid.UUID(bin_id)] = tag_uid
        except ValueError:
            return _fail(f"--uid takes BIN_ID=UID, not {pair!r}")
    secret = keys.secret(settings)

    async def work(pool: asyncpg.Pool) -> tuple[list[asyncpg.Record], issue.Issued]:
        bins = await issue.bins(pool, args.bins or (), args.site)
        return bins, await issue.issue(pool, secret, bins, uids)

    try:
        bins, issued = _run(settings, servers, work)
    except IeumError as exc:
        return _fail(exc)
    written = write(
        issued,
        bins,
        args.out,
        image_format=args.format,
        nfc=args.nfc,
        tap_url=settings.issuer + TAP_PATH,
    )
    print(f"{len(written.labels)} QR labels in {args.out} (list: {written.manifest.name})")
    if written.nfc is not None:
        print(
            f"NFC: keys for {len(written.issued.nfc)} tags, UIDs still to read for "
            f"{len(written.labels) - len(written.issued.nfc)} bins, in {written.nfc} "
            "(secret: delete it once the tags are written)"
        )
    return 0


def _issue_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--bins", nargs="+", type=uuid.UUID, metavar="BIN_ID")
    which.add_argument("--site", type=uuid.UUID, metavar="SITE_ID", help="every bin of a site")
    parser.add_argument("--out", type=Path, required=True, help="folder for labels and lists")
    parser.add_argument("--format", choices=("svg", "png"), default="svg")
    parser.add_argument("--nfc", action="store_true", help="also NFC key material (nfc.json)")
    parser.add_argument(
        "--uid",
        action="append",
        default=[],
        metavar="BIN_ID=UID",
        help="the UID read from a bin's blank NTAG 424 DNA (repeat for each bin)",
    )


def _revoke_tags(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    async def work(pool: asyncpg.Pool) -> list[uuid.UUID]:
        return await store.revoke_tags(pool, args.reason, args.tag, args.bin)

    revoked = _run(settings, servers, work)
    for tag_id in revoked:
        print(f"revoked tag {tag_id}")
    return 0 if revoked else _fail("no live tag matched")


def _revoke_tags_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tag", action="append", type=uuid.UUID, default=[], metavar="TAG_ID")
    parser.add_argument(
        "--bin", action="append", type=uuid.UUID, default=[], help="all live tags of a bin"
    )
    parser.add_argument("--reason", required=True, help="e.g. 'label torn off'")


def _rotate(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    secret = keys.secret(settings)
    algorithms = {"qr": [keys.QR], "nfc": [keys.NFC], "both": [keys.QR, keys.NFC]}[args.kind]

    async def work(pool: asyncpg.Pool) -> list[keys.TagKey]:
        return [await keys.rotate(pool, secret, algorithm) for algorithm in algorithms]

    for key in _run(settings, servers, work):
        print(f"key {key.key_id} ({key.algorithm}) makes new tags; older keys still verify theirs")
    return 0


def _rotate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=("qr", "nfc", "both"), default="both")


def _revoke_key(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    async def work(pool: asyncpg.Pool) -> tuple[keys.TagKey | None, list[uuid.UUID]]:
        return await keys.revoke(pool, args.key_id), await store.bins_of_key(pool, args.key_id)

    key, bins = _run(settings, servers, work)
    if key is None:
        return _fail(f"no tag key {args.key_id}")
    print(f"revoked key {key.key_id} ({key.algorithm}); {len(bins)} bins need new tags:")
    for bin_id in bins:
        print(bin_id)
    return 0


def _revoke_key_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("key_id", type=int)


COMMANDS = (
    Command(
        "tags-issue",
        "QR labels (SVG/PNG) and NFC key material for bins",
        _issue,
        _issue_arguments,
    ),
    Command("tags-revoke", "revoke lost or damaged tags", _revoke_tags, _revoke_tags_arguments),
    Command("keys-rotate", "new keys make new tags from now on", _rotate, _rotate_arguments),
    Command(
        "keys-revoke",
        "revoke a leaked key: every tag it made is refused",
        _revoke_key,
        _revoke_key_arguments,
    ),
)
