"""PostgreSQL going away behind a TCP proxy: refusing connections, then dropping packets.

The hub must say UPSTREAM_UNAVAILABLE (503 with Retry-After when nothing could be
answered), answer within its time limits, log each outage once, and recover by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from hub.app import create_app
from hub.core import db
from hub.core.servers import Servers
from hub.serve import serving
from tests.conftest import local_settings
from tests.faulty_proxy import FaultyProxy, proxy_to

pytestmark = pytest.mark.slow

DISTRICT = {"query": '{ district(code: "11110") { name } }'}
MIXED = {"query": '{ __typename district(code: "11110") { name } }'}
# Generous: the limits below are 1 s to get a connection and 2 s (+1) per statement.
BOUND_SECONDS = 8.0


def via(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{auth}{at}127.0.0.1:{port}"))


@pytest.fixture
async def proxied(migrated_url: str) -> AsyncIterator[tuple[FaultyProxy, str]]:
    parts = urlsplit(migrated_url)
    async with proxy_to(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy, via(migrated_url, proxy.port)


@pytest.fixture
async def hub(proxied: tuple[FaultyProxy, str], kafka_bootstrap: str) -> AsyncIterator[str]:
    settings = local_settings(db_timeout_seconds=1.0, db_statement_timeout_seconds=2.0)
    app = create_app(settings, Servers(proxied[1], kafka_bootstrap))
    async with serving(app, settings.port) as url:
        yield url


def outage_lines(caplog: pytest.LogCaptureFixture) -> tuple[int, int, int]:
    """(outage starts, outage ends, unexpected errors) logged so far."""
    messages = [r.getMessage() for r in caplog.records]
    return (
        sum(m.startswith("database.unavailable") for m in messages),
        sum(m.startswith("database.available_again") for m in messages),
        sum(m.startswith("graphql.unexpected_error") for m in messages),
    )


async def until_answered(http: httpx.AsyncClient, seconds: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = await http.post("/graphql", json=DISTRICT)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE", "upstream": "postgresql"}
    assert "PostgreSQL" in error["message"] and "retry" in error["message"]


async def test_a_refusing_database_is_unavailable_not_a_bug(
    proxied: tuple[FaultyProxy, str], hub: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = proxied[0]
    caplog.set_level(logging.WARNING)
    async with httpx.AsyncClient(base_url=hub, timeout=30) as http:
        assert (await http.post("/graphql", json=DISTRICT)).status_code == 200

        await proxy.set("refuse")
        for _ in range(20):
            started = time.monotonic()
            assert_unavailable(await http.post("/graphql", json=DISTRICT))
            assert time.monotonic() - started < BOUND_SECONDS
        partial = await http.post("/graphql", json=MIXED)
        assert partial.status_code == 200  # one field answered: the rest is the error's
        assert partial.json()["data"] == {"__typename": "Query", "district": None}
        assert partial.json()["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert outage_lines(caplog) == (1, 0, 0)

        await proxy.set("pass")
        back = await until_answered(http)
        assert back.json() == {"data": {"district": {"name": "종로구"}}}
        for _ in range(50):  # the watch notices within about a second
            if outage_lines(caplog)[1]:
                break
            await asyncio.sleep(0.1)
        assert outage_lines(caplog) == (1, 1, 0)


async def test_dropped_packets_answer_in_time_and_readyz_keeps_its_budget(
    proxied: tuple[FaultyProxy, str], hub: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = proxied[0]
    caplog.set_level(logging.WARNING)
    async with httpx.AsyncClient(base_url=hub, timeout=60) as http:
        assert (await http.post("/graphql", json=DISTRICT)).status_code == 200

        await proxy.set("blackhole")
        started = time.monotonic()
        answers = await asyncio.gather(*(http.post("/graphql", json=DISTRICT) for _ in range(15)))
        assert time.monotonic() - started < BOUND_SECONDS
        for answer in answers:
            assert_unavailable(answer)
        started = time.monotonic()
        ready = await http.get("/readyz")
        assert time.monotonic() - started < 1.0 + 1.0  # its budget (1 s) and some slack
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "no answer in time"
        assert outage_lines(caplog)[::2] == (1, 0)

        await proxy.set("pass")
        back = await until_answered(http)
        assert back.json() == {"data": {"district": {"name": "종로구"}}}
        assert (await http.get("/readyz")).status_code == 200


def test_database_failures_are_told_from_bugs() -> None:
    import asyncpg

    assert db.unavailable(asyncpg.CannotConnectNowError("starting up"))
    assert db.unavailable(asyncpg.QueryCanceledError("statement timeout"))
    assert not db.unavailable(TimeoutError())  # not raised inside asyncpg
    assert not db.unavailable(ValueError("a bug"))
