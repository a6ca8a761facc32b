"""The Starlette application: GraphQL over HTTP and WebSocket, OAuth, health and metrics,
and whatever the installed domains bring (state, routes, readiness checks)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Send
from starlette.types import Scope as AsgiScope
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema import Schema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from auth import http as bearer
from auth import routes as oauth_routes
from auth import runtime as auth_runtime
from auth.tokens import InvalidToken, TokenChecksUnavailable
from hub import domains as installed
from hub import graphiql, ratelimit
from hub.core import db, monitoring
from hub.core.bus import EventBus
from hub.core.context import Context, build_context
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.health import healthz, metrics_endpoint, readyz
from schema import prepared
from schema.builder import build_schema


class GraphQLEndpoint(GraphQL[Context, None]):
    """strawberry's ASGI view, with the caller taken from the bearer token first.

    A request that sends a token that cannot be used gets 401 before anything executes
    (RFC 6750); one without a token runs as anonymous and sees open data only. A body over
    IEUM_GRAPHQL_MAX_BODY_BYTES gets 413 without being read further. Every refusal is a
    GraphQL-shaped JSON error. A client that accepts `application/graphql-response+json`
    gets it, with 400 for a request that could not run (GraphQL over HTTP).
    """

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope)
        media_type = response_media_type(request.headers.get("accept"))
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
        limit = request.app.state.settings.graphql_max_body_bytes
        body = await bounded_body(request, receive, limit)
        if body is None:
            too_large = (
                f"the request body is larger than {limit:,} bytes (IEUM_GRAPHQL_MAX_BODY_BYTES)"
            )
            response: Response = error_response(too_large, 413, media_type, limit=limit)
        else:
            if scope["method"] == "POST" and await self.run_prepared(
                scope, body, media_type, receive, send
            ):
                return
            try:
                response = await self.run(Request(scope, replay(body, receive)))
            except HTTPException as exc:
                response = error_response(exc.reason, exc.status_code, media_type)
        await response(scope, receive, send)

    async def run_prepared(
        self, scope: AsgiScope, body: bytes, media_type: str, receive: Receive, send: Send
    ) -> bool:
        """Answer a POST of an operation the hub ran before (schema.prepared), without
        strawberry's request pipeline; False, having done nothing, for any other request
        (strawberry answers it). The answer is the one strawberry and create_response
        give: same body, status and headers."""
        request = Request(scope, replay(body, receive))
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return False
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(data, dict) or data.get("extensions") is not None:
            return False
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if not (
            isinstance(query, str)
            and (variables is None or isinstance(variables, dict))
            and (name is None or isinstance(name, str))
        ):
            return False
        hub_schema = cast(Schema, self.schema)
        schema = hub_schema._schema
        context = build_context(request)
        operation = prepared.runnable(schema, query, name, variables, context.settings)
        if operation is None:
            return False
        result = await prepared.run(
            schema, operation, variables, context, hub_schema.execution_context_class
        )
        response_data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            response_data["errors"] = [error.formatted for error in result.errors]
        status, headers = response_status(response_data, media_type)
        content = orjson.dumps(response_data)
        raw = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", media_type.encode()),
            *headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content})
        return True

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """The negotiated media type travels on the sub-response to create_response."""
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers.get("accept"))
        return sub_response

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """strawberry's, with subscriptions refused over HTTP (they would otherwise run as
        a query and fail as our bug): they are served on the WebSocket."""
        method = request_adapter.method
        allowed = OperationType.from_http(method) - {OperationType.SUBSCRIPTION}
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTIONS_OVER_HTTP) from exc
            raise HTTPException(400, exc.as_http_error_reason(method)) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        """503 with Retry-After when nothing could be answered because PostgreSQL is away,
        so clients and load balancers back off as for any unavailable service; a request
        that got part of its answer stays 200 with the failed fields' errors. Under
        application/graphql-response+json, a request that could not run (it did not
        parse, validate or take its variables) is 400 without `data`."""
        media_type = sub_response.media_type or "application/json"
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        if isinstance(response_data, dict):
            status, headers = response_status(response_data, media_type)
            if status == 400:
                sub_response.status_code = 400
        response = super().create_response(response_data, sub_response)
        if status == 503:
            response.status_code = 503
        response.headers.raw.extend(headers)
        if media_type == GRAPHQL_RESPONSE_JSON:
            response.headers["content-type"] = GRAPHQL_RESPONSE_JSON
        return response

    def decode_json(self, data: str | bytes) -> object:
        """json's, with a body nested deeper than Python's recursion limit refused as one
        that is not JSON (400), not raised as our fault."""
        try:
            return json.loads(data)
        except RecursionError:
            raise HTTPException(400, "the JSON body is nested too deeply") from None

    def encode_json(self, data: object) -> str:
        """orjson: a heat map's 30 polygons took 0.38 ms with json.dumps, 0.02 ms here (and
        NaN becomes null, not invalid JSON). Text, not bytes: strawberry sends bytes over
        WebSocket as binary frames, which graphql-transport-ws clients do not read."""
        return orjson.dumps(data).decode()

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from the hub's own copy (hub/graphiql), not a CDN: on a closed network
        strawberry's page never left "Loading…"."""
        return graphiql.page()

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
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
SUBSCRIPTIONS_OVER_HTTP = (
    "Subscriptions are served over WebSocket only: connect to /graphql with the "
    "graphql-transport-ws protocol and subscribe there."
)


