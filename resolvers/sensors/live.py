"""Live fan-out of newly stored readings to GraphQL subscriptions in this process.

The ingest worker publishes each committed batch; every subscription has a bounded queue
of its own, filtered by area. A subscriber that falls too far behind is dropped with an
error rather than slowing ingest: it reconnects with `since` and replays from storage.

Subscribers are indexed by the cells they watch, so a batch costs its readings times the
subscribers watching each one's cell, not every subscriber of the hub (10,000 of them,
each watching a neighbourhood, see bench/subscriptions.py); and subscribing or leaving
costs the subscriber's own cells, not a walk over everyone else's.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from resolvers.sensors.message import Reading

QUEUE_LIMIT = 10_000


class SubscriberTooSlow(Exception):
    """The subscriber's queue overflowed; it must resubscribe with `since`."""


class Subscriber:
    def __init__(self, cells: frozenset[int]) -> None:
        self.cells = cells
        self.queue: asyncio.Queue[Reading] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, reading: Reading) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(reading)
        except asyncio.QueueFull:
            self.overflowed = True

    async def readings(self) -> AsyncIterator[Reading]:
        while True:
            if self.overflowed and self.queue.empty():
                raise SubscriberTooSlow("too far behind: resubscribe with `since`")
            yield await self.queue.get()


class LiveReadings:
    def __init__(self) -> None:
        self._by_cell: defaultdict[int, set[Subscriber]] = defaultdict(set)
        self._watching: Counter[int] = Counter()  # subscribers per cell
        self._cells: frozenset[int] | None = frozenset()  # None: work it out again

    @property
    def cells(self) -> frozenset[int]:
        """The cells someone here subscribes to: readings elsewhere need not be decoded."""
        if self._cells is None:
            self._cells = frozenset(self._watching)
        return self._cells

    async def publish(self, readings: Sequence[Reading]) -> None:
        by_cell = self._by_cell
        for reading in readings:
            for subscriber in by_cell.get(reading.cell, ()):
                subscriber.offer(reading)

    @asynccontextmanager
    async def subscribe(self, cells: frozenset[int]) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(cells)
        for cell in cells:
            self._by_cell[cell].add(subscriber)
        self._watch(cells, 1)
        try:
            yield subscriber
        finally:
            for cell in cells:
                watchers = self._by_cell[cell]
                watchers.discard(subscriber)
                if not watchers:
                    del self._by_cell[cell]
            self._watch(cells, -1)

    def _watch(self, cells: frozenset[int], change: int) -> None:
        """Count the subscribers of each cell; the set of cells is made again only when
        a cell starts or stops being watched, and only once someone reads it."""
        counts = self._watching
        for cell in cells:
            counts[cell] += change
            if counts[cell] <= 0:
                del counts[cell]
                self._cells = None
            elif change > 0 and counts[cell] == 1:
                self._cells = None
