"""Live fan-out of newly stored readings to GraphQL subscriptions in this process.

The ingest worker publishes each committed batch; every subscription has a bounded queue
of its own, filtered by area. A subscriber that falls too far behind is dropped with an
error rather than slowing ingest: it reconnects with `since` and replays from storage.
"""

from __future__ import annotations

import asyncio
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

    def offer(self, readings: Sequence[Reading]) -> None:
        for reading in readings:
            if reading.cell not in self.cells:
                continue
            try:
                self.queue.put_nowait(reading)
            except asyncio.QueueFull:
                self.overflowed = True
                return

    async def readings(self) -> AsyncIterator[Reading]:
        while True:
            if self.overflowed and self.queue.empty():
                raise SubscriberTooSlow("too far behind: resubscribe with `since`")
            yield await self.queue.get()


class LiveReadings:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._cells: frozenset[int] = frozenset()

    @property
    def cells(self) -> frozenset[int]:
        """The cells someone here subscribes to: readings elsewhere need not be decoded."""
        return self._cells

    async def publish(self, readings: Sequence[Reading]) -> None:
        for subscriber in list(self._subscribers):
            subscriber.offer(readings)

    @asynccontextmanager
    async def subscribe(self, cells: frozenset[int]) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(cells)
        self._subscribers.add(subscriber)
        self._cells = self._cells | cells
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            self._cells = frozenset().union(*(s.cells for s in self._subscribers))
