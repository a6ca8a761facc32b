"""Notices from the hub's own domains' events: a consumer group over their topics.

Each source names a domain, its events topic and how one of its events becomes a notice
(or none). The consumer reads in the notices consumer group from the earliest offset it
has not committed, accepts each event's notice under the key `event/<domain>/<event id>`
(store.publish: a repeat is the notice accepted before) and commits the offsets after the
batch is stored. An event read twice (a crash before the commit, the relay's own
at-least-once resend) therefore makes one notice: exactly once into our tables.

To add a domain's notices, give a `Source` to the worker (schema/notices/sources.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from resolvers.notices import errors, store

log = logging.getLogger(__name__)

# An event envelope ({event_id, type, occurred_at, key, data}) → the notice it makes.
Translate = Callable[[asyncpg.Pool, dict[str, Any]], Awaitable[store.NewNotice | None]]


@dataclass(frozen=True)
class Source:
    domain: str
    topic: str
    translate: Translate


async def consume(
    pool: asyncpg.Pool,
    bootstrap: str,
    group: str,
    sources: Sequence[Source],
    hours: store.QuietHours,
    stop: asyncio.Event,
) -> None:
    """Turn the sources' events into notices until `stop`; broker trouble is waited out."""
    by_topic = {source.topic: source for source in sources}
    while not stop.is_set():
        consumer = AIOKafkaConsumer(
            *by_topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=200,
        )
        try:
            await consumer.start()
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                for partition, records in batch.items():
                    for record in records:
                        await _apply(pool, by_topic[partition.topic], record.value, hours)
                if batch:
                    await consumer.commit()
        except (KafkaError, OSError) as exc:
            log.warning("notices.events_unavailable error=%r; retrying", exc)
            await _pause(stop, 2.0)
        finally:
            await consumer.stop()


async def _apply(
    pool: asyncpg.Pool, source: Source, value: bytes | None, hours: store.QuietHours
) -> None:
    try:
        envelope = json.loads(value or b"")
        assert isinstance(envelope, dict) and isinstance(envelope.get("event_id"), str)
    except (ValueError, AssertionError):
        log.warning("notices.bad_event topic=%s value=%.200r", source.topic, value)
        return
    new = await source.translate(pool, envelope)
    if new is None:
        return
    try:
        await store.publish(pool, new, hours)
    except errors.NoticeConflict:
        pass  # the same event id again with other data: the first notice stands
    except (errors.UnknownNoticeType, errors.MissingParameter) as exc:
        log.error("notices.event_not_publishable domain=%s error=%s", source.domain, exc)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
