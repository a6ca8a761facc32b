"""The short-lived cache of aggregates: shared answers, one computation per burst."""

from __future__ import annotations

import asyncio

import pytest

from hub.core import result_cache
from hub.core.result_cache import ResultCache


class Counter:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("database went away")
        return self.calls


async def test_an_answer_is_shared_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(result_cache.time, "monotonic", lambda: clock[0])
    cache, compute = ResultCache(2.0), Counter()
    assert await cache.get("k", compute) == 1
    clock[0] += 1.9
    assert await cache.get("k", compute) == 1
    assert await cache.get("other", compute) == 2
    clock[0] += 0.2  # "k" is 2.1 s old now
    assert await cache.get("k", compute) == 3
    assert (cache.hits, cache.misses) == (1, 3)


async def test_concurrent_askers_share_one_computation() -> None:
    cache, compute = ResultCache(2.0), Counter(delay=0.05)
    answers = await asyncio.gather(*(cache.get("k", compute) for _ in range(20)))
    assert answers == [1] * 20
    assert compute.calls == 1


async def test_failures_are_not_kept() -> None:
    cache, failing = ResultCache(2.0), Counter(fail=True)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await cache.get("k", failing)
    assert failing.calls == 2
    assert await cache.get("k", Counter()) == 1


async def test_a_caller_going_away_does_not_cancel_the_others() -> None:
    cache, compute = ResultCache(2.0), Counter(delay=0.05)
    first = asyncio.create_task(cache.get("k", compute))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == 1
    assert compute.calls == 1


async def test_zero_seconds_turns_it_off_and_size_is_bounded() -> None:
    off, compute = ResultCache(0), Counter()
    assert [await off.get("k", compute) for _ in range(3)] == [1, 2, 3]
    small = ResultCache(60, max_entries=3)
    for key in range(10):
        await small.get(key, Counter())
    assert len(small._entries) == 3


async def test_expired_answers_are_dropped_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only when the cache is full: every answer kept alive costs the garbage
    collector's older-generation passes."""
    clock = [100.0]
    monkeypatch.setattr(result_cache.time, "monotonic", lambda: clock[0])
    cache = ResultCache(2.0)
    for key in range(3):
        await cache.get(key, Counter())
        clock[0] += 0.5
    await cache.get(0, Counter())  # fresh: stays where it was
    clock[0] += 1.1  # 0 and 1 are older than 2 s now, 2 is not
    await cache.get("new", Counter())
    assert list(cache._entries) == [2, "new"]
