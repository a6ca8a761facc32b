"""The live fan-out in a hub process: each reading to the subscriptions whose area holds
its cell, in the order stored, and nothing to those that left."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from resolvers.sensors.live import QUEUE_LIMIT, LiveReadings, Subscriber, SubscriberTooSlow
from resolvers.sensors.message import Reading, parse
from resolvers.sensors.queries import metric
from schema.sensors.live import SharedReadings
from tests.sensors.helpers import message

AT = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
PLACES = [(37.5705, 126.9769), (37.5512, 126.9882), (37.4979, 127.0276)]  # 3 cells apart


def reading(n: int, place: int) -> Reading:
    lat, lng = PLACES[place]
    return parse(
        message(f"u-{n}", f"car-{n}", AT + timedelta(seconds=n), lat, lng, {"pm2_5": n}), now=AT
    )


def queued(subscriber: Subscriber) -> list[str]:
    found = []
    while not subscriber.queue.empty():
        found.append(subscriber.queue.get_nowait().device_id)
    return found


async def test_a_reading_reaches_the_subscriptions_watching_its_cell_only() -> None:
    live = LiveReadings()
    a, b, c = (reading(0, 0).cell, reading(0, 1).cell, reading(0, 2).cell)
    assert len({a, b, c}) == 3
    batch = [reading(1, 0), reading(2, 1), reading(3, 2), reading(4, 0)]
    async with (
        live.subscribe(frozenset({a})) as first,
        live.subscribe(frozenset({a, b})) as second,
        live.subscribe(frozenset({c, 12345})) as third,
    ):
        await live.publish(batch)
        assert queued(first) == ["u-1", "u-4"]
        assert queued(second) == ["u-1", "u-2", "u-4"]  # in the order stored
        assert queued(third) == ["u-3"]
        async with live.subscribe(frozenset({a})) as fourth:
            pass
        await live.publish(batch)
        assert queued(fourth) == []  # it left before
        assert queued(first) == ["u-1", "u-4"]


async def test_the_cells_watched_follow_subscriptions_that_share_cells() -> None:
    live = LiveReadings()
    async with live.subscribe(frozenset({1, 2})):
        async with live.subscribe(frozenset({2, 3})):
            async with live.subscribe(frozenset({2})):
                assert live.cells == {1, 2, 3}
            assert live.cells == {1, 2, 3}  # 2 is still watched by two
        assert live.cells == {1, 2}
    assert live.cells == frozenset()
    await live.publish([reading(1, 0)])  # nobody left to give it to


async def test_a_subscriber_too_far_behind_is_told_to_resubscribe() -> None:
    live = LiveReadings()
    one = reading(1, 0)
    async with live.subscribe(frozenset({one.cell})) as subscriber:
        await live.publish([one] * (QUEUE_LIMIT + 5))
        got = subscriber.readings()
        for _ in range(QUEUE_LIMIT):
            assert await anext(got) is one
        with pytest.raises(SubscriberTooSlow):
            await asyncio.wait_for(anext(got), 1)


def test_a_reading_is_made_once_for_the_subscribers_asking_the_same_metrics() -> None:
    shared = SharedReadings(2)
    pm, noise = metric("pm2_5"), metric("noise_laeq")
    one, two, three = reading(1, 0), reading(2, 1), reading(3, 2)
    first = shared.get(one, (pm,), (pm.id,))
    assert shared.get(one, (pm,), (pm.id,)) is first
    assert [v.metric for v in first.values] == ["pm2_5"]
    both = shared.get(one, (pm, noise), (pm.id, noise.id))
    assert both is not first and [v.metric for v in both.values] == ["pm2_5"]  # no noise sent
    assert shared.get(two, (pm,), (pm.id,)).ts == two.ts
    shared.get(three, (pm,), (pm.id,))
    again = shared.get(one, (pm,), (pm.id,))  # made again once dropped: the same content
    assert again is not first and (again.ts, again.cell, again.values) == (
        first.ts,
        first.cell,
        first.values,
    )
