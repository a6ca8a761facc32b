"""Helpers for the sensor tests: messages, a producer, and running ingest workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from auth import clients
from hub.core.settings import Settings
from resolvers.sensors import devices
from resolvers.sensors.ingest import IngestWorker, dlq_for, ensure_topics

PARTITIONS = 4


def message(
    device: str,
    vehicle: str,
    ts: datetime,
    lat: float,
    lng: float,
    metrics: dict[str, float],
    **extra: Any,
) -> bytes:
    body = {
        "schema": "ieum.telemetry.v1",
        "device_id": device,
        "vehicle_id": vehicle,
        "ts": ts.isoformat(),
        "position": {"lat": lat, "lng": lng},
        "speed_kmh": 20.0,
        "heading_deg": 90.0,
        "metrics": metrics,
        **extra,
    }
    return orjson.dumps(body)


def recent_minute(minutes_ago: int = 10) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)


async def partner(pool: asyncpg.Pool) -> str:
    client = await clients.create(pool, name="Taxi sensors", scope_names="sensors:ingest")
    return client.client_id


async def register(pool: asyncpg.Pool, owner: str, pairs: Iterable[tuple[str, str]]) -> None:
    for device, vehicle in pairs:
        await devices.register(pool, owner, device, vehicle, "")


def new_topic() -> str:
    return f"test.telemetry.{uuid.uuid4().hex[:10]}"


async def produce(bootstrap: str, topic: str, values: Iterable[tuple[bytes, bytes]]) -> int:
    await ensure_topics(bootstrap, PARTITIONS, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    count = 0
    try:
        for key, value in values:
            await producer.send(topic, value=value, key=key)
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def wait_ingested(
    pool: asyncpg.Pool, bootstrap: str, topic: str, group: str, within: float = 60
) -> None:
    """Until the offsets stored in PostgreSQL reach the end of every partition."""
    target = {p: o for p, o in (await end_offsets(bootstrap, topic)).items() if o > 0}
    deadline = asyncio.get_running_loop().time() + within
    while True:
        rows = await pool.fetch(
            "SELECT partition, next_offset FROM ingest_offsets WHERE group_id = $1 AND topic = $2",
            group,
            topic,
        )
        stored = {row["partition"]: row["next_offset"] for row in rows}
        if all(stored.get(p, 0) >= o for p, o in target.items()):
            return
        assert asyncio.get_running_loop().time() < deadline, (stored, target)
        await asyncio.sleep(0.2)


@asynccontextmanager
async def workers(
    database_url: str, bootstrap: str, topic: str, group: str, count: int = 1, **kwargs: Any
) -> AsyncIterator[list[IngestWorker]]:
    settings = Settings.from_env()
    stop = asyncio.Event()
    running = [
        IngestWorker(settings, database_url, bootstrap, group_id=group, topic=topic, **kwargs)
        for _ in range(count)
    ]
    tasks = [asyncio.create_task(worker.run(stop)) for worker in running]
    try:
        yield running
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def dead_letters(
    bootstrap: str,
    topic: str,
    expected: int,
    where: Callable[[ConsumerRecord], bool] = lambda record: True,
    *,
    all_sent: bool = False,
) -> list[ConsumerRecord]:
    """The dead letters of `topic` that `where` picks, read until `expected` came (or 20 s):
    other tests' letters on the same topic are skipped, not counted.

    `all_sent`: whatever sends letters has stopped, so the letter topic's end now is its
    end: reading stops there too (a test that asks for one more than it expects, to see
    that none comes, gets its answer without waiting out the 20 s)."""
    ends = await end_offsets(bootstrap, dlq_for(topic)) if all_sent else None
    consumer = AIOKafkaConsumer(
        dlq_for(topic), bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            if ends is not None and await _read_to(consumer, dlq_for(topic), ends):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found.extend(record for record in records if where(record))
    finally:
        await consumer.stop()
    return found


async def _read_to(consumer: AIOKafkaConsumer, topic: str, ends: dict[int, int]) -> bool:
    """Whether `consumer` has read every partition of `topic` up to `ends`."""
    assigned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
    if not set(ends) <= assigned:
        return not any(ends.values())  # not assigned yet: read on, unless there is nothing
    for partition, end in ends.items():
        if await consumer.position(TopicPartition(topic, partition)) < end:
            return False
    return True
