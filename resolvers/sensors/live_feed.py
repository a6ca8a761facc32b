"""Stored readings from every ingest worker to every hub's live subscriptions.

Workers and hubs are separate processes (`ieum ingest` beside `ieum serve` replicas), so a
worker cannot hand its batch to the subscriptions directly. After each commit it sends
the stored readings to a live topic beside the telemetry topic; every hub follows that
topic from its end and fans the readings out to its subscribers. Only committed readings
travel (no rejects, no duplicates), compactly: msgpack, the values as the packed float32
bytes the database stores.

It is a live view, not a log: a hub reads from the end of the topic when it starts, and a
reading lost on the way (broker down for a moment) is still in PostgreSQL, where a client
reconnecting with `since` replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Container, Sequence
from datetime import datetime

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from resolvers.sensors.live import LiveReadings
from resolvers.sensors.message import Reading, unpack
from resolvers.sensors.positions import Position

log = logging.getLogger(__name__)

RETENTION_MS = 10 * 60 * 1000
CHUNK = 1000  # readings per message: about 300 KB, well under Kafka's 1 MB default
Row = tuple[str, str, datetime, float, float, int, float | None, float | None, bytes]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Row])
_positions = msgspec.msgpack.Decoder(list[Position])  # a row's first fields


def live_topic_for(telemetry_topic: str) -> str:
    """`ieum.telemetry.v1` → `ieum.telemetry.v1.live`: each telemetry topic its own feed."""
    return f"{telemetry_topic}.live"


def encode(readings: Sequence[Reading]) -> list[bytes]:
    rows = [
        (r.device_id, r.vehicle_id, r.ts, r.lat, r.lng, r.cell, r.speed_kmh, r.heading_deg,
         r.packed)
        for r in readings
    ]  # fmt: skip
    return [_encoder.encode(rows[i : i + CHUNK]) for i in range(0, len(rows), CHUNK)]


def decode(message: bytes, cells: Container[int] | None = None) -> list[Reading]:
    """The readings of a message; only those in `cells` if given (unpacking the values is
    most of the cost, and a hub's subscribers watch a few areas of a city)."""
    return [
        Reading(device, vehicle, ts, lat, lng, cell, speed, heading, unpack(packed), packed)
        for device, vehicle, ts, lat, lng, cell, speed, heading, packed in _decoder.decode(message)
        if cells is None or cell in cells
    ]


def positions(message: bytes) -> list[Position]:
    """The positions of a message's readings, nothing else of them decoded (about a
    third of `decode`'s time: unpacking the values is most of it)."""
    return _positions.decode(message)


async def ensure_topic(bootstrap: str, topic: str) -> None:
    """One partition (order does not matter to a live view, and a hub reads them all),
    kept for RETENTION_MS: nothing reads it later than that."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            new = NewTopic(topic, 1, 1, topic_configs={"retention.ms": str(RETENTION_MS)})
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([new])
    finally:
        await admin.close()


async def publish(producer: AIOKafkaProducer, topic: str, readings: Sequence[Reading]) -> None:
    """Queue the readings for sending. Never raises: the batch is committed already, and
    the ingest loop does not wait for (or retry on) a live view."""
    await publish_encoded(producer, topic, encode(readings))


async def publish_encoded(producer: AIOKafkaProducer, topic: str, messages: list[bytes]) -> None:
    """`publish` for messages already encoded (live_rows.py encodes a batch's columns)."""
    try:
        for message in messages:
            delivery = await producer.send(topic, value=message)
            delivery.add_done_callback(_log_failure)
    except (KafkaError, OSError) as exc:
        log.warning("live_feed.send_failed error=%r", exc)


def _log_failure(delivery: asyncio.Future[object]) -> None:
    if not delivery.cancelled() and delivery.exception() is not None:
        log.warning("live_feed.send_failed error=%r", delivery.exception())


async def follow(bootstrap: str, topic: str, live: LiveReadings) -> None:
    """Fan the feed out to this process's subscribers until cancelled. Any failure (a
    broker gone away, a bug) is logged and the feed followed again a second later: the
    hub's subscriptions must not go quiet for good."""
    while True:
        try:
            await _follow(bootstrap, topic, live)
        except Exception:
            log.exception("live_feed.follow_failed; retrying")
            await asyncio.sleep(1)


async def _follow(bootstrap: str, topic: str, live: LiveReadings) -> None:
    await ensure_topic(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            cells = live.cells
            if not cells:  # decoding 20,000 readings costs a hub about 0.16 s
                continue
            for records in batch.values():
                for record in records:
                    try:
                        readings = decode(record.value or b"", cells)
                    except msgspec.DecodeError as exc:
                        log.warning("live_feed.bad_message offset=%d error=%r", record.offset, exc)
                        continue
                    await live.publish(readings)
    finally:
        await consumer.stop()
