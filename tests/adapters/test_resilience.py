"""The resilience layer against a real server on loopback that misbehaves on request."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.errors import BreakerOpen, UpstreamRateLimited, UpstreamServerError
from adapters.resilience import REGISTRY, Policy, Upstream
from adapters.sandbox.server import Sandbox, running


def echo_app() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        return JSONResponse({"method": request.method, "key": key})

    return Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"])])


ECHO = Sandbox("echo", "answers with the request", echo_app, lambda url: {"base_url": url})
FAST = Policy(budget=2.0, attempt_timeout=1.0, wait_initial=0.01, wait_jitter=0.01)


def body(response: httpx.Response) -> dict[str, str]:
    return response.json()


async def test_a_write_without_a_key_is_not_retried_and_one_with_a_key_is() -> None:
    async with running(ECHO) as served:
        upstream = Upstream("echo-write", served.url, FAST)
        try:
            await served.inject(error="5xx", count=1)
            with pytest.raises(UpstreamServerError, match="echo-write is unavailable: HTTP 503"):
                await upstream.call("POST", "/echo", body)
            await served.inject(error="5xx", count=1)
            answer = await upstream.call("POST", "/echo", body, idempotency_key="k-1")
        finally:
            await upstream.aclose()
        assert answer == {"method": "POST", "key": "k-1"}
        assert served.injector.served == 3  # 1 unretried + 2 for the keyed write


async def test_the_breaker_opens_and_spares_the_upstream() -> None:
    policy = Policy(budget=2.0, attempt_timeout=1.0, attempts=1, breaker_threshold=3)
    async with running(ECHO) as served:
        upstream = Upstream("echo-breaker", served.url, policy)
        await served.inject(error="5xx")
        try:
            for _ in range(3):
                with pytest.raises(UpstreamServerError):
                    await upstream.get("/echo", body)
            with pytest.raises(BreakerOpen, match="echo-breaker is unavailable"):
                await upstream.get("/echo", body)
        finally:
            await upstream.aclose()
        assert served.injector.served == 3
    labels = {"upstream": "echo-breaker"}
    assert REGISTRY.get_sample_value("ieum_upstream_breaker_state", labels) == 2
    kind = labels | {"kind": "breaker_open"}
    assert REGISTRY.get_sample_value("ieum_upstream_errors_total", kind) == 1


async def test_calls_their_callers_cancel_do_not_open_the_breaker() -> None:
    policy = Policy(budget=2.0, attempt_timeout=1.0, attempts=1, breaker_threshold=3)
    async with running(ECHO) as served:
        upstream = Upstream("echo-cancelled", served.url, policy)
        await served.inject(error="hang")
        try:
            for _ in range(5):  # a request's budget ends while each call waits
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(upstream.get("/echo", body), 0.05)
            await served.clear()  # healthy again
            assert await upstream.get("/echo", body) == {"method": "GET", "key": None}
        finally:
            await upstream.aclose()


async def test_a_retry_after_beyond_the_budget_answers_at_once() -> None:
    async with running(ECHO) as served:
        upstream = Upstream("echo-429", served.url, FAST)
        await served.inject(error="rate_limited", retry_after=30)
        started = time.monotonic()
        try:
            with pytest.raises(UpstreamRateLimited):
                await upstream.get("/echo", body)
        finally:
            await upstream.aclose()
        assert time.monotonic() - started < 1
        assert served.injector.served == 1


def test_a_budget_must_stay_below_the_request_deadline() -> None:
    with pytest.raises(ValueError, match="below the GraphQL request deadline"):
        Policy(budget=30)


async def test_a_graphql_field_with_its_upstream_down_is_null_and_the_rest_answers() -> None:
    async with running(ECHO) as served:
        upstream = Upstream("echo-graphql", served.url, FAST)

        @strawberry.type
        class Query:
            @strawberry.field
            def district(self) -> str:
                return "11680"

            @strawberry.field
            async def echo(self) -> str | None:
                return (await upstream.get("/echo", body))["method"]

        await served.inject(error="5xx")
        try:
            result = await strawberry.Schema(Query).execute("{ district echo }")
        finally:
            await upstream.aclose()
    assert result.data == {"district": "11680", "echo": None}
    (error,) = result.errors or []
    assert error.extensions == {"code": "UPSTREAM_UNAVAILABLE", "upstream": "echo-graphql"}
    assert error.message == "echo-graphql is unavailable: HTTP 503"
