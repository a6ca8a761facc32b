"""The key-encryption key (KEK) that seals token signing keys at rest.

A private signing key is stored sealed with AES-256-GCM under the KEK, with the key's kid
as associated data, so a copy of the database alone gives no key and a sealed key moved to
another row does not open. (The same construction seals waste's tag keys.) The KEK comes
from IEUM_AUTH_KEK (base64 of 32 bytes) or the file IEUM_AUTH_KEK_FILE names (the same
text); with neither, one is made in the data folder so a demo works, and a warning says
that the database and that folder together give the keys away.

Every hub process that signs tokens needs the same KEK.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

ENV = "IEUM_AUTH_KEK"
FILE_ENV = "IEUM_AUTH_KEK_FILE"
GENERATED_FILE = "auth-kek"
SEALED = "A256GCM"  # the `sealed` member of a sealed value: how it was sealed
_KEY_BYTES = 32
_NONCE_BYTES = 12


class KekError(ValueError):
    """The KEK is missing, malformed, or not the one a value was sealed with."""


@dataclass(frozen=True)
class Kek:
    key: bytes
    source: str  # where it came from, for messages

    @property
    def kek_id(self) -> str:
        """A fingerprint that tells KEKs apart in messages, revealing nothing of the key."""
        return hashlib.sha256(b"ieum.auth.kek-id\0" + self.key).hexdigest()[:16]

    def seal(self, plaintext: bytes, context: bytes) -> dict[str, str]:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        data = nonce + AESGCM(self.key).encrypt(nonce, plaintext, context)
        return {
            "sealed": SEALED,
            "kek": self.kek_id,
            "data": base64.urlsafe_b64encode(data).decode(),
        }

    def open(self, sealed: dict[str, Any], context: bytes) -> bytes:
        if sealed.get("sealed") != SEALED:
            raise KekError(f"unknown sealing {sealed.get('sealed')!r}")
        data = base64.urlsafe_b64decode(str(sealed["data"]))
        try:
            return AESGCM(self.key).decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], context)
        except InvalidTag:
            raise KekError(
                f"a signing key was sealed under KEK {sealed.get('kek')}, but this process "
                f"has KEK {self.kek_id} ({self.source}): give every hub process the same "
                f"{ENV} or {FILE_ENV}"
            ) from None


def is_sealed(value: dict[str, Any]) -> bool:
    return "sealed" in value


def current() -> Kek:
    """This process's KEK, from the environment or the data folder (made there if absent)."""
    return _load(
        os.environ.get(ENV) or None,
        os.environ.get(FILE_ENV) or None,
        Path(os.environ.get("IEUM_DATA_DIR") or ".ieum"),
    )


@functools.cache
def _load(text: str | None, file: str | None, data_dir: Path) -> Kek:
    """Cached per configuration: read once, and the warning logged once."""
    if text and file:
        raise KekError(f"set {ENV} or {FILE_ENV}, not both")
    if text:
        return Kek(_decode(text, ENV), ENV)
    if file:
        try:
            content = Path(file).read_text()
        except OSError as exc:
            raise KekError(f"{FILE_ENV}={file} cannot be read: {exc.strerror}") from None
        return Kek(_decode(content, f"{FILE_ENV}={file}"), f"{FILE_ENV}={file}")
    path = data_dir / GENERATED_FILE
    _create(path)
    log.warning(
        "auth.kek.generated path=%s: token signing keys are sealed with a key kept in the "
        "data folder, so that folder and a copy of the database together give them away; "
        "set %s or %s (see docs/operating.md) before going to production",
        path,
        ENV,
        FILE_ENV,
    )
    return Kek(_decode(path.read_text(), str(path)), f"{path}, generated")


def _decode(text: str, source: str) -> bytes:
    stripped = text.strip()
    try:
        key = base64.b64decode(stripped + "=" * (-len(stripped) % 4), altchars=b"-_")
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise KekError(
            f"{source}: the KEK must be {_KEY_BYTES} random bytes in base64 "
            "(make one with `openssl rand -base64 32`)"
        )
    return key


def _create(path: Path) -> None:
    """A new random KEK at `path`, readable by its owner only, unless one is there.

    Written whole under another name and linked into place, so a process starting at the
    same moment reads either no file or a complete one, and the first one made stays."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode() + "\n")
        os.link(draft, path)
    except FileExistsError:
        pass  # another process made it just now: use theirs
    finally:
        draft.unlink()
