"""The collector policy of long-running processes: full collections freeze their
survivors, and a thaw frees the cycles that died frozen."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator

import pytest

from hub.core import gc_tuning


class Node:
    """An object in a reference cycle of its own: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


def tracked(obj: object) -> bool:
    """Whether the collector walks `obj` (frozen objects are not in its generations)."""
    return any(found is obj for found in gc.get_objects())


@pytest.fixture
def policy() -> Iterator[gc_tuning.LongLived]:
    """The only policy in this process meanwhile (a test of `ieum serve` run in this
    process may have installed one)."""
    others = [callback for callback in gc.callbacks if isinstance(callback, gc_tuning.LongLived)]
    for other in others:
        gc.callbacks.remove(other)
    gc.unfreeze()
    policy = gc_tuning.LongLived()
    gc.callbacks.append(policy)
    try:
        yield policy
    finally:
        gc.callbacks.remove(policy)
        gc.callbacks.extend(others)


def test_what_outlives_an_older_collection_is_frozen(policy: gc_tuning.LongLived) -> None:
    alive = Node()
    gc.collect(0)  # the young generation's survivors stay in the collector's sight
    assert tracked(alive)
    gc.collect(1)
    assert not tracked(alive)  # a full collection will not walk it
    later = Node()
    gc.collect()
    assert not tracked(later)


def test_a_cycle_that_died_frozen_is_freed_after_the_frozen_objects_doubled(
    policy: gc_tuning.LongLived, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed = Node()
    gone = weakref.ref(doomed)
    gc.collect()
    del doomed
    gc.collect()
    assert gone() is not None  # frozen: not walked, so not freed

    monkeypatch.setattr(gc_tuning, "THAW_MIN_SECONDS", 0.0)
    policy.baseline = gc.get_freeze_count() // 3  # as if the frozen set had tripled
    gc.collect()  # ends by thawing everything for the next one
    assert policy.thawing and gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None
    assert not policy.thawing and gc.get_freeze_count() > 0  # frozen again


def test_no_thaw_before_the_frozen_objects_doubled(policy: gc_tuning.LongLived) -> None:
    policy.counted_at -= gc_tuning.THAW_MIN_SECONDS + 1
    policy.baseline = gc.get_freeze_count() + 10**9
    gc.collect()
    assert not policy.thawing and gc.get_freeze_count() > 0


def test_a_slow_full_collection_is_logged(
    policy: gc_tuning.LongLived, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gc_tuning, "SLOW_PAUSE_SECONDS", 0.0)
    with caplog.at_level(logging.WARNING, logger="hub.core.gc_tuning"):
        gc.collect()
        gc.collect(0)
    [record] = caplog.records
    assert record.getMessage().startswith("gc.slow_collection generation=2 pause_ms=")


def test_the_frozen_objects_are_counted_only_when_a_thaw_may_be_due(
    policy: gc_tuning.LongLived, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = []
    count = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: counted.append(1) or count())
    for _ in range(3):
        gc.collect()  # counting walks every frozen object: not at each collection
    assert counted == []
    policy.counted_at -= gc_tuning.THAW_MIN_SECONDS + 1
    policy.baseline = 10**9  # no thaw due: that would count again after it
    gc.collect()
    gc.collect()
    assert counted == [1]
