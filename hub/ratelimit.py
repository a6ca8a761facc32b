"""Rate limits per OAuth client and per client address, answered with 429 and Retry-After.

Each request is counted in one bucket: GraphQL over HTTP by the client of its bearer token
(the app, wherever its users are), or by address when it has no usable token; sign-in and
token requests by address, more strictly than the rest of /oauth/; WebSocket connection
attempts by address. A bucket follows GCRA, the token bucket kept as one timestamp (the
"theoretical arrival time"): `burst` requests at once, then `per_second`.

Buckets live in this process by default. With IEUM_RATE_REDIS_URL they are shared by every
process and hub on that Redis, each check one atomic script (one round trip). A limiter must
not take the hub down: while Redis cannot be reached, requests are counted in this process
instead, with one warning.

The address is the ASGI scope's client, which uvicorn takes from X-Forwarded-For when the
connection comes from a trusted proxy (FORWARDED_ALLOW_IPS, loopback by default). IPv6
addresses are counted by /64, the block one subscriber usually holds.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from auth.http import caller_from_header
from auth.tokens import InvalidToken, TokenChecksUnavailable
from hub.core.settings import register_section

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

LIMITED = Counter(
    "ieum_rate_limited",
    "Requests refused by a rate limit, by the limit that refused them.",
    ["limit"],
)


class RateSettings(BaseSettings):
    """The `IEUM_RATE_*` section. A rate of 0 turns its limit off. The defaults stay above
    what the test suite and the benchmarks send (about 1,900 anonymous GraphQL requests a
    second from one address on a 2-core machine); set them to what your users need."""

    model_config = SettingsConfigDict(env_prefix="IEUM_RATE_", frozen=True, extra="ignore")

    redis_url: str | None = Field(
        default=None,
        description="Redis that holds the limits of every hub process (redis://host:6379/0); "
        "unset: each process counts alone.",
    )
    graphql_client_per_second: float = Field(
        default=1000, ge=0, description="GraphQL requests a second per OAuth client."
    )
    graphql_client_burst: int = Field(
        default=2000, ge=1, description="GraphQL requests per OAuth client at once."
    )
    graphql_ip_per_second: float = Field(
        default=3000, ge=0, description="GraphQL requests a second per address without a token."
    )
    graphql_ip_burst: int = Field(
        default=6000, ge=1, description="GraphQL requests per address without a token at once."
    )
    signin_ip_per_second: float = Field(
        default=20, ge=0, description="Sign-ins and token requests a second per address."
    )
    signin_ip_burst: int = Field(
        default=200, ge=1, description="Sign-ins and token requests per address at once."
    )
    oauth_ip_per_second: float = Field(
        default=200, ge=0, description="Other /oauth/ requests a second per address."
    )
    oauth_ip_burst: int = Field(
        default=1000, ge=1, description="Other /oauth/ requests per address at once."
    )
    websocket_ip_per_second: float = Field(
        default=50, ge=0, description="WebSocket connection attempts a second per address."
    )
    websocket_ip_burst: int = Field(
        default=500, ge=1, description="WebSocket connection attempts per address at once."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None


register_section(RateSettings)


@dataclass(frozen=True)
class Rate:
    """`burst` requests at once, then one every `1 / per_second` seconds."""

    per_second: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def describe(self) -> str:
        return f"{self.per_second:g} requests a second, {self.burst} at once"


class Limiter(Protocol):
    async def hit(self, key: str, rate: Rate) -> float:
        """Count a request in `key`'s bucket: 0 if allowed, else the seconds until it
        would be (a refused request is not counted)."""
        ...

    async def aclose(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process: a key's theoretical arrival time, the least recently used
    forgotten past `max_keys` (a forgotten bucket starts full again, which only lets more
    through)."""

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self.arrivals: OrderedDict[str, float] = OrderedDict()

    async def hit(self, key: str, rate: Rate) -> float:
        now = self.clock()
        interval = 1 / rate.per_second
        arrival = max(self.arrivals.get(key, now), now) + interval
        wait = arrival - now - rate.burst * interval
        if wait > 0:
            return wait
        self.arrivals[key] = arrival
        self.arrivals.move_to_end(key)
        if len(self.arrivals) > self.max_keys:
            self.arrivals.popitem(last=False)
        return 0.0

    async def aclose(self) -> None:
        self.arrivals.clear()


