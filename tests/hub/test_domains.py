"""A domain is its own files plus one registration line.

`notes` below is a whole (small) domain: GraphQL field, settings section, scope, per-process
state, HTTP route, readiness check, command and worker. Registering it is one added entry
in `schema.installed.DOMAINS`; nothing in `hub/` changes, and every part is live.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import strawberry
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import schema.installed
from auth import scopes
from hub import domains
from hub.app import create_app
from hub.cli import _parser
from hub.core import db
from hub.core import settings as settings_module
from hub.core.context import Info
from hub.core.domain import Command, Domain, ScopeInfo, Worker
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.serve import _background, serving
from tests.conftest import local_settings

pytestmark = pytest.mark.db


class NotesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_", frozen=True, extra="ignore")
    notes_limit: int = 3


@dataclass
class NotesState:
    limit: int
    started: bool


@contextlib.asynccontextmanager
async def notes_lifespan(settings: Settings, servers: Servers) -> AsyncIterator[NotesState]:
    state = NotesState(settings.section(NotesSettings).notes_limit, started=True)
    yield state
    state.started = False


@strawberry.type
class NotesQuery:
    @strawberry.federation.field(requires_scopes=[["notes:read"]])
    def note_limit(self, info: Info) -> int | None:
        return info.context.state(NotesState).limit


async def hook(request: Request) -> JSONResponse:
    return JSONResponse({"received": True})


async def always_ready(states: object) -> None:
    return None


ticks: list[str] = []


async def tick(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    ticks.append("started")
    await stop.wait()


NOTES = Domain(
    name="notes",
    description="a test domain",
    requires=("platform",),
    query=NotesQuery,
    settings=NotesSettings,
    scopes=(ScopeInfo("notes:read", "메모를 봅니다.", "Read notes."),),
    lifespan=notes_lifespan,
    workers=(Worker("tick", "ticks", tick, in_serve=lambda settings: True),),
    commands=(Command("count", "count notes", lambda settings, servers, args: 0),),
    readiness={"store": always_ready},
    routes=(Route("/notes/hook", hook, methods=["POST"]),),
)


@pytest.fixture
def notes_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The one registration line, undone afterwards (catalogs restored as they were)."""
    catalog, sections = dict(scopes.CATALOG), list(settings_module._SECTIONS)
    monkeypatch.setattr(schema.installed, "DOMAINS", (*schema.installed.DOMAINS, NOTES))
    domains.installed.cache_clear()
    yield
    monkeypatch.undo()  # before loading again, or the test domain registers itself anew
    domains.installed.cache_clear()
    scopes.CATALOG.clear()
    scopes.CATALOG.update(catalog)
    settings_module._SECTIONS[:] = sections
    domains.installed()


async def test_a_registered_domain_is_live_in_every_part(
    notes_installed: None, monkeypatch: pytest.MonkeyPatch, migrated_url: str,
    kafka_bootstrap: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("IEUM_NOTES_LIMIT", "7")
    assert "notes" in domains.installed()
    assert "notes:read" in scopes.names()
    settings = local_settings()
    assert settings.section(NotesSettings).notes_limit == 7

    servers = Servers(migrated_url, kafka_bootstrap)
    app = create_app(settings, servers)
    async with serving(app, settings.port) as url, httpx.AsyncClient(base_url=url) as http:
        metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert "notes:read" in metadata["scopes_supported"]
        refused = (await http.post("/graphql", json={"query": "{ noteLimit }"})).json()
        assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert (await http.post("/notes/hook")).json() == {"received": True}
        ready = (await http.get("/readyz")).json()
        assert ready["checks"]["notes.store"] == "ok"
        state = app.state.domain_states[NotesState]
        assert (state.limit, state.started) == (7, True)
    assert state.started is False  # its lifespan ended with the app

    args = _parser().parse_args(["notes", "count"])
    assert args.run.args[0].name == "count"
    background = _background(settings, servers, [NOTES])
    await asyncio.sleep(0.05)
    assert [task.get_name() for task in background.tasks] == ["notes.tick"]
    assert ticks == ["started"]
    await background.stop()


async def test_a_domain_requiring_one_not_installed_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orphan = Domain(name="orphan", requires=("nowhere",), query=NotesQuery)
    monkeypatch.setattr(schema.installed, "DOMAINS", (*schema.installed.DOMAINS, orphan))
    domains.installed.cache_clear()
    try:
        with pytest.raises(ValueError, match="'orphan' requires nowhere"):
            domains.installed()
    finally:
        monkeypatch.undo()
        domains.installed.cache_clear()
        domains.installed()


async def test_a_domains_database_settings_reach_every_connection(migrated_url: str) -> None:
    """The sensors manifest asks for custom plans; the kernel's pools start with it."""
    assert domains.installed()["sensors"].database_settings == {
        "plan_cache_mode": "force_custom_plan"
    }
    pool = await db.create_pool(migrated_url, Settings.from_env())
    try:
        assert await pool.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
    finally:
        await pool.close()


def test_two_domains_wanting_one_setting_differently_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generic = Domain(
        name="generic",
        query=NotesQuery,
        database_settings={"plan_cache_mode": "force_generic_plan"},
    )
    monkeypatch.setattr(schema.installed, "DOMAINS", (*schema.installed.DOMAINS, generic))
    monkeypatch.setattr(db, "SERVER_SETTINGS", {})
    domains.installed.cache_clear()
    try:
        with pytest.raises(ValueError, match="'generic' needs PostgreSQL setting plan_cache_mode"):
            domains.installed()
    finally:
        monkeypatch.undo()
        domains.installed.cache_clear()
        domains.installed()
