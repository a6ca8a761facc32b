"""/readyz follows the database going away and coming back."""

from pathlib import Path

import httpx
import pytest

from hub.app import create_app
from hub.bootstrap import prepare_database
from hub.embedded import postgres
from hub.runtime import Services
from hub.serve import serving
from hub.settings import Settings
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
        app = create_app(settings, Services(server.url, kafka_bootstrap))
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


async def test_readyz_reports_pending_migrations(pg_server_url: str, kafka_bootstrap: str) -> None:
    async with fresh_database(pg_server_url, "pending") as database:
        app = create_app(Settings.from_env(), Services(database, kafka_bootstrap))
        async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert "0001_platform.sql" in checks["migrations"]
    assert "ieum migrate" in checks["migrations"]
