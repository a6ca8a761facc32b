"""Prometheus metrics of the hub, served as text at /metrics."""

from __future__ import annotations

import re

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
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

INGEST_ACCEPTED = Counter(
    "ieum_ingest_accepted_messages", "Device messages stored.", registry=REGISTRY
)
INGEST_VALUES = Counter(
    "ieum_ingest_accepted_values", "Metric values in the stored messages.", registry=REGISTRY
)
INGEST_REJECTED = Counter(
    "ieum_ingest_rejected_messages",
    "Device messages sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
INGEST_LAG = Gauge(
    "ieum_ingest_lag_messages",
    "Messages in the partition not yet ingested, after the last batch.",
    ["partition"],
    registry=REGISTRY,
)
INGEST_BATCH_SECONDS = Histogram(
    "ieum_ingest_batch_duration_seconds",
    "Time to validate and write one batch.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
INGEST_FAILURES = Counter(
    "ieum_ingest_batch_failures", "Batches that failed and were retried.", registry=REGISTRY
)
AGGREGATE_CACHE = Counter(
    "ieum_aggregate_cache_lookups",
    "Sensor aggregates asked for, by whether a recent answer was handed out again.",
    ["result"],
    registry=REGISTRY,
)
ROLLUP_BLOCKS = Counter(
    "ieum_rollup_blocks",
    "Blocks of sensor rollups read for an area and slot not yet viewed: held or read anew.",
    ["source"],
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

    def collect(self):  # type: ignore[no-untyped-def]
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
