"""Fixtures: real PostgreSQL and a real Kafka-protocol broker, never mocks.

PostgreSQL is `IEUM_DATABASE_URL` when set, else an embedded server started once per run;
each test module gets a fresh database on it. The broker is `IEUM_KAFKA_BOOTSTRAP` when
set, else an embedded Tansu started once per run.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from hub import domains
from hub.app import create_app
from hub.bootstrap import prepare_database
from hub.core import db
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.embedded import broker, postgres
from hub.embedded.ports import free_port
from hub.serve import serving
from tests.oauth import Hub

# The installed domains register their settings sections and scopes, as `ieum` does first.
domains.installed()

# One key-encryption key for this run's signing keys, which the `ieum` processes the tests
# start inherit (each with its own data dir would otherwise make its own and not open them).
os.environ.setdefault("IEUM_AUTH_KEK", base64.b64encode(secrets.token_bytes(32)).decode())


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("IEUM_DATABASE_URL"):
        yield url
        return
    server = postgres.start(
        tmp_path_factory.mktemp("embedded") / "postgres", options=postgres.FAST_UNSAFE
    )
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if bootstrap := os.environ.get("IEUM_KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    embedded = broker.start(tmp_path_factory.mktemp("broker") / "broker.log")
    yield embedded.bootstrap
    embedded.stop()


@asynccontextmanager
async def fresh_database(server_url: str, label: str) -> AsyncIterator[str]:
    """A new empty database on the server, dropped afterwards."""
    name = f"ieum_test_{label}_{uuid.uuid4().hex[:8]}".lower()
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(server_url, name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def database_url(pg_server_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh, empty database for this test module."""
    label = Path(str(request.module.__file__)).stem.removeprefix("test_")
    async with fresh_database(pg_server_url, label) as url:
        yield url


@pytest.fixture(scope="module")
async def migrated_url(database_url: str) -> str:
    """This module's database with every migration and the reference data applied."""
    await prepare_database(database_url, Settings.from_env())
    return database_url


def local_settings(**overrides: object) -> Settings:
    """Settings for a hub on a free loopback port, its issuer being that address."""
    port = free_port()
    return Settings.from_env(port=port, public_url=f"http://127.0.0.1:{port}", **overrides)


@pytest.fixture(scope="module")
async def hub_url(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[str]:
    """The whole hub (all domains) on this module's database, over real HTTP."""
    settings = local_settings()
    app = create_app(settings, Servers(migrated_url, kafka_bootstrap))
    async with serving(app, settings.port) as url:
        yield url


@pytest.fixture
async def client(hub_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hub_url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
async def auth_hub(hub_url: str, migrated_url: str) -> AsyncIterator[Hub]:
    """The hub's URL and a pool on its database, for OAuth tests."""
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield Hub(hub_url, pool)
    await pool.close()
