"""/readyz follows the database going away and coming back."""

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from auth import clients, tokens
from hub.app import create_app
from hub.bootstrap import prepare_database
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.embedded import postgres
from hub.serve import serving
from tests.conftest import fresh_database

pytestmark = pytest.mark.slow


async def test_readyz_reports_the_database_going_and_coming_back(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    # Its own server, since this test stops it.
    server = postgres.start(tmp_path / "postgres", options=postgres.FAST_UNSAFE)
    try:
        settings = Settings.from_env(db_timeout_seconds=1.0)
        await prepare_database(server.url, settings)
        app = create_app(settings, Servers(server.url, kafka_bootstrap))
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/readyz")).status_code == 200

            server.stop()
            down = await client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["status"] == "unavailable"
            assert down.json()["checks"]["database"] != "ok"
            assert down.json()["checks"]["broker"] == "ok"
            assert (await client.get("/healthz")).status_code == 200  # alive, just not ready

            server = postgres.start(tmp_path / "postgres", port=server.port)
            back = await client.get("/readyz")
            assert back.status_code == 200, back.text
            body = await client.post(
                "/graphql", json={"query": '{ district(code: "11110") { name } }'}
            )
            assert body.json() == {"data": {"district": {"name": "종로구"}}}
    finally:
        if postgres.running_pid(tmp_path / "postgres"):
            server.stop()


async def test_tokens_are_refused_not_trusted_while_revocations_cannot_be_read(
    tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away: after MAX_STALE_SECONDS a token gets 503 (a revocation made
    meanwhile could not be seen), anonymous open data still works, /readyz says why."""
    monkeypatch.setattr(tokens, "MAX_STALE_SECONDS", 3.0)
    server = postgres.start(tmp_path / "postgres", options=postgres.FAST_UNSAFE)
    try:
        settings = Settings.from_env(db_timeout_seconds=1.0)
        await prepare_database(server.url, settings)
        conn = await asyncpg.connect(server.url)
        client = await clients.create(conn, name="outage", scope_names="sensors:read")
        await conn.close()
        app = create_app(settings, Servers(server.url, kafka_bootstrap))
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            issued = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client.client_id, client.client_secret or ""),
            )
            bearer = {"Authorization": f"Bearer {issued.json()['access_token']}"}
            viewer = {"query": "{ viewer { clientId } }"}
            assert (await http.post("/graphql", json=viewer, headers=bearer)).status_code == 200

            server.stop()
            await asyncio.sleep(tokens.MAX_STALE_SECONDS + 2 * tokens.REFRESH_SECONDS)
            refused = await http.post("/graphql", json=viewer, headers=bearer)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
            open_data = await http.post("/graphql", json={"query": "{ __typename }"})
            assert open_data.json() == {"data": {"__typename": "Query"}}
            checks = (await http.get("/readyz")).json()["checks"]
            assert "token keys and revocations not read for" in checks["tokens"]

            server = postgres.start(tmp_path / "postgres", port=server.port)
            await asyncio.sleep(2 * tokens.REFRESH_SECONDS)
            again = await http.post("/graphql", json=viewer, headers=bearer)
            assert again.status_code == 200, again.text
    finally:
        if postgres.running_pid(tmp_path / "postgres"):
            server.stop()


async def test_readyz_reports_pending_migrations(pg_server_url: str, kafka_bootstrap: str) -> None:
    async with fresh_database(pg_server_url, "pending") as database:
        app = create_app(Settings.from_env(), Servers(database, kafka_bootstrap))
        async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert "0001_platform.sql" in checks["migrations"]
    assert "ieum migrate" in checks["migrations"]
