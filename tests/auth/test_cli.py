"""`ieum clients|users|keys`, run as a user runs them, against the hub's database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from tests.oauth import REDIRECT, Hub, approve, authorize_url, pkce, redirect_params

pytestmark = pytest.mark.db

IEUM = str(Path(sys.executable).parent / "ieum")


def ieum(
    database_url: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IEUM, *args],
        env=os.environ | {"IEUM_DATABASE_URL": database_url},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def token(hub: Hub, client_id: str, secret: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.url) as http:
        return await http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )


async def test_create_prints_credentials_that_work(auth_hub: Hub, migrated_url: str) -> None:
    created = ieum(
        migrated_url, "clients", "create", "--name", "택시 센서", "--scopes",
        "sensors:ingest,sensors:read", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    assert client["scopes"] == ["sensors:ingest", "sensors:read"]
    assert client["grant_types"] == ["client_credentials"]
    response = await token(auth_hub, client["client_id"], client["client_secret"])
    assert response.status_code == 200
    assert response.json()["scope"] == "sensors:ingest sensors:read"

    listed = json.loads(ieum(migrated_url, "clients", "list", "--json").stdout)
    mine = next(c for c in listed if c["client_id"] == client["client_id"])
    assert mine["name"] == "택시 센서" and mine["disabled"] is False
    assert client["client_secret"] not in json.dumps(listed)


async def test_rotate_secret_and_disable(auth_hub: Hub, migrated_url: str) -> None:
    client = json.loads(
        ieum(
            migrated_url, "clients", "create", "--name", "x", "--scopes", "profile", "--json"
        ).stdout
    )
    rotated = json.loads(
        ieum(migrated_url, "clients", "rotate-secret", client["client_id"], "--json").stdout
    )
    assert (await token(auth_hub, client["client_id"], client["client_secret"])).status_code == 401
    assert (await token(auth_hub, client["client_id"], rotated["client_secret"])).status_code == 200
    assert ieum(migrated_url, "clients", "disable", client["client_id"]).returncode == 0
    refused = await token(auth_hub, client["client_id"], rotated["client_secret"])
    assert refused.json()["error"] == "invalid_client"


async def test_public_client_and_user_account(auth_hub: Hub, migrated_url: str) -> None:
    public = json.loads(
        ieum(
            migrated_url, "clients", "create", "--name", "아이 등굣길", "--scopes", "profile",
            "--public", "--redirect-uri", REDIRECT, "--json",
        ).stdout
    )  # fmt: skip
    assert public["client_secret"] is None
    assert public["token_endpoint_auth_method"] == "none"
    created = ieum(
        migrated_url, "users", "create", "--username", "minji", "--name", "이민지",
        "--password-stdin", stdin="a long enough password\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    url = authorize_url(auth_hub.url, public["client_id"], pkce()[1])
    response = await approve(auth_hub.url, url, "minji", "a long enough password")
    assert "code" in redirect_params(response)


def test_private_key_jwt_client_from_a_jwks_file(migrated_url: str, tmp_path: Path) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    created = ieum(
        migrated_url, "clients", "create", "--name", "센서 협력사", "--scopes", "sensors:ingest",
        "--jwks", str(jwks), "--json",
    )  # fmt: skip
    client = json.loads(created.stdout)
    assert client["token_endpoint_auth_method"] == "private_key_jwt"
    assert client["client_secret"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scopes", "sensors:everything"], "unknown scope"),
        (["--scopes", "profile", "--redirect-uri", "http://evil.example/cb"], "https"),
        (["--scopes", "profile", "--redirect-uri", "https://app.example/cb#x"], "fragment"),
        (["--scopes", "profile", "--public"], "redirect-uri"),
    ],
)
def test_invalid_registrations_are_refused(
    migrated_url: str, args: list[str], message: str
) -> None:
    result = ieum(migrated_url, "clients", "create", "--name", "x", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_keys_rotate(migrated_url: str) -> None:
    result = ieum(migrated_url, "keys", "rotate", "--signs-in", "600")
    assert result.returncode == 0, result.stderr
    assert "published now, signs from" in result.stdout


def test_a_key_that_would_sign_before_caches_see_it_needs_emergency(migrated_url: str) -> None:
    refused = ieum(migrated_url, "keys", "rotate", "--signs-in", "0")
    assert refused.returncode == 2
    assert "--emergency" in refused.stderr
    forced = ieum(migrated_url, "keys", "rotate", "--signs-in", "0", "--emergency")
    assert forced.returncode == 0, forced.stderr
