"""Schema extensions at the GraphQL edge: document cache and limits, input checks, public
error codes and their logging, metrics, and subscriptions that end with their token."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from inspect import isawaitable
from typing import Any, ClassVar

from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    StringValueNode,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType as StrawberryOperationType

from hub.core import db, monitoring
from hub.core.errors import BadUserInput, IeumError, Unauthenticated, UpstreamUnavailable

log = logging.getLogger(__name__)

# Apps send the same few documents over and over: parse and validate each once. A parsed
# document takes about 100 bytes of memory per byte of its text, so the cache is bounded
# by the bytes of the texts it holds, and a large document is never kept.
DOCUMENT_CACHE_SIZE = 1000
DOCUMENT_CACHE_BYTES = 1024 * 1024  # of text: about 100 MB of parsed documents
CACHED_DOCUMENT_MAX_BYTES = 16 * 1024
MAX_TOKENS = 15_000  # without settings (Settings.graphql_max_tokens)


@dataclass(frozen=True, slots=True)
class Prepared:
    """An operation of a cached document that parsed and validated against `schema`: it
    may run without going through those steps again (schema.prepared)."""

    schema: weakref.ref[GraphQLSchema]
    document: DocumentNode
    operation_type: StrawberryOperationType
    operation_name: str | None  # as strawberry names it: the one asked for, or the first's
    # the (max cost, max representations) it was found within, sent without variables
    within: set[tuple[int, int]] = field(default_factory=set)


@dataclass
class CachedDocument:
    document: DocumentNode
    size: int
    # validation errors by the rules they were found with
    validated: dict[tuple[type[ASTValidationRule], ...], list[GraphQLError]] = field(
        default_factory=dict
    )
    # valid operations by (id of their schema, the operation name the client sent)
    prepared: dict[tuple[int, str | None], Prepared] = field(default_factory=dict)


class DocumentStore:
    """Parsed documents by their text and parse options, least recently used dropped first
    once there are `max_entries` of them or their texts add up to more than `max_bytes`."""

    def __init__(self, max_entries: int, max_bytes: int, max_document_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_document_bytes = max_document_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, tuple[Any, ...]], CachedDocument] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: str, options: tuple[Any, ...]) -> CachedDocument | None:
        entry = self._entries.get((query, options))
        if entry is not None:
            self._entries.move_to_end((query, options))
        return entry

    def put(
        self, query: str, options: tuple[Any, ...], document: DocumentNode
    ) -> CachedDocument | None:
        """The new entry, or None for a text larger than `max_document_bytes`."""
        size = len(query)
        if size > self.max_document_bytes:
            return None
        entry = self._entries[(query, options)] = CachedDocument(document, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.size
        return entry


DOCUMENTS = DocumentStore(DOCUMENT_CACHE_SIZE, DOCUMENT_CACHE_BYTES, CACHED_DOCUMENT_MAX_BYTES)


class DocumentCache(SchemaExtension):
    """Documents parsed with a token limit, and parsed and validated once while cached.

    A document that does not parse (or is too large to keep) is left to strawberry, which
    parses it with the same limit and reports a syntax error as a normal result that the
    other extensions see. Validation is cached with the document it belongs to, so nothing
    keeps a document alive once the cache dropped it.
    """

    def __init__(self) -> None:
        self.entry: CachedDocument | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        settings = getattr(context.context, "settings", None)
        context.parse_options["max_tokens"] = getattr(settings, "graphql_max_tokens", MAX_TOKENS)
        query = context.query
        if query and context.graphql_document is None:
            options = tuple(sorted(context.parse_options.items()))
            self.entry = DOCUMENTS.get(query, options)
            if self.entry is None and len(query) <= DOCUMENTS.max_document_bytes:
                try:
                    document = parse(query, **context.parse_options)
                except GraphQLError:
                    pass  # strawberry reports it
                else:
                    self.entry = DOCUMENTS.put(query, options, document)
            if self.entry is not None:
                context.graphql_document = self.entry.document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        entry = self.entry
        if (
            entry is not None
            and entry.document is context.graphql_document
            and context.pre_execution_errors is None
            and context.validation_rules
        ):
            rules = tuple(context.validation_rules)
            schema = context.schema._schema
            errors = entry.validated.get(rules)
            if errors is None:
                errors = validate_document(schema, entry.document, rules)
                entry.validated[rules] = errors
            context.pre_execution_errors = errors
            if not errors:
                asked = context._provided_operation_name  # what the client sent
                entry.prepared[(id(schema), asked)] = Prepared(
                    weakref.ref(schema),
                    entry.document,
                    context.operation_type,
                    context.operation_name,
                )
        yield


# Inputs

NUL = "\x00"


def _nul_message(name: str) -> str:
    return (
        f"{name} contains a NUL character (\\u0000), which no text the hub stores or "
        "compares can hold: remove it"
    )


class NoNulStrings(ASTValidationRule):
    """A string literal with U+0000 is refused before execution: PostgreSQL's text cannot
    hold it, and the statement would fail as if the hub were at fault."""

    argument: str | None = None

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        self.argument = node.name.value

    def leave_argument(self, node: ArgumentNode, *_: Any) -> None:
        self.argument = None

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if NUL in node.value:
            name = f"argument '{self.argument}'" if self.argument else "a default value"
            extensions: dict[str, Any] = {"code": BadUserInput.code}
            if self.argument:
                extensions["argument"] = self.argument
            self.report_error(GraphQLError(_nul_message(name), node, extensions=extensions))


def _nul_at(value: object, path: str) -> str | None:
    """Where in a variable's value (from JSON) a string holds U+0000, if anywhere; a loop,
    not recursion, for values nested as deep as JSON allows."""
    pending = [(value, path)]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if NUL in value:
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                pending += [(key, path), (item, f"{path}.{key}")]
        elif isinstance(value, list):
            pending += [(item, f"{path}.{i}") for i, item in enumerate(value)]
    return None


class NoNulVariables(SchemaExtension):
    """The variables' strings, checked as NoNulStrings checks literals."""

    def on_execute(self) -> Iterator[None]:
        found = nul_variable(self.execution_context.variables)
        if found is not None:
            name, where = found
            raise GraphQLError(
                _nul_message(f"Variable '{where}'"),
                extensions={"code": BadUserInput.code, "variable": name},
            )
        yield


