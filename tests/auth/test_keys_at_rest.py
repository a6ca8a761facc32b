"""Token signing keys at rest: sealed under the KEK, plain ones from before still work and
get sealed, rotation keeps signing, and a KEK that is not the one they were sealed with
says so."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from auth import kek, keys, store
from tests.oauth import Hub

pytestmark = pytest.mark.db

IEUM = str(Path(sys.executable).with_name("ieum"))


async def stored_keys(hub: Hub) -> dict[str, dict[str, object]]:
    return {row["kid"]: row["private_jwk"] for row in await store.signing_keys(hub.pool)}


async def issued_and_verified(hub: Hub) -> str:
    """A token from /oauth/token, checked against the published JWKS; its kid."""
    token = await hub.token("sensors:read")
    async with httpx.AsyncClient(base_url=hub.url) as http:
        published = (await http.get("/.well-known/jwks.json")).json()
    decoded = jwt.decode(token, KeySet.import_key_set(published), algorithms=[keys.ALG])
    return str(decoded.header["kid"])


async def plain_key(auth_hub: Hub, signs_from: datetime) -> ECKey:
    """A signing key stored as before keys were sealed: plain JWK."""
    kid = f"plain-{secrets.token_hex(4)}"
    plain = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": keys.ALG, "use": "sig"})
    await store.insert_signing_key(
        auth_hub.pool,
        kid=kid,
        alg=keys.ALG,
        private_jwk=plain.as_dict(private=True),
        public_jwk=plain.as_dict(private=False),
        signs_from=signs_from,
    )
    return plain


async def test_private_keys_are_stored_sealed(auth_hub: Hub) -> None:
    stored = await stored_keys(auth_hub)
    assert stored
    for private in stored.values():
        assert set(private) == {"sealed", "kek", "data"}, private  # no "d", no JWK
        assert private["kek"] == kek.current().kek_id
    assert await issued_and_verified(auth_hub) in stored


async def test_a_plain_key_from_before_signs_and_rotation_seals_it(auth_hub: Hub) -> None:
    plain = await plain_key(auth_hub, signs_from=datetime.now(UTC))
    kid = str(plain.kid)
    assert await issued_and_verified(auth_hub) == kid  # read as it was stored

    added = await keys.add(auth_hub.pool, signs_in=timedelta(hours=1))
    stored = await stored_keys(auth_hub)
    assert stored[kid].keys() == {"sealed", "kek", "data"}
    assert stored[added.kid].keys() == {"sealed", "kek", "data"}
    ring = await keys.load(auth_hub.pool, timedelta(minutes=10))
    opened = {key.kid: key.private_key().as_dict(private=True) for key in ring.keys}
    assert opened[kid]["d"] == plain.as_dict(private=True)["d"]
    assert await issued_and_verified(auth_hub) == kid  # still the current one


async def test_ieum_keys_encrypt_seals_plain_keys(auth_hub: Hub, migrated_url: str) -> None:
    plain = await plain_key(auth_hub, signs_from=datetime.now(UTC) + timedelta(days=1))
    kid = str(plain.kid)
    result = await asyncio.to_thread(
        subprocess.run,
        [IEUM, "keys", "encrypt"],
        env=os.environ | {"IEUM_DATABASE_URL": migrated_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert kid in result.stdout
    assert (await stored_keys(auth_hub))[kid].keys() == {"sealed", "kek", "data"}


async def test_another_kek_cannot_open_the_keys_and_says_so(
    auth_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = await keys.load(auth_hub.pool, timedelta(minutes=10))
    ours = kek.current().kek_id
    monkeypatch.setenv(kek.ENV, base64.b64encode(secrets.token_bytes(32)).decode())
    with pytest.raises(kek.KekError, match=f"sealed under KEK {ours}.*IEUM_AUTH_KEK"):
        ring.current().private_key()


async def test_a_sealed_key_moved_to_another_row_does_not_open(auth_hub: Hub) -> None:
    ring = await keys.load(auth_hub.pool, timedelta(minutes=10))
    current = ring.current()
    moved = keys.SigningKey(
        "another-kid", current.stored_private, current.public_jwk, ring.keys[0].signs_from
    )
    with pytest.raises(kek.KekError):
        moved.private_key()


def test_without_a_kek_one_is_made_in_the_data_folder_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(kek.ENV, raising=False)
    monkeypatch.delenv(kek.FILE_ENV, raising=False)
    monkeypatch.setenv("IEUM_DATA_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="auth.kek"):
        first = kek.current()
        again = kek.current()
    assert first == again
    path = tmp_path / kek.GENERATED_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text())) == 32
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "IEUM_AUTH_KEK" in warnings[0].getMessage()


def test_kek_from_a_file_and_a_malformed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secrets.token_bytes(32)
    file = tmp_path / "kek"
    file.write_text(base64.b64encode(key).decode() + "\n")
    monkeypatch.delenv(kek.ENV, raising=False)
    monkeypatch.setenv(kek.FILE_ENV, str(file))
    assert kek.current().key == key
    sealed = kek.current().seal(b"secret", b"context")
    assert "secret" not in json.dumps(sealed)
    assert kek.current().open(sealed, b"context") == b"secret"

    monkeypatch.delenv(kek.FILE_ENV)
    monkeypatch.setenv(kek.ENV, "c2hvcnQ=")  # "short"
    with pytest.raises(kek.KekError, match="32 random bytes in base64"):
        kek.current()