# GCRA in one atomic step, on Redis's clock (every hub agrees on it), in microseconds;
# the key expires when its bucket is full again. Returns the microseconds to wait, 0 if
# the request was counted.
GCRA_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local arrival = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now) + interval
local wait = arrival - now - capacity
if wait > 0 then
    return wait
end
redis.call('SET', KEYS[1], string.format('%.0f', arrival), 'PX', math.ceil((arrival - now) / 1000))
return 0
"""

REDIS_TIMEOUT_SECONDS = 0.5
REDIS_RETRY_SECONDS = 5.0  # after a failure, count in memory this long before trying again


class RedisLimiter:
    """Buckets in Redis, shared by every hub on it; in memory while Redis is away."""

    def __init__(self, redis: Redis, prefix: str = "ieum:rate:") -> None:
        self.redis = redis
        self.prefix = prefix
        self.script = redis.register_script(GCRA_SCRIPT)
        self.fallback = MemoryLimiter()
        from redis.exceptions import RedisError

        self.failures = (RedisError, OSError, TimeoutError)
        self.down_until: float | None = None  # monotonic time; None while Redis answers

    @classmethod
    def from_url(cls, url: str, prefix: str = "ieum:rate:") -> RedisLimiter:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            raise RuntimeError(
                "IEUM_RATE_REDIS_URL needs the redis package: pip install 'ieum[redis]'"
            ) from None
        client = Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),  # a failed check falls back; it is not repeated
        )
        return cls(client, prefix)

    async def hit(self, key: str, rate: Rate) -> float:
        if self.down_until is not None and time.monotonic() < self.down_until:
            return await self.fallback.hit(key, rate)
        interval = max(1, round(1_000_000 / rate.per_second))
        try:
            wait = await self.script(
                keys=[self.prefix + key], args=[interval, interval * rate.burst]
            )
        except self.failures as exc:
            if self.down_until is None:
                log.warning("ratelimit.redis_unavailable counting_in_memory error=%r", exc)
            self.down_until = time.monotonic() + REDIS_RETRY_SECONDS
            return await self.fallback.hit(key, rate)
        if self.down_until is not None:
            log.info("ratelimit.redis_available")
            self.down_until = None
        return int(wait) / 1_000_000

    async def aclose(self) -> None:
        await self.redis.aclose()


def limiter_from(settings: RateSettings) -> Limiter:
    """Redis's buckets when IEUM_RATE_REDIS_URL is set, else this process's."""
    if settings.redis_url:
        return RedisLimiter.from_url(settings.redis_url)
    return MemoryLimiter()


class RateLimitMiddleware:
    """Counts each request in its bucket and answers 429 with Retry-After once the bucket
    is empty: a GraphQL error on /graphql, an OAuth error on /oauth/, a refused handshake
    on WebSocket. Other paths are not limited.

    Wired inside the Starlette app (`middleware=[Middleware(RateLimitMiddleware, …)]`) or
    around it; the token verifier is the app's `state.tokens`.
    """

    SIGN_IN = ("/oauth/login", "/oauth/token")
    KNOWN_TOKENS = 10_000  # token → client, so a known token costs no verification here

    def __init__(self, app: ASGIApp, limiter: Limiter, settings: RateSettings) -> None:
        self.app = app
        self.limiter = limiter
        self.graphql_client = Rate(
            settings.graphql_client_per_second, settings.graphql_client_burst
        )
        self.graphql_ip = Rate(settings.graphql_ip_per_second, settings.graphql_ip_burst)
        self.signin_ip = Rate(settings.signin_ip_per_second, settings.signin_ip_burst)
        self.oauth_ip = Rate(settings.oauth_ip_per_second, settings.oauth_ip_burst)
        self.websocket_ip = Rate(settings.websocket_ip_per_second, settings.websocket_ip_burst)
        self.clients: OrderedDict[str, str] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if path == "/graphql":
            refusal = await self._graphql(scope)
        elif path in self.SIGN_IN:
            refusal = await self._oauth(scope, "signin", self.signin_ip)
        elif path.startswith("/oauth/"):
            refusal = await self._oauth(scope, "oauth", self.oauth_ip)
        else:
            refusal = None
        await (refusal or self.app)(scope, receive, send)

    async def _graphql(self, scope: Scope) -> JSONResponse | None:
        client = self._client(scope)
        if client is not None:
            key, rate, who = f"graphql:client:{client}", self.graphql_client, "this client"
        else:
            key, rate, who = f"graphql:ip:{_address(scope)}", self.graphql_ip, "this address"
        if not rate.enabled:
            return None
        wait = await self.limiter.hit(key, rate)
        if not wait:
            return None
        LIMITED.labels("graphql_client" if client is not None else "graphql_ip").inc()
        return _graphql_refusal(f"{who} may send {rate.describe()}", wait)

    async def _oauth(self, scope: Scope, group: str, rate: Rate) -> JSONResponse | None:
        if not rate.enabled:
            return None
        wait = await self.limiter.hit(f"{group}:ip:{_address(scope)}", rate)
        if not wait:
            return None
        LIMITED.labels(f"{group}_ip").inc()
        seconds = _seconds(wait)
        return JSONResponse(
            {
                "error": "slow_down",
                "error_description": f"Too many requests from this address ({rate.describe()});"
                f" try again in {seconds} s",
            },
            status_code=429,
            headers={"Retry-After": str(seconds), "Cache-Control": "no-store"},
        )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        rate = self.websocket_ip
        wait = (
            await self.limiter.hit(f"websocket:ip:{_address(scope)}", rate) if rate.enabled else 0
        )
        if not wait:
            await self.app(scope, receive, send)
            return
        LIMITED.labels("websocket_ip").inc()
        if "websocket.http.response" in scope.get("extensions", {}):
            message = f"this address may open {rate.describe()} WebSocket connections"
            await _graphql_refusal(message, wait)(scope, receive, send)
        else:  # closing before accepting is a 403 handshake answer
            await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})

    def _client(self, scope: Scope) -> str | None:
        """The OAuth client of the request's bearer token if it verifies, else None (the
        endpoint answers such a request itself; it is counted by address)."""
        header = _header(scope, b"authorization")
        if header is None:
            return None
        if (known := self.clients.get(header)) is not None:
            self.clients.move_to_end(header)
            return known
        owner: Any = scope.get("app", self.app)
        tokens = getattr(getattr(owner, "state", None), "tokens", None)
        if tokens is None:
            return None
        try:
            client = caller_from_header(tokens, header).client_id
        except (InvalidToken, TokenChecksUnavailable):
            return None
        if client is not None:  # a token names its client for good, valid or revoked later
            self.clients[header] = client
            if len(self.clients) > self.KNOWN_TOKENS:
                self.clients.popitem(last=False)
        return client


def _graphql_refusal(limit: str, wait: float) -> JSONResponse:
    seconds = _seconds(wait)
    error = {
        "message": f"Too many requests: {limit}; try again in {seconds} s",
        "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds},
    }
    return JSONResponse({"errors": [error]}, status_code=429, headers={"Retry-After": str(seconds)})


def _seconds(wait: float) -> int:
    """Retry-After: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _address(scope: Scope) -> str:
    """The client's address as counted: an IPv6 address by its /64."""
    client = scope.get("client")
    host = str(client[0]) if client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
