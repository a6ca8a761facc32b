"""The contract every adapter keeps, checked against its own sandbox over loopback HTTP.

Run from an adapter package: pytest --pyargs adapters.testing.contract --ieum-adapter NAME
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from adapters.registry import Adapter
from adapters.testing import checks

Check = Callable[[Adapter[Any]], Coroutine[Any, Any, None]]


def _run(check: Check, adapter: Adapter[Any]) -> None:
    asyncio.run(check(adapter))


def test_health_check_passes_against_a_healthy_upstream(ieum_adapter: Adapter[Any]) -> None:
    _run(checks.health_passes, ieum_adapter)


def test_health_check_fails_naming_the_upstream_on_5xx(ieum_adapter: Adapter[Any]) -> None:
    _run(checks.health_fails_on_5xx, ieum_adapter)


def test_main_call_returns_the_kinds_typed_data(ieum_adapter: Adapter[Any]) -> None:
    _run(checks.main_call_answers, ieum_adapter)


def test_malformed_body_raises_malformed_response(ieum_adapter: Adapter[Any]) -> None:
    _run(checks.malformed_is_specific, ieum_adapter)


def test_time_budget_is_honoured_when_the_upstream_hangs(ieum_adapter: Adapter[Any]) -> None:
    _run(checks.budget_honoured, ieum_adapter)


def test_one_5xx_or_429_is_retried(ieum_adapter: Adapter[Any]) -> None:
    _run(checks.transient_failures_retried, ieum_adapter)


def test_resilience_metrics_are_recorded(ieum_adapter: Adapter[Any]) -> None:
    _run(checks.metrics_recorded, ieum_adapter)
