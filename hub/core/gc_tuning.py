"""Garbage-collector settings for long-running processes.

A request to the hub allocates thousands of short-lived objects (GraphQL results, records,
dataclasses), so CPython's default threshold of 700 young objects runs a collection every
few requests, and each older-generation pass walks everything the process loaded at start
(the schema, the metric catalog, caches). Measured in `bench/sensor_queries.py` on the
2-core machine: p99 of the sensor queries fell by a third to a half with these settings;
`bench/ingest.py`: one worker ingested about 10% more messages a second (three pairs of
runs). `ieum serve` and `ieum ingest` call this once started.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle_after_startup() -> None:
    """Move what startup allocated out of the collector's sight (`gc.freeze`: it lives as
    long as the process) and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
