"""Rate limits: 429 with Retry-After per client and per address, in memory or in Redis.

The hub tests wrap the whole hub in the middleware and serve it over real HTTP; uvicorn
takes the client's address from X-Forwarded-For on loopback, so each test counts from
addresses of its own. The Redis tests need a Redis (IEUM_TEST_REDIS_URL, by default the
one on 127.0.0.1:6379) and are skipped, saying so, when none answers.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from auth import clients
from hub.app import create_app
from hub.core import db
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.embedded.ports import free_port
from hub.ratelimit import (
    MemoryLimiter,
    Rate,
    RateLimitMiddleware,
    RateSettings,
    RedisLimiter,
)
from hub.serve import serving
from tests.conftest import local_settings

QUERY = {"query": "{ __typename }"}
# Tight limits for the tests; a rate of 0.01 a second makes Retry-After 100 s.
TIGHT = RateSettings(
    graphql_client_per_second=0.01,
    graphql_client_burst=3,
    graphql_ip_per_second=0.01,
    graphql_ip_burst=3,
    signin_ip_per_second=0.01,
    signin_ip_burst=2,
    oauth_ip_per_second=0.01,
    oauth_ip_burst=4,
    websocket_ip_per_second=0.01,
    websocket_ip_burst=2,
)


def address() -> dict[str, str]:
    """Headers making a request come from an address no other test uses."""
    return {"X-Forwarded-For": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"}


# The buckets


async def test_a_bucket_lets_a_burst_through_then_one_request_per_interval() -> None:
    clock = [100.0]
    limiter, rate = MemoryLimiter(clock=lambda: clock[0]), Rate(per_second=2, burst=3)
    assert [await limiter.hit("k", rate) for _ in range(3)] == [0, 0, 0]
    assert await limiter.hit("k", rate) == pytest.approx(0.5)
    assert await limiter.hit("other", rate) == 0
    clock[0] += 0.5  # one request's worth refilled
    assert await limiter.hit("k", rate) == 0
    assert await limiter.hit("k", rate) == pytest.approx(0.5)
    clock[0] += 10  # full again, and no more than full
    assert [await limiter.hit("k", rate) for _ in range(4)][-2:] == [0, pytest.approx(0.5)]


async def test_memory_keeps_a_bounded_number_of_buckets() -> None:
    limiter, rate = MemoryLimiter(max_keys=100), Rate(per_second=1, burst=1)
    for n in range(1000):
        await limiter.hit(f"address {n}", rate)
    assert len(limiter.arrivals) == 100
    assert await limiter.hit("address 999", rate) > 0  # the recent ones are kept


@pytest.fixture
async def redis_url() -> str:
    redis = pytest.importorskip("redis.asyncio", reason="the redis package is not installed")
    url = os.environ.get("IEUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as exc:
        pytest.skip(f"no Redis answers at {url} ({exc!r}); set IEUM_TEST_REDIS_URL")
    finally:
        await client.aclose()
    return url


@pytest.fixture
async def redis_limiters(redis_url: str) -> AsyncIterator[tuple[RedisLimiter, RedisLimiter]]:
    """Two hubs' limiters on one Redis, under a prefix of this test's own."""
    prefix = f"ieum-test:{uuid.uuid4().hex}:"
    first, second = (
        RedisLimiter.from_url(redis_url, prefix),
        RedisLimiter.from_url(redis_url, prefix),
    )
    yield first, second
    keys = [key async for key in first.redis.scan_iter(match=prefix + "*")]
    if keys:
        await first.redis.delete(*keys)
    await first.aclose()
    await second.aclose()


async def test_redis_buckets_are_shared_by_every_hub(
    redis_limiters: tuple[RedisLimiter, RedisLimiter],
) -> None:
    first, second = redis_limiters
    rate = Rate(per_second=1, burst=3)
    assert [await first.hit("k", rate), await second.hit("k", rate)] == [0, 0]
    assert await first.hit("k", rate) == 0
    assert 0 < await second.hit("k", rate) <= 1
    assert 0 < await first.hit("k", rate) <= 1
    assert await second.hit("other", rate) == 0
    assert (first.down_until, second.down_until) == (None, None)  # Redis did the counting


async def test_a_redis_bucket_is_forgotten_once_full_again(
    redis_limiters: tuple[RedisLimiter, RedisLimiter],
) -> None:
    limiter, _ = redis_limiters
    await limiter.hit("k", Rate(per_second=10, burst=5))
    assert 0 < await limiter.redis.pttl(limiter.prefix + "k") <= 100  # one request's worth


async def test_an_unreachable_redis_fails_open_counting_in_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0")
    rate = Rate(per_second=0.01, burst=2)
    try:
        with caplog.at_level(logging.WARNING, logger="hub.ratelimit"):
            answers = [await limiter.hit("k", rate) for _ in range(3)]
    finally:
        await limiter.aclose()
    assert answers[:2] == [0, 0] and answers[2] > 0
    warnings = [r.message for r in caplog.records if r.name == "hub.ratelimit"]
    assert len(warnings) == 1, "one warning per outage, not one per request"
    assert "redis_unavailable" in warnings[0]


# The middleware around the whole hub


@pytest.fixture(scope="module")
async def limited_hub(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[str]:
    settings = local_settings()
    app = create_app(settings, Servers(migrated_url, kafka_bootstrap))
    limited = RateLimitMiddleware(app, limiter=MemoryLimiter(), settings=TIGHT)
    async with serving(limited, settings.port) as url:
        yield url


@pytest.fixture
async def http(limited_hub: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limited_hub, timeout=10) as client:
        yield client


async def token(http: httpx.AsyncClient, migrated_url: str) -> str:
    """A new client's access token, fetched from an address of its own."""
    pool = await db.create_pool(migrated_url, Settings.from_env())
    try:
        app = await clients.create(pool, name="Rate-limited app", scope_names="profile")
    finally:
        await pool.close()
    answer = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(app.client_id, app.client_secret or ""),
        headers=address(),
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


