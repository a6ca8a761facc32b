"""The Starlette application: GraphQL over HTTP and WebSocket, OAuth, health and metrics,
and whatever the installed domains bring (state, routes, readiness checks)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from auth import http as bearer
from auth import routes as oauth_routes
from auth import runtime as auth_runtime
from auth.tokens import InvalidToken, TokenChecksUnavailable
from hub import domains as installed
from hub.core import db, monitoring
from hub.core.bus import EventBus
from hub.core.context import Context, build_context
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.health import healthz, metrics_endpoint, readyz
from schema.builder import build_schema


class GraphQLEndpoint(GraphQL[Context, None]):
    """strawberry's ASGI view, with the caller taken from the bearer token first.

    A request that sends a token that cannot be used gets 401 before anything executes
    (RFC 6750); one without a token runs as anonymous and sees open data only.
    """

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            try:
                caller = bearer.caller_from_header(
                    request.app.state.tokens, request.headers.get("authorization")
                )
            except InvalidToken as exc:
                await bearer.unauthorized(str(exc))(scope, receive, send)
                return
            except TokenChecksUnavailable as exc:
                await bearer.unavailable(str(exc))(scope, receive, send)
                return
            scope.setdefault("state", {})["caller"] = caller
        await super().__call__(scope, receive, send)

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        """503 with Retry-After when nothing could be answered because PostgreSQL is away,
        so clients and load balancers back off as for any unavailable service; a request
        that got part of its answer stays 200 with the failed fields' errors."""
        response = super().create_response(response_data, sub_response)
        if isinstance(response_data, dict) and _database_down(response_data):
            response.status_code = 503
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    def encode_json(self, data: object) -> str:
        """orjson: a heat map's 30 polygons took 0.38 ms with json.dumps, 0.02 ms here (and
        NaN becomes null, not invalid JSON). Text, not bytes: strawberry sends bytes over
        WebSocket as binary frames, which graphql-transport-ws clients do not read."""
        return orjson.dumps(data).decode()

    async def get_context(self, request: Request | WebSocket, response: object) -> Context:
        return build_context(request)

    async def on_ws_connect(self, context: Context) -> None:
        """The token travels in connection_init: {"Authorization": "Bearer …"}."""
        params = context.connection_params or {}
        header = params.get("Authorization") or params.get("authorization")
        try:
            context.caller = bearer.caller_from_header(context.connection.app.state.tokens, header)
        except (InvalidToken, TokenChecksUnavailable) as exc:
            raise ConnectionRejectionError({"reason": str(exc)}) from exc
        if not context.caller.anonymous:
            context.token = str(header).partition(" ")[2].strip()


RETRY_AFTER_SECONDS = 5  # as for token checks that cannot run (auth.http.unavailable)


def _upstream(error: object) -> object:
    """The upstream a GraphQL error names in its extensions, if any."""
    extensions = error.get("extensions") if isinstance(error, dict) else None
    return extensions.get("upstream") if isinstance(extensions, dict) else None


def _database_down(response: GraphQLHTTPResponse) -> bool:
    """Every root field is null and every error is PostgreSQL being unavailable."""
    errors = response.get("errors") or []
    data = response.get("data")
    return (
        bool(errors)
        and (data is None or all(value is None for value in data.values()))
        and all(_upstream(error) == "postgresql" for error in errors)
    )


def create_app(
    settings: Settings, servers: Servers, domains: Sequence[str] | None = None
) -> Starlette:
    """The hub for the named domains (all installed ones by default) on the given
    PostgreSQL and broker."""
    selected = installed.by_names(domains)
    graphql = GraphQLEndpoint(
        build_schema(selected),
        graphql_ide="graphiql" if settings.graphiql else None,
        # Only the maintained protocol: legacy `graphql-ws` had auth-bypass CVEs.
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = app.state
        state.settings = settings
        state.domains = selected
        state.domain_states = {}
        state.db = await db.create_pool(servers.database, settings)
        monitoring.POOL.pool = state.db
        state.bus = EventBus(servers.broker, timeout=settings.db_timeout_seconds)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(state.db.close)
            stack.callback(setattr, monitoring.POOL, "pool", None)
            await state.bus.start()
            stack.push_async_callback(state.bus.stop)
            await stack.enter_async_context(auth_runtime.lifespan(state, state.db, settings))
            state.recheck = bearer.rechecker(state.tokens)
            for domain in selected:
                if domain.lifespan is not None:
                    own = await stack.enter_async_context(domain.lifespan(settings, servers))
                    state.domain_states[type(own)] = own
            yield

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *oauth_routes.routes,
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *(route for domain in selected for route in domain.routes),
        ],
        lifespan=lifespan,
    )
