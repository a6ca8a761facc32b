"""Garbage-collector settings for long-running processes.

A request to the hub allocates thousands of short-lived objects (GraphQL results, records,
dataclasses), so CPython's default threshold of 700 young objects runs a collection every
few requests, and each older-generation pass walks everything the process loaded at start
(the schema, the metric catalog, caches). Measured in `bench/sensor_queries.py` on the
2-core machine: p99 of the sensor queries fell by a third to a half with these settings;
`bench/ingest.py`: one worker ingested about 10% more messages a second (three pairs of
runs). `ieum serve` and `ieum ingest` call this once started.

A process holding many long-lived connections (10,000 subscriptions: about 3 million
objects) pays for each full collection with a pause of seconds, since CPython walks every
object it tracks, live or not, and runs one whenever the survivors grew by a quarter.
`LongLived` freezes what survives a collection of the middle generation or a full one (it
outlived two collections: subscriptions, connections, caches), so a full collection walks
only the young objects. What was frozen and dies in a reference cycle is not freed until a
thaw: once the frozen objects doubled since the last one, at most every
`THAW_MIN_SECONDS`, the next full collection walks everything once.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 10_000
SLOW_PAUSE_SECONDS = 0.1  # an older generation's collection longer than this is logged
THAW_MIN_SECONDS = 300.0


class LongLived:
    """A `gc.callbacks` entry: after each collection of the older generations, freeze its
    survivors, or thaw them all for the next full one (see the module's docstring).

    Counting the frozen objects walks them all (`gc.get_freeze_count`: about 25 ms at 3
    million), so it is done after a thaw and then at most every THAW_MIN_SECONDS, when a
    thaw may be due, never on every collection."""

    def __init__(self) -> None:
        self.baseline = gc.get_freeze_count()  # frozen after the last thaw's collection
        self.counted_at = time.monotonic()
        self.thawing = False
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if generation == 0:
            return
        if phase == "start":
            self.started = time.perf_counter()
            return
        pause = time.perf_counter() - self.started
        if pause > SLOW_PAUSE_SECONDS:
            log.warning(
                "gc.slow_collection generation=%d pause_ms=%.0f collected=%d thawed=%s",
                generation,
                pause * 1000,
                info["collected"],
                self.thawing,
            )
        if self.thawing:
            if generation == 2:  # this one walked everything: what is left is alive
                self.thawing = False
                gc.freeze()
                self.baseline = gc.get_freeze_count()
            return
        now = time.monotonic()
        if now - self.counted_at > THAW_MIN_SECONDS:
            self.counted_at = now
            if gc.get_freeze_count() > 2 * self.baseline:
                gc.unfreeze()  # the next full collection frees the cycles frozen meanwhile
                self.thawing = True
                return
        gc.freeze()


def settle_after_startup() -> None:
    """Move what startup allocated out of the collector's sight (`gc.freeze`: it lives as
    long as the process), collect the young generation less often, and freeze from now on
    what outlives the older generations' collections."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    if not any(isinstance(callback, LongLived) for callback in gc.callbacks):
        gc.callbacks.append(LongLived())