async def test_graphql_answers_429_with_retry_after_and_a_graphql_error(
    http: httpx.AsyncClient,
) -> None:
    me = address()
    for _ in range(3):
        assert (await http.post("/graphql", json=QUERY, headers=me)).status_code == 200
    refused = await http.post("/graphql", json=QUERY, headers=me)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "100"
    [error] = refused.json()["errors"]
    assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 100}
    assert error["message"].startswith("Too many requests: this address may send")
    assert (await http.post("/graphql", json=QUERY, headers=address())).status_code == 200


async def test_each_client_has_its_own_bucket_wherever_it_calls_from(
    http: httpx.AsyncClient, migrated_url: str
) -> None:
    first, second = await token(http, migrated_url), await token(http, migrated_url)
    for _ in range(3):  # from three addresses: still one client
        answer = await http.post(
            "/graphql", json=QUERY, headers={"Authorization": f"Bearer {first}", **address()}
        )
        assert answer.status_code == 200
    me = address()
    refused = await http.post(
        "/graphql", json=QUERY, headers={"Authorization": f"Bearer {first}", **me}
    )
    assert refused.status_code == 429
    assert "this client may send" in refused.json()["errors"][0]["message"]
    other = await http.post(
        "/graphql", json=QUERY, headers={"Authorization": f"Bearer {second}", **me}
    )
    assert other.status_code == 200
    assert (await http.post("/graphql", json=QUERY, headers=me)).status_code == 200


async def test_a_request_with_a_bad_token_is_counted_by_its_address(
    http: httpx.AsyncClient,
) -> None:
    me = {"Authorization": "Bearer not-a-token", **address()}
    answers = [(await http.post("/graphql", json=QUERY, headers=me)).status_code for _ in range(4)]
    assert answers == [401, 401, 401, 429]