def nul_variable(variables: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The first variable with a NUL in its value, and where in it, if any."""
    for name, value in (variables or {}).items():
        where = _nul_at(value, f"${name}")
        if where is not None:
            return name, where
    return None


class CurrentCaller(SchemaExtension):
    """Each operation on a WebSocket re-checks the token given at connection_init."""

    def on_execute(self) -> Iterator[None]:
        recheck = getattr(self.execution_context.context, "recheck", None)
        if recheck is not None:
            recheck()
        yield


# Errors

DATABASE_UNAVAILABLE = "PostgreSQL, the hub's database, is not answering; retry in a few seconds."
OURS = {IeumError.code, UpstreamUnavailable.code}  # the codes of errors the client did not cause


def public_code(error: GraphQLError) -> str:
    """The code a client sees for an error as graphql-core or a resolver left it."""
    original = error.original_error
    if isinstance(original, IeumError):
        return original.code
    code = (error.extensions or {}).get("code")
    if code is not None:
        return str(code)
    if original is None:  # syntax or validation: the document is the client's to fix
        return "GRAPHQL_VALIDATION_FAILED"
    if isinstance(original, GraphQLError):  # graphql-core's own: a variable's value is wrong
        return BadUserInput.code
    if db.unavailable(original):
        return UpstreamUnavailable.code
    return IeumError.code


def log_errors(errors: list[GraphQLError]) -> None:
    """Our faults at ERROR with their traceback; the client's mistakes one line at INFO;
    an upstream away one line at WARNING (PostgreSQL's outage is logged once by the
    pool's watch instead)."""
    for error in errors:
        code = public_code(error)
        original = error.original_error
        if code == IeumError.code:
            log.error("graphql.unexpected_error path=%s", error.path, exc_info=original)
        elif code == UpstreamUnavailable.code:
            if original is None or not db.unavailable(original):
                log.warning("graphql.upstream_unavailable path=%s: %s", error.path, error.message)
        else:
            log.info("graphql.client_error code=%s path=%s: %s", code, error.path, error.message)


class PublicErrors(SchemaExtension):
    """Every error gets `extensions.code`; unexpected ones are masked (and logged by the
    schema's `process_errors`, see log_errors).

    PostgreSQL being away is not a bug: those fields answer UPSTREAM_UNAVAILABLE, and the
    outage is logged once by the pool's watch rather than as a traceback per request.
    Results streamed over a WebSocket are made public one by one, as they are sent.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            pool = getattr(self.execution_context.context, "db", None)
            result.errors = [public_error(error, pool) for error in result.errors]

    def on_stream_result(self, result: Any) -> Iterator[None]:
        if isinstance(result, ExecutionResult) and result.errors:
            pool = getattr(self.execution_context.context, "db", None)
            result.errors = [public_error(error, pool) for error in result.errors]
        yield


def public_error(error: GraphQLError, pool: object) -> GraphQLError:
    """The error as a client sees it: with its code, masked if it is our fault; a
    PostgreSQL outage is told to the request's pool (`pool`), which logs it once."""
    code = public_code(error)
    original = error.original_error
    if isinstance(original, IeumError):
        return error
    if code not in OURS:
        error.extensions = {**(error.extensions or {}), "code": code}
        return error
    if code == UpstreamUnavailable.code and original is not None:
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
    return GraphQLError(
        "Unexpected error.",
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": IeumError.code},
    )


class OperationMetrics(SchemaExtension):
    """Counts and times each operation, and counts its errors by code."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except RuntimeError:  # the document did not parse
            kind = OperationType.QUERY.value
        errors = context.result.errors if context.result else context.pre_execution_errors
        record_operation(context.operation_name, kind, started, errors)


@functools.cache  # labels are bounded (operation_label); looking a child up takes a lock
def _operation_metrics(label: str, kind: str) -> tuple[Any, Any]:
    """The request counter and latency histogram of one operation label and kind."""
    return (
        monitoring.GRAPHQL_REQUESTS.labels(label, kind),
        monitoring.GRAPHQL_LATENCY.labels(label),
    )


def record_operation(
    name: str | None, kind: str, started: float, errors: list[GraphQLError] | None
) -> None:
    """One operation in the metrics: its count, time since `started`, errors by code."""
    label = monitoring.operation_label(name)
    requests, latency = _operation_metrics(label, kind)
    requests.inc()
    latency.observe(time.perf_counter() - started)
    for error in errors or ():
        code = (error.extensions or {}).get("code", IeumError.code)
        monitoring.GRAPHQL_ERRORS.labels(label, str(code)).inc()


# Subscriptions

RECHECK_SECONDS = 1.0  # revocations reach the hub within auth's refresh (2 s), then this
CHECKS_PER_TURN = 200  # token checks in one turn of the event loop


class TokenWatch:
    """Ends a subscription once the token of its WebSocket expires or is revoked, even
    while no event comes: the token is checked every RECHECK_SECONDS (by the loop's
    _Ticker, with every other watch) and at its expiry (by a timer of its own), and a
    subscription waiting for its next event is woken by cancelling that wait (the one
    thing that interrupts an await), which then ends it with the error.
    """

    def __init__(self, token: str, verify: Callable[[str], Any], expires_at: datetime | None):
        self.token = token
        self.verify = verify
        self.expires_at = expires_at
        self.ended: IeumError | None = None
        self.waiting: asyncio.Task[Any] | None = None  # the task awaiting the next event
        self.expiry: asyncio.TimerHandle | None = None  # set for the token's expiry
        # The verifier's `standing()` when the token last checked out (None: unknown):
        # until it changes, only the expiry (the timer) can end the token.
        self.standing: object = None

    def _check(self, verified: dict[tuple[Any, str], Any] | None = None) -> None:
        """`verified`: the callers found this tick, by verifier and token."""
        if self.ended is not None:
            return
        key = (self.verify, self.token)
        if verified is not None and key in verified:
            caller = verified[key]
        else:
            try:
                caller = self.verify(self.token)
            except IeumError as exc:  # token checks unavailable: a revocation may be missed
                self._end(exc)
                return
            if verified is not None:
                verified[key] = caller
        now = datetime.now(UTC)
        if caller is not None:
            self.expires_at = caller.expires_at
        if self.expires_at is not None and self.expires_at <= now:
            self._end(
                Unauthenticated(
                    f"token expired at {self.expires_at:%Y-%m-%dT%H:%M:%SZ}: the subscription "
                    "ended; connect again with a new access token"
                )
            )
        elif caller is None:
            self._end(
                Unauthenticated(
                    "token revoked: the subscription ended; connect again with a new access token"
                )
            )
        else:
            self._arm_expiry(now)

    def _arm_expiry(self, now: datetime) -> None:
        """A timer at the token's expiry, unless one is set (a timer that fired a little
        early sets the next)."""
        if self.expires_at is None or self.expiry is not None:
            return
        left = (self.expires_at - now).total_seconds()
        self.expiry = asyncio.get_running_loop().call_later(max(0.0, left), self._expired)

    def _expired(self) -> None:
        self.expiry = None
        self._check()

    def _end(self, error: IeumError) -> None:
        self.ended = error
        if self.waiting is not None:
            self.waiting.cancel()

    async def events(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The source's events until it ends, or until the token does (then the error)."""
        ticker = _Ticker.of(asyncio.get_running_loop())
        ticker.add(self)
        self._arm_expiry(datetime.now(UTC))
        try:
            while True:
                if self.ended is not None:
                    raise self.ended
                task = self.waiting = asyncio.current_task()
                try:
                    event = await anext(source)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if self.ended is None or task is None or task.uncancel() > 0:
                        raise  # not (only) ours: the subscription is being stopped
                    raise self.ended from None
                finally:
                    self.waiting = None
                yield event
        finally:
            ticker.discard(self)
            if self.expiry is not None:
                self.expiry.cancel()
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()


class _Ticker:
    """The TokenWatches of one event loop, checked together by one timer every
    RECHECK_SECONDS, each token verified once a tick however many subscriptions hold it.
    A timer and a verification of its own each second cost every subscription about
    50 µs a second: half a core for 10,000 subscribers (bench/subscriptions.py)."""

    _by_loop: ClassVar[dict[int, _Ticker]] = {}  # by id(loop); dropped once it watches nothing

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop  # kept alive while here, so its id is not reused meanwhile
        self.watches: set[TokenWatch] = set()
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Ticker:
        ticker = cls._by_loop.get(id(loop))
        if ticker is None:
            ticker = cls._by_loop[id(loop)] = cls(loop)
        return ticker

    def add(self, watch: TokenWatch) -> None:
        self.watches.add(watch)
        if self.timer is None:
            self.timer = self.loop.call_later(RECHECK_SECONDS, self._tick)

    def discard(self, watch: TokenWatch) -> None:
        self.watches.discard(watch)
        if not self.watches:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self._by_loop.pop(id(self.loop), None)

    def _tick(self) -> None:
        self.timer = self.loop.call_later(RECHECK_SECONDS, self._tick)
        self._check(list(self.watches), 0, {}, {})

    def _check(
        self,
        watches: list[TokenWatch],
        start: int,
        verified: dict[tuple[Any, str], Any],
        standings: dict[int, object],
    ) -> None:
        """CHECKS_PER_TURN watches from `start`, the rest in later turns of the loop: one
        pass over 10,000 held the loop for as long as it took (requests, events and the
        token refresh itself waited). A watch whose verifier's standing (read once a tick,
        before any check) is what it was at the watch's last check is skipped: nothing its
        token's check reads has changed but the clock, which its expiry timer watches."""
        for watch in watches[start : start + CHECKS_PER_TURN]:
            if watch not in self.watches:
                continue  # its subscription ended meanwhile
            standing = _standing(watch.verify, standings)
            if standing is not None and standing == watch.standing:
                continue
            try:
                watch._check(verified)
            except Exception:  # one watch's fault must not stop the others' checks
                log.exception("graphql.token_watch_failed")
            watch.standing = standing
        if start + CHECKS_PER_TURN < len(watches):
            self.loop.call_soon(self._check, watches, start + CHECKS_PER_TURN, verified, standings)


def _standing(verify: Callable[[str], Any], standings: dict[int, object]) -> object:
    """The verifier's `standing()` this tick (None for one without it: always check)."""
    key = id(verify)
    if key not in standings:
        of = getattr(verify, "standing", None)
        standings[key] = of() if of is not None else None
    return standings[key]


def _watched(subscribe: Callable[..., Any]) -> Callable[..., Any]:
    """A subscription field's `subscribe`, its events watched by TokenWatch when the
    operation runs on a WebSocket that sent a token."""

    def watched(root: Any, info: Any, **args: Any) -> Any:
        source = subscribe(root, info, **args)
        context = info.context
        token, verify = getattr(context, "token", None), getattr(context, "verify", None)
        if token is None or verify is None:
            return source
        caller = getattr(context, "caller", None)

        def watch(stream: Any) -> Any:
            if not hasattr(stream, "__anext__"):
                return stream  # graphql-core reports what is not a stream
            return TokenWatch(token, verify, getattr(caller, "expires_at", None)).events(stream)

        if isawaitable(source):

            async def later() -> Any:
                return watch(await source)

            return later()
        return watch(source)

    return watched


def watch_subscription_tokens(schema: GraphQLSchema) -> None:
    """Every subscription field of the schema ends when its socket's token does."""
    root = schema.subscription_type
    for subscription in root.fields.values() if root else ():
        if subscription.subscribe is not None:
            subscription.subscribe = _watched(subscription.subscribe)
