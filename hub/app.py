"""The Starlette application: GraphQL over HTTP and WebSocket, health and metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from hub import db, metrics
from hub.bus import EventBus
from hub.context import Context, build_context
from hub.health import healthz, metrics_endpoint, readyz
from hub.runtime import Services
from hub.settings import Settings
from schema.builder import build_schema

log = logging.getLogger(__name__)


class GraphQLEndpoint(GraphQL[Context, None]):
    async def get_context(self, request: Request | WebSocket, response: object) -> Context:
        return build_context(request)


def create_app(
    settings: Settings, services: Services, domains: Sequence[str] | None = None
) -> Starlette:
    """The hub for `domains` (all by default) on the given PostgreSQL and broker."""
    assert services.database_url and services.kafka_bootstrap
    graphql = GraphQLEndpoint(
        build_schema(domains),
        graphql_ide="graphiql" if settings.graphiql else None,
        # Only the maintained protocol: legacy `graphql-ws` had auth-bypass CVEs.
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.db = await db.create_pool(services.database_url, settings)
        metrics.POOL.pool = app.state.db
        app.state.bus = EventBus(services.kafka_bootstrap, timeout=settings.db_timeout_seconds)
        try:
            await app.state.bus.start()
            yield
        finally:
            await app.state.bus.stop()
            metrics.POOL.pool = None
            await app.state.db.close()

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