async def test_sign_in_and_token_requests_have_a_stricter_limit_of_their_own(
    http: httpx.AsyncClient,
) -> None:
    me = address()
    form = {"grant_type": "client_credentials"}
    for _ in range(2):
        answer = await http.post("/oauth/token", data=form, auth=("nobody", "x"), headers=me)
        assert answer.status_code == 401
    refused = await http.post("/oauth/token", data=form, auth=("nobody", "x"), headers=me)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "100"
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.json()["error"] == "slow_down"
    assert "try again in 100 s" in refused.json()["error_description"]
    login = await http.post("/oauth/login", data={"username": "x"}, headers=me)
    assert login.status_code == 429
    # GraphQL and the rest of /oauth/ count apart.
    assert (await http.post("/graphql", json=QUERY, headers=me)).status_code == 200
    revoke = await http.post("/oauth/revoke", data={"token": "x"}, auth=("nobody", "x"), headers=me)
    assert revoke.status_code != 429


async def test_websocket_connection_attempts_are_limited_per_address(limited_hub: str) -> None:
    url = limited_hub.replace("http", "ws", 1) + "/graphql"
    me = address()
    for _ in range(2):
        async with websockets.connect(
            url, subprotocols=["graphql-transport-ws"], additional_headers=me
        ):
            pass
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        await websockets.connect(url, subprotocols=["graphql-transport-ws"], additional_headers=me)
    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "100"
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], additional_headers=address()
    ):
        pass


async def test_an_ipv6_client_is_counted_by_its_64_block(http: httpx.AsyncClient) -> None:
    """One subscriber holds a /64: hopping between its addresses gets no fresh bucket."""
    block = f"2001:db8:{uuid.uuid4().int % 65536:x}:1"
    answers = [
        (
            await http.post("/graphql", json=QUERY, headers={"X-Forwarded-For": f"{block}::{n}"})
        ).status_code
        for n in range(1, 5)
    ]
    assert answers == [200, 200, 200, 429]
    other = {"X-Forwarded-For": f"{block.rpartition(':')[0]}:2::1"}
    assert (await http.post("/graphql", json=QUERY, headers=other)).status_code == 200


async def test_paths_without_a_limit_are_not_counted(http: httpx.AsyncClient) -> None:
    me = address()
    for _ in range(10):
        assert (await http.get("/healthz", headers=me)).status_code == 200


# Across hubs, through Redis


async def ok(request: Request) -> JSONResponse:
    return JSONResponse({"data": {"ok": True}})


def small_hub(limiter: RedisLimiter | MemoryLimiter) -> Starlette:
    return Starlette(
        routes=[Route("/graphql", ok, methods=["POST"])],
        middleware=[Middleware(RateLimitMiddleware, limiter=limiter, settings=TIGHT)],
    )


async def test_hubs_on_one_redis_share_their_limits(
    redis_limiters: tuple[RedisLimiter, RedisLimiter],
) -> None:
    first, second = redis_limiters
    me = address()
    async with (
        serving(small_hub(first)) as one,
        serving(small_hub(second)) as two,
        httpx.AsyncClient(timeout=10) as http,
    ):
        answers = [
            (await http.post(f"{base}/graphql", json=QUERY, headers=me)).status_code
            for base in (one, two, one, two)
        ]
    assert answers == [200, 200, 200, 429]


async def test_a_hub_whose_redis_is_away_keeps_answering() -> None:
    limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0")
    me = address()
    try:
        async with serving(small_hub(limiter)) as url, httpx.AsyncClient(timeout=10) as http:
            answers = [
                (await http.post(f"{url}/graphql", json=QUERY, headers=me)).status_code
                for _ in range(4)
            ]
    finally:
        await limiter.aclose()
    assert answers == [200, 200, 200, 429]  # counted in memory meanwhile


# As the hub itself wires it


async def test_the_hub_applies_its_rate_settings(migrated_url: str, kafka_bootstrap: str) -> None:
    settings = local_settings(graphql_ip_per_second=0.01, graphql_ip_burst=2)
    app = create_app(settings, Servers(migrated_url, kafka_bootstrap))
    if not any(middleware.cls is RateLimitMiddleware for middleware in app.user_middleware):
        pytest.skip("create_app does not add RateLimitMiddleware yet (issue 17)")
    me = address()
    async with serving(app, settings.port) as url, httpx.AsyncClient(base_url=url) as http:
        answers = [
            (await http.post("/graphql", json=QUERY, headers=me)).status_code for _ in range(3)
        ]
    assert answers == [200, 200, 429]
