"""The hub's counters, gauges and histograms (Prometheus), served as text at /metrics.

Domains register their own on `REGISTRY`; this module keeps the ones every domain shares:
GraphQL operations and the PostgreSQL pool."""

from __future__ import annotations

import re
from collections.abc import Iterator

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()

GRAPHQL_REQUESTS = Counter(
    "ieum_graphql_requests",
    "GraphQL operations executed, by operation name and type.",
    ["operation", "type"],
    registry=REGISTRY,
)
GRAPHQL_LATENCY = Histogram(
    "ieum_graphql_request_duration_seconds",
    "Time to execute a GraphQL operation, by operation name.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
GRAPHQL_ERRORS = Counter(
    "ieum_graphql_errors",
    "Errors in GraphQL responses, by operation name and error code.",
    ["operation", "code"],
    registry=REGISTRY,
)

# Operation names come from clients: bound what reaches the label set.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_OPERATION_NAMES = 200
_seen_names: set[str] = set()


def operation_label(name: str | None) -> str:
    """The operation name as a label; 'anonymous' or 'other' when it can't be one."""
    if not name:
        return "anonymous"
    if not _NAME.match(name):
        return "other"
    if name not in _seen_names:
        if len(_seen_names) >= MAX_OPERATION_NAMES:
            return "other"
        _seen_names.add(name)
    return name


class PoolCollector(Collector):
    """Connections of the asyncpg pool, read at scrape time."""

    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "ieum_db_pool_connections", "PostgreSQL pool connections by state.", labels=["state"]
        )
        if self.pool is not None:
            size, idle = self.pool.get_size(), self.pool.get_idle_size()
            family.add_metric(["idle"], idle)
            family.add_metric(["busy"], size - idle)
            family.add_metric(["max"], self.pool.get_max_size())
        yield family


POOL = PoolCollector()
REGISTRY.register(POOL)


def render() -> bytes:
    return generate_latest(REGISTRY)
