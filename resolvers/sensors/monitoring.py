"""The sensors domain's counters and histograms, on the hub's registry (/metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from hub.core.monitoring import REGISTRY

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
INGEST_REDELIVERED = Counter(
    "ieum_ingest_redelivered_messages",
    "Device messages whose reading is already stored with the same content (a producer's"
    " or the broker's redelivery): neither stored again nor dead-lettered.",
    registry=REGISTRY,
)
INGEST_OFFSET_RESETS = Counter(
    "ieum_ingest_offset_resets",
    "Times a partition's stored offset was beyond its end (the topic was recreated or"
    " truncated) and ingest restarted from the partition's beginning.",
    ["topic", "partition"],
    registry=REGISTRY,
)
INGEST_DB_CONNECTED = Gauge(
    "ieum_ingest_database_connected",
    "1 while the ingest worker holds a PostgreSQL connection, 0 while it waits for one.",
    registry=REGISTRY,
)
INGEST_DB_STATE_SINCE = Gauge(
    "ieum_ingest_database_state_since_seconds",
    "Unix time the ingest worker's database state (connected or waiting) last changed.",
    registry=REGISTRY,
)
