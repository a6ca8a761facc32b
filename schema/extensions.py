"""Schema extensions at the GraphQL edge: document cache, public error codes, metrics."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLError, OperationType, parse
from strawberry.extensions import SchemaExtension

from hub.core import db, monitoring
from hub.core.errors import IeumError, UpstreamUnavailable

log = logging.getLogger(__name__)


# Apps send the same few documents over and over: parse each once.
DOCUMENT_CACHE_SIZE = 1000


@lru_cache(maxsize=DOCUMENT_CACHE_SIZE)
def _parse(query: str, options: tuple[tuple[str, Any], ...]) -> DocumentNode:
    return parse(query, **dict(options))


class DocumentCache(SchemaExtension):
    """Parsed documents from an LRU cache.

    Unlike strawberry's ParserCache, a document that does not parse is left to strawberry,
    which then reports the syntax error as a normal result that the other extensions see.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            with contextlib.suppress(GraphQLError):
                options = tuple(sorted(context.parse_options.items()))
                context.graphql_document = _parse(context.query, options)
        yield


class CurrentCaller(SchemaExtension):
    """Each operation on a WebSocket re-checks the token given at connection_init."""

    def on_execute(self) -> Iterator[None]:
        recheck = getattr(self.execution_context.context, "recheck", None)
        if recheck is not None:
            recheck()
        yield


DATABASE_UNAVAILABLE = "PostgreSQL, the hub's database, is not answering; retry in a few seconds."


class PublicErrors(SchemaExtension):
    """Every error gets `extensions.code`; unexpected ones are masked and logged.

    PostgreSQL being away is not a bug: those fields answer UPSTREAM_UNAVAILABLE, and the
    outage is logged once by the pool's watch rather than as a traceback per request.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        result.errors = [self._public(error) for error in result.errors]

    def _public(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, IeumError):
            return error
        if original is None:  # syntax, validation or variable errors: the client's to fix
            error.extensions = {"code": "GRAPHQL_VALIDATION_FAILED", **(error.extensions or {})}
            return error
        if db.unavailable(original):
            pool = getattr(self.execution_context.context, "db", None)
            if isinstance(pool, db.Pool):
                pool.outage.failed(original)
            public = UpstreamUnavailable(DATABASE_UNAVAILABLE, upstream="postgresql")
            return GraphQLError(
                DATABASE_UNAVAILABLE,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                original_error=public,
                extensions=public.extensions,
            )
        log.error("graphql.unexpected_error path=%s", error.path, exc_info=original)
        return GraphQLError(
            "Unexpected error.",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR"},
        )


class OperationMetrics(SchemaExtension):
    """Counts and times each operation, and counts its errors by code."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        name = monitoring.operation_label(context.operation_name)
        try:
            kind = context.operation_type.value
        except RuntimeError:  # the document did not parse
            kind = OperationType.QUERY.value
        monitoring.GRAPHQL_REQUESTS.labels(name, kind).inc()
        monitoring.GRAPHQL_LATENCY.labels(name).observe(time.perf_counter() - started)
        errors = context.result.errors if context.result else context.pre_execution_errors
        for error in errors or ():
            code = (error.extensions or {}).get("code", "INTERNAL_SERVER_ERROR")
            monitoring.GRAPHQL_ERRORS.labels(name, str(code)).inc()
