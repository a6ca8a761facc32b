"""The checks of the contract kit, each against a freshly started sandbox."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC
from typing import Any

from adapters.errors import MalformedResponse, UpstreamError, UpstreamTimeout
from adapters.kinds import AirQualityStations, Connection, Kind, StationMeasurement
from adapters.registry import Adapter
from adapters.sandbox.server import RunningSandbox, running
from hub.core.monitoring import REGISTRY

BUDGET = 1.0  # seconds: the time budget the kit gives the adapter


class ContractViolation(AssertionError):
    """The adapter breaks its kind's contract; the message says how."""


@asynccontextmanager
async def connected(adapter: Adapter[Any]) -> AsyncIterator[tuple[Connection, RunningSandbox]]:
    assert adapter.sandbox is not None
    async with running(adapter.sandbox) as sandbox:
        settings = adapter.read_settings(**sandbox.settings(), timeout_seconds=BUDGET)
        connection = adapter.connect(settings)
        try:
            yield connection, sandbox
        finally:
            await connection.aclose()


async def _stations(connection: Connection) -> list[StationMeasurement]:
    assert isinstance(connection, AirQualityStations)
    return await connection.measurements()


async def _health(connection: Connection) -> None:
    await connection.health()


# The call each kind exists for; kinds without one are checked through their health check.
MAIN_CALLS: dict[Kind, Callable[[Connection], Awaitable[Any]]] = {
    Kind.AIR_QUALITY_STATIONS: _stations,
}


def main_call(adapter: Adapter[Any]) -> Callable[[Connection], Awaitable[Any]]:
    return MAIN_CALLS.get(Kind(adapter.kind), _health)


async def health_passes(adapter: Adapter[Any]) -> None:
    async with connected(adapter) as (connection, _):
        await connection.health()


async def health_fails_on_5xx(adapter: Adapter[Any]) -> None:
    async with connected(adapter) as (connection, sandbox):
        await sandbox.inject(error="5xx", status=503)
        try:
            await connection.health()
        except UpstreamError as exc:
            if adapter.name not in str(exc):
                raise ContractViolation(f"the error does not name the upstream: {exc}") from exc
            return
        raise ContractViolation("health() passed while every upstream call answered 503")


async def main_call_answers(adapter: Adapter[Any]) -> None:
    async with connected(adapter) as (connection, _):
        answer = await main_call(adapter)(connection)
    if Kind(adapter.kind) == Kind.AIR_QUALITY_STATIONS:
        _check_stations(answer)
    expected = adapter.sandbox.expected if adapter.sandbox else None
    if expected is not None and Kind(adapter.kind) == Kind.AIR_QUALITY_STATIONS:
        _compare_stations(answer, expected())


def _check_stations(answer: object) -> None:
    if not isinstance(answer, list) or not answer:
        raise ContractViolation(f"measurements() gave {answer!r}, not a non-empty list")
    for found in answer:
        if not isinstance(found, StationMeasurement):
            raise ContractViolation(f"{found!r} is not a StationMeasurement")
        if found.measured_at.utcoffset() is None or found.measured_at.tzinfo is not UTC:
            raise ContractViolation(f"{found.station}: measured_at {found.measured_at} is not UTC")
        if not (33 <= found.lat <= 39 and 124 <= found.lng <= 132):
            raise ContractViolation(f"{found.station}: ({found.lat}, {found.lng}) is not in Korea")
        for name in ("pm10", "pm25", "o3", "no2", "co", "so2", "khai"):
            value = getattr(found, name)
            if value is not None and not (isinstance(value, float) and math.isfinite(value)):
                raise ContractViolation(f"{found.station}: {name} = {value!r}, not a float")


def _compare_stations(answer: list[StationMeasurement], truth: list[StationMeasurement]) -> None:
    got = {found.station: found for found in answer}
    for right in truth:
        found = got.get(right.station)
        if found is None:
            raise ContractViolation(f"station {right.station} is missing from the answer")
        if found != right:
            differ = [
                f"{field}: {getattr(found, field)!r} instead of {getattr(right, field)!r}"
                for field in StationMeasurement.__slots__
                if getattr(found, field) != getattr(right, field)
            ]
            raise ContractViolation(f"station {right.station}: " + "; ".join(differ))
    extra = set(got) - {right.station for right in truth}
    if extra:
        raise ContractViolation(f"stations outside the configured area: {sorted(extra)}")


async def malformed_is_specific(adapter: Adapter[Any]) -> None:
    async with connected(adapter) as (connection, sandbox):
        await sandbox.inject(error="malformed")
        try:
            await main_call(adapter)(connection)
        except MalformedResponse:
            return
        except Exception as exc:
            raise ContractViolation(
                f"a cut-off body raised {type(exc).__name__}: {exc}, not MalformedResponse"
            ) from exc
        raise ContractViolation("a cut-off body was accepted")


async def budget_honoured(adapter: Adapter[Any]) -> None:
    async with connected(adapter) as (connection, sandbox):
        await sandbox.inject(error="hang")
        started = time.monotonic()
        try:
            await main_call(adapter)(connection)
        except UpstreamTimeout:
            took = time.monotonic() - started
            if took > BUDGET + 0.5:
                raise ContractViolation(
                    f"gave up after {took:.1f} s; the budget is {BUDGET} s"
                ) from None
            return
        raise ContractViolation("the call succeeded while the upstream never answered")


async def transient_failures_retried(adapter: Adapter[Any]) -> None:
    async with connected(adapter) as (connection, sandbox):
        for plan in ({"error": "5xx"}, {"error": "rate_limited", "retry_after": 0}):
            await sandbox.inject(**plan, count=1)
            try:
                await main_call(adapter)(connection)
            except UpstreamError as exc:
                raise ContractViolation(
                    f"one {plan['error']} answer was not retried: {exc}"
                ) from exc


async def metrics_recorded(adapter: Adapter[Any]) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"upstream": adapter.name, **labels}) or 0.0

    calls = sample("ieum_upstream_calls_total")
    errors = sample("ieum_upstream_errors_total", kind="5xx")
    timed = sample("ieum_upstream_request_duration_seconds_count")
    async with connected(adapter) as (connection, sandbox):
        await main_call(adapter)(connection)
        await sandbox.inject(error="5xx")
        with suppress(UpstreamError):
            await main_call(adapter)(connection)
    if sample("ieum_upstream_calls_total") <= calls:
        raise ContractViolation(
            f"no calls counted for upstream {adapter.name!r}: call it through "
            f"adapters.resilience.Upstream named after the adapter"
        )
    if sample("ieum_upstream_errors_total", kind="5xx") <= errors:
        raise ContractViolation("503 answers were not counted as errors of kind 5xx")
    if sample("ieum_upstream_request_duration_seconds_count") <= timed:
        raise ContractViolation("no latency observed")
