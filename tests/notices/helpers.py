"""A notices world for end-to-end tests: the whole hub over HTTP with the notices worker
running beside it, apps with their webhook receivers, citizens who consent through the
consent page (authorization code + PKCE), an agency's publishing client and a city
operator."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from hub.core import db
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.notices import signing
from schema.notices.runtime import run_worker
from tests.conftest import local_settings
from tests.notices.receiver import Receiver, receiving
from tests.oauth import REDIRECT, Hub, code_for

APP_SCOPES = "notices:receive notices:deliver"


@dataclass
class App:
    client_id: str
    secret: str
    token: str  # the app's own (client credentials, notices:deliver)
    receiver: Receiver


@dataclass
class Citizen:
    user_id: str
    token: str  # given to one app through the consent page


@dataclass
class World:
    url: str
    pool: asyncpg.Pool
    settings: Settings
    clients: Hub
    operator: str = ""
    receivers: list[Receiver] = field(default_factory=list)
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def gql(
        self, token: str | None, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
        return dict(response.json())

    async def data(self, token: str | None, query: str, **variables: Any) -> dict[str, Any]:
        """The answer's data, failing the test on any error."""
        answer = await self.gql(token, query, variables)
        assert not answer.get("errors"), answer
        return dict(answer["data"])

    async def app(self) -> App:
        """An app with a webhook receiver, registered through GraphQL."""
        made = await self.clients.client(
            name="알림 앱", scope_names=APP_SCOPES, redirect_uris=[REDIRECT]
        )
        token = await self.client_token(made.client_id, made.client_secret or "", "notices:deliver")
        receiver = await self.stack.enter_async_context(receiving())
        registered = await self.data(
            token,
            "mutation($u: String!, $k: String!) {"
            " registerNoticeWebhook(url: $u, idempotencyKey: $k) { url secret } }",
            u=receiver.url,
            k=str(uuid.uuid4()),
        )
        receiver.secrets.append(signing.key_of(registered["registerNoticeWebhook"]["secret"]))
        return App(made.client_id, made.client_secret or "", token, receiver)

    async def citizen(self, app: App) -> Citizen:
        """A new citizen who gave `app` notices:receive on the consent page."""
        code, verifier = await code_for(self.clients, app.client_id, scope="notices:receive")
        async with httpx.AsyncClient(base_url=self.url) as http:
            tokens = await http.post(
                "/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                },
                auth=(app.client_id, app.secret),
            )
        token = str(tokens.json()["access_token"])
        return Citizen(_claims(token)["sub"], token)

    async def agency(self, agency: str) -> str:
        """A token of a client the city registered to publish for `agency`."""
        made = await self.clients.client(name=f"{agency} system", scope_names="notices:publish")
        await self.data(
            self.operator,
            "mutation($c: String!, $a: String!) {"
            " registerNoticePublisher(clientId: $c, agency: $a) }",
            c=made.client_id,
            a=agency,
        )
        return await self.client_token(made.client_id, made.client_secret or "", "notices:publish")

    async def client_token(self, client_id: str, secret: str, scope: str) -> str:
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": scope},
                auth=(client_id, secret),
            )
        return str(response.json()["access_token"])

    async def settled(self, seconds: float = 15) -> None:
        """Wait until no released delivery is pending (the worker sent them all)."""
        async with asyncio.timeout(seconds):
            while True:
                pending = await self.pool.fetchval(
                    "SELECT count(*) FROM notice_deliveries"
                    " WHERE status = 'pending' AND release_at <= now()"
                )
                if not pending:
                    return
                await asyncio.sleep(0.05)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@asynccontextmanager
async def notices_world(
    migrated_url: str, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[World]:
    from hub.app import create_app
    from hub.serve import serving

    overrides.setdefault("first_retry_seconds", 0.05)
    overrides.setdefault("longest_retry_seconds", 0.2)
    # No quiet hours unless a test asks: otherwise a non-urgent notice sent after 21:00 KST
    # waits for the morning, and the test waiting for it fails by the clock.
    overrides.setdefault("day_starts_hour", 0)
    overrides.setdefault("day_ends_hour", 24)
    settings = local_settings(**overrides)
    servers = Servers(migrated_url, kafka_bootstrap)
    app = create_app(settings, servers)
    pool = await db.create_pool(migrated_url, settings)
    stop = asyncio.Event()
    try:
        async with serving(app, settings.port) as url:
            world = World(url, pool, settings, Hub(url, pool))
            world.operator = await world.clients.token("notices:operate")
            worker = asyncio.create_task(run_worker(settings, servers, stop))
            try:
                async with world.stack:
                    yield world
            finally:
                stop.set()
                await worker
    finally:
        await pool.close()