def response_media_type(accept: str | None) -> str:
    """application/graphql-response+json when the client accepts it at least as much as
    application/json (the spec's preference), else application/json, as for clients
    that predate it."""
    weights: dict[str, float] = {}
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    wanted = weights.get(GRAPHQL_RESPONSE_JSON, 0.0)
    legacy = max(weights.get("application/json", 0.0), weights.get("*/*", 0.0))
    return GRAPHQL_RESPONSE_JSON if wanted > 0 and wanted >= legacy else "application/json"


def response_status(
    response_data: GraphQLHTTPResponse, media_type: str
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The status of a GraphQL response and its extra headers: 503 with Retry-After when
    PostgreSQL being away left nothing answered; under application/graphql-response+json,
    400 for a request that could not run, whose `data` is dropped (so this may change
    `response_data`); else 200."""
    status, headers = 200, []
    if media_type == GRAPHQL_RESPONSE_JSON and _not_run(response_data):
        response_data.pop("data", None)
        status = 400
    if _database_down(response_data):
        status, headers = 503, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
    return status, headers


def error_response(
    message: str, status_code: int, media_type: str, **extensions: object
) -> JSONResponse:
    """A refusal before GraphQL ran, in the GraphQL response's shape."""
    body = {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST", **extensions}}]}
    return JSONResponse(body, status_code=status_code, media_type=media_type)


async def bounded_body(request: Request, receive: Receive, limit: int) -> bytes | None:
    """The request's body, or None once it is over `limit` bytes: refused by its
    Content-Length before reading, else after reading at most the limit and one chunk."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client left; strawberry sees an empty body and nobody reads it
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for a request whose body was read already: the body once, then the
    connection's own messages (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _not_run(response: GraphQLHTTPResponse) -> bool:
    """No data and no error on a field: the request failed before execution."""
    errors = response.get("errors") or []
    return (
        response.get("data") is None
        and bool(errors)
        and not any(isinstance(error, dict) and error.get("path") for error in errors)
    )


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
        max_subscriptions_per_connection=settings.max_subscriptions_per_client,
    )
    rate = settings.section(ratelimit.RateSettings)
    limiter = ratelimit.limiter_from(rate)

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
            stack.push_async_callback(limiter.aclose)
            stack.push_async_callback(state.db.close)
            stack.callback(setattr, monitoring.POOL, "pool", None)
            await state.bus.start()
            stack.push_async_callback(state.bus.stop)
            await stack.enter_async_context(auth_runtime.lifespan(state, state.db, settings))
            state.recheck = bearer.Rechecker(state.tokens)
            for domain in selected:
                if domain.lifespan is not None:
                    own = await stack.enter_async_context(domain.lifespan(settings, servers))
                    state.domain_states[type(own)] = own
            yield

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *([graphiql.assets] if settings.graphiql else []),
            *oauth_routes.routes,
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *(route for domain in selected for route in domain.routes),
        ],
        lifespan=lifespan,
        # First: the cheapest refusal comes before anything else runs.
        middleware=[Middleware(ratelimit.RateLimitMiddleware, limiter=limiter, settings=rate)],
    )
