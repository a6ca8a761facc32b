"""The one way adapters call the outside: a time budget, retries, a breaker, a limit, metrics.

Every outbound call goes through an `Upstream`, one per system an adapter talks to:

- a time budget per call (`asyncio.timeout`) that covers queueing, every attempt and
  every wait, and stays below the GraphQL request's deadline;
- retries with exponential backoff and jitter (stamina), only for idempotent calls or
  calls carrying an idempotency key, and only for failures another try may cure
  (timeouts, refused connections, 5xx, 429 — honouring Retry-After when it fits the budget);
- a circuit breaker (purgatory) that stops calling an upstream after repeated failures,
  so a dead system costs its callers nothing until it may have recovered;
- a concurrency limit (`asyncio.Semaphore`), so one slow system cannot take every socket;
- metrics on the hub's registry: calls, errors by kind, retries, latency, breaker state.

Failures leave as `adapters.errors.UpstreamError` subclasses, all UPSTREAM_UNAVAILABLE.
An upstream that refuses for a business reason (a card declined) answers 4xx with a body
saying why: a caller's `refuse` hook turns that answer into its own exception, which is
an answer, not an outage — never retried and never counted by the breaker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx
import stamina
from prometheus_client import Counter, Gauge, Histogram
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from adapters.errors import (
    UPSTREAM_ERROR_KINDS,
    BreakerOpen,
    MalformedResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRefused,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
)
from hub.core.monitoring import REGISTRY

T = TypeVar("T")

# A GraphQL field waiting on an upstream must give up before the client does; budgets
# are checked against this when an upstream is set up.
REQUEST_DEADLINE_SECONDS = 10.0

CALLS = Counter(
    "ieum_upstream_calls", "Calls adapters made to an upstream.", ["upstream"], registry=REGISTRY
)
ERRORS = Counter(
    "ieum_upstream_errors",
    "Failed attempts and refused calls, by upstream and kind of failure.",
    ["upstream", "kind"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "ieum_upstream_retries", "Attempts made again after a failure.", ["upstream"], registry=REGISTRY
)
LATENCY = Histogram(
    "ieum_upstream_request_duration_seconds",
    "Time of one HTTP attempt to an upstream, answered or not.",
    ["upstream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "ieum_upstream_breaker_state",
    "Circuit breaker per upstream: 0 closed (calling), 1 half-open (probing), 2 open (paused).",
    ["upstream"],
    registry=REGISTRY,
)
_STATE_VALUES = {"closed": 0, "half-opened": 1, "opened": 2}


@dataclass(frozen=True)
class Policy:
    """How patient to be with one upstream. The defaults suit a public data API."""

    budget: float = 3.0  # seconds for a whole call, every attempt and wait included
    attempt_timeout: float = 1.5  # seconds for one HTTP attempt
    attempts: int = 3  # for idempotent or keyed calls; others get one
    wait_initial: float = 0.05
    wait_max: float = 1.0
    wait_jitter: float = 0.1
    concurrency: int = 8  # attempts in flight at once
    breaker_threshold: int = 5  # consecutive failed attempts that open the breaker
    breaker_reset: float = 30.0  # seconds the breaker stays open before a probe

    def __post_init__(self) -> None:
        if not 0 < self.budget < REQUEST_DEADLINE_SECONDS:
            raise ValueError(
                f"an upstream's time budget must be above 0 and below the GraphQL request "
                f"deadline of {REQUEST_DEADLINE_SECONDS:g} s, not {self.budget:g} s"
            )
        if not 0 < self.attempt_timeout <= self.budget:
            raise ValueError("attempt_timeout must be above 0 and at most the budget")
        if self.attempts < 1 or self.concurrency < 1 or self.breaker_threshold < 1:
            raise ValueError("attempts, concurrency and breaker_threshold must be at least 1")


Parse = Callable[[httpx.Response], T]
# For a 4xx answer: the exception to raise instead of UpstreamRejected, or None to keep it.
Refuse = Callable[[httpx.Response], Exception | None]


class Upstream:
    """One outside system, called over HTTP with the resilience policy. Close with aclose()."""

    def __init__(
        self,
        name: str,
        base_url: str,
        policy: Policy | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or Policy()
        self._base = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None  # made in the loop that calls
        self._limit = asyncio.Semaphore(self.policy.concurrency)
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=self.policy.breaker_threshold,
            default_ttl=self.policy.breaker_reset,
            # our request was wrong, or our caller gave up (a request's budget, a client
            # gone): neither says the upstream is failing
            exclude=[UpstreamRejected, asyncio.CancelledError],
        )
        self._breakers.add_listener(self._breaker_changed)
        BREAKER_STATE.labels(name).set(0)
        # the children every call counts in, looked up once (two lookups a call were
        # about 1.5% of the hub's CPU in a journey search of 15 calls)
        self._calls = CALLS.labels(name)
        self._latency = LATENCY.labels(name)
        RETRIES.labels(name)
        for kind in UPSTREAM_ERROR_KINDS:
            ERRORS.labels(name, kind)

    async def get(
        self,
        path: str,
        parse: Parse[T],
        *,
        params: Mapping[str, Any] | None = None,
        refuse: Refuse | None = None,
    ) -> T:
        """A read: idempotent, so retried."""
        return await self.call("GET", path, parse, params=params, idempotent=True, refuse=refuse)

    async def call(
        self,
        method: str,
        path: str,
        parse: Parse[T],
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool = False,
        idempotency_key: str | None = None,
        refuse: Refuse | None = None,
    ) -> T:
        """Make one call; `parse` turns the 2xx response into the result.

        `parse` may raise MalformedResponse (or KeyError, ValueError, TypeError: counted as
        malformed) or another UpstreamError for an error the body reports. `refuse` reads a
        4xx answer (other than 429) the same way and returns the exception to raise, or
        None for UpstreamRejected.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        retried = idempotent or idempotency_key is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.budget

        def retry_on(exc: Exception) -> bool | float:
            if not isinstance(exc, UpstreamError) or not exc.retryable:
                return False
            if isinstance(exc, UpstreamRateLimited) and exc.retry_after is not None:
                if loop.time() + exc.retry_after >= deadline:
                    return False  # waiting would overrun the budget: answer now
                RETRIES.labels(self.name).inc()
                return exc.retry_after
            RETRIES.labels(self.name).inc()
            return True

        self._calls.inc()
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    return await self._attempt(method, path, parse, refuse, params, json, headers)
                except Exception as exc:  # handed to stamina just below
                    failed: Exception | None = exc
                # Stamina only once the first attempt failed: setting its retry loop up
                # cost about a tenth of the hub's CPU in a journey search, whose calls
                # almost all succeed at once. The failure is its loop's first attempt, so
                # what it decides, waits and logs is as before.
                async for attempt in stamina.retry_context(
                    on=retry_on,
                    attempts=self.policy.attempts if retried else 1,
                    timeout=None,  # the budget above bounds everything
                    wait_initial=self.policy.wait_initial,
                    wait_max=self.policy.wait_max,
                    wait_jitter=self.policy.wait_jitter,
                ):
                    with attempt:
                        if failed is not None:
                            first, failed = failed, None
                            raise first
                        return await self._attempt(
                            method, path, parse, refuse, params, json, headers
                        )
        except TimeoutError:
            ERRORS.labels(self.name, UpstreamTimeout.kind).inc()
            raise UpstreamTimeout(
                self.name, f"no answer within the {self.policy.budget:g} s budget"
            ) from None
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _attempt(
        self,
        method: str,
        path: str,
        parse: Parse[T],
        refuse: Refuse | None,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> T:
        async with self._limit:
            try:
                breaker = await self._breakers.get_breaker(self.name)
                async with breaker:
                    response = await self._send(method, path, params, json, headers)
                    refusal = self._refusal(response, refuse)
                    if refusal is None:
                        return self._read(response, parse)
                raise refusal  # outside the breaker: the upstream answered, it is healthy
            except OpenedState:
                error: UpstreamError = BreakerOpen(
                    self.name,
                    f"{self.policy.breaker_threshold} failures in a row; calls paused for "
                    f"{self.policy.breaker_reset:g} s",
                )
                ERRORS.labels(self.name, error.kind).inc()
                raise error from None
            except UpstreamError as exc:
                ERRORS.labels(self.name, exc.kind).inc()
                raise

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        """One HTTP attempt through aiohttp (a fifth of httpx's CPU per call, measured
        here: a journey search makes about 20 calls), answered as an httpx.Response so
        every adapter's parse reads the same object as before."""
        started = time.perf_counter()
        url = self._base + (path if path.startswith("/") else "/" + path)
        try:
            async with self._client().request(
                method, url, params=_query(params), json=json, headers=headers
            ) as answer:
                body = await answer.read()
                # No httpx.Request: parsing its URL cost more than the rest of the
                # response (a journey search's calls carry long queries); no parse reads it.
                # The body as a stream read at once: given as content, httpx encodes it
                # again and adds its length (29 -> 10 us a response, a search has 15).
                response = httpx.Response(
                    answer.status,
                    headers=[
                        (name, value)
                        for name, value in answer.headers.items()
                        if name.lower() not in _DECODED  # the body is already decoded
                    ],
                    stream=httpx.ByteStream(body),
                )
                response.read()
                return response
        except TimeoutError:
            raise UpstreamTimeout(
                self.name, f"no answer within {self.policy.attempt_timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamRefused(self.name, f"connection failed ({type(exc).__name__})") from exc
        finally:
            self._latency.observe(time.perf_counter() - started)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.policy.attempt_timeout),
                connector=aiohttp.TCPConnector(limit=self.policy.concurrency),
            )
        return self._session

    def _refusal(self, response: httpx.Response, refuse: Refuse | None) -> Exception | None:
        if refuse is None or not 400 <= response.status_code < 500 or response.status_code == 429:
            return None
        try:
            return refuse(response)
        except UpstreamError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(
                self.name,
                f"unreadable HTTP {response.status_code} answer ({type(exc).__name__}: {exc})",
            ) from exc

    def _read(self, response: httpx.Response, parse: Parse[T]) -> T:
        status = response.status_code
        if status == 429:
            retry_after = _seconds(response.headers.get("Retry-After"))
            raise UpstreamRateLimited(self.name, "rate limited (HTTP 429)", retry_after)
        if status >= 500:
            raise UpstreamServerError(self.name, f"HTTP {status}")
        if status >= 400:
            raise UpstreamRejected(self.name, f"HTTP {status}: {response.text[:200]}")
        try:
            return parse(response)
        except UpstreamError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedResponse(
                self.name, f"unreadable answer ({type(exc).__name__}: {exc})"
            ) from exc

    def _breaker_changed(self, name: str, event_type: str, event: Any) -> None:
        if event_type == "state_changed":
            BREAKER_STATE.labels(self.name).set(_STATE_VALUES.get(event.state, 0))


_DECODED = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _query(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    """Query parameters as text, as httpx wrote them (True → "true", None left out)."""
    if not params:
        return None
    return [
        (name, "true" if value is True else "false" if value is False else str(value))
        for name, value in params.items()
        if value is not None
    ]


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is treated as unknown."""
    try:
        return max(0.0, float(retry_after)) if retry_after is not None else None
    except ValueError:
        return None
