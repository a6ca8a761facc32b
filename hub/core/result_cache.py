"""Aggregates computed in the last few seconds, shared by everyone who asks the same.

City dashboards ask the same few questions (this district, this hour, this metric) from
many browsers at once. For a short time a result is handed out again instead of being
aggregated again, and concurrent askers of a missing result wait for one computation
(single flight), so a burst costs the database one query. Results are at most
`seconds` old; live data has its subscriptions. `seconds = 0` turns the cache off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from prometheus_client import Counter

T = TypeVar("T")


class ResultCache:
    def __init__(
        self, seconds: float, max_entries: int = 4096, lookups: Counter | None = None
    ) -> None:
        """`lookups`, a counter with a `result` label, counts hits and misses on /metrics."""
        self.seconds = seconds
        self._hit = lookups.labels("hit") if lookups else None
        self._miss = lookups.labels("miss") if lookups else None
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        if self.seconds <= 0:
            return await compute()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            self.hits += 1
            if self._hit:
                self._hit.inc()
            # shield: a caller that goes away must not cancel the others' result
            return await asyncio.shield(entry[1])
        self.misses += 1
        if self._miss:
            self._miss.inc()
        self._evict(now)  # also drops this key's expired entry: the new one goes last
        task = asyncio.ensure_future(compute())
        self._entries[key] = (now + self.seconds, task)
        task.add_done_callback(lambda done: self._forget_failure(key, done))
        return await asyncio.shield(task)

    def _forget_failure(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        """Errors are not kept: the next caller tries again."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] is done and (done.cancelled() or done.exception()):
            del self._entries[key]

    def _evict(self, now: float) -> None:
        """Expired answers go at once, not when the cache is full: a heat map's answer
        is about a hundred objects, and each kept alive is walked by every one of the
        garbage collector's older-generation passes (with 4,096 heat maps kept those
        took 30-130 ms; with the cache off, 7-10 ms). Entries are in expiry order (one
        lifetime for all), so this looks at the oldest only."""
        entries = self._entries
        while entries:
            oldest = next(iter(entries))
            if entries[oldest][0] > now and len(entries) < self.max_entries:
                return
            del entries[oldest]
