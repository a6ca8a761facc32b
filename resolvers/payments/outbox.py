"""Payment events: written with the change they announce, relayed to Kafka at least once.

`add` writes an event into `payment_outbox` inside the caller's transaction, so an event
exists exactly when its change was committed (a rolled-back payment announces nothing).
A `Relay` (one per hub process; several may run) sends committed events to the events
topic and marks them relayed. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so two
relays never send the same row at once; a relay that dies after the broker acknowledged
a batch but before its commit leaves the rows pending and they are sent again. Delivery
is therefore at least once, in commit order only per relay: consumers drop repeats by
`event_id` (`Deduplicator` in memory; a durable consumer keeps the ids it processed in
its own table, in the transaction that applies the event).

Each Kafka message: key = the event's key (the payment id, so a payment's events share a
partition), value = the JSON envelope `{event_id, type, occurred_at, key, data}`, header
`event_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from hub.core import db
from hub.core.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "payment_outbox"
PARTITIONS = 4
FIRST_WAIT, LONGEST_WAIT = 0.5, 15.0  # backoff after a failure, doubling
# PostgreSQL away: refused, dropped, shut down or silent.
_DATABASE_DOWN = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

# One round trip: the row and a wake-up for the relays, delivered at commit (a
# transaction's several notifications fold into one). clock_timestamp(), not now(), so
# the events of one transaction keep their order.
_ADD = """
WITH added AS (
    INSERT INTO payment_outbox (event_id, event_type, key, payload, created_at)
    VALUES ($1, $2, $3, $4, clock_timestamp())
)
SELECT pg_notify('payment_outbox', '')
"""
_ADD_MANY = """
WITH added AS (
    INSERT INTO payment_outbox (event_id, event_type, key, payload, created_at)
    SELECT e.event_id, e.event_type, e.key, e.payload, clock_timestamp()
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])
           AS e (event_id, event_type, key, payload)
)
SELECT pg_notify('payment_outbox', '')
"""
_CLAIM = """
SELECT event_id, key, payload::text AS envelope FROM payment_outbox
 WHERE relayed_at IS NULL
 ORDER BY created_at
 LIMIT $1
   FOR UPDATE SKIP LOCKED
"""


async def add(
    conn: asyncpg.Connection, event_type: str, key: str, data: dict[str, Any]
) -> uuid.UUID:
    """Write an event (e.g. `payment.confirmed`, keyed by the payment id) in the caller's
    transaction; `data` holds JSON values only. Returns its event id."""
    event_id, payload = envelope(event_type, key, data)
    await conn.execute(_ADD, event_id, event_type, key, payload)
    return event_id


async def add_many(
    conn: asyncpg.Connection, events: Sequence[tuple[str, str, dict[str, Any]]]
) -> list[uuid.UUID]:
    """Write several events (type, key, data), in this order, in one round trip of the
    caller's transaction; their event ids."""
    if not events:
        return []
    made = [envelope(event_type, key, data) for event_type, key, data in events]
    await conn.execute(
        _ADD_MANY,
        [event_id for event_id, _ in made],
        [event_type for event_type, _, _ in events],
        [key for _, key, _ in events],
        [payload for _, payload in made],
    )
    return [event_id for event_id, _ in made]


def envelope(event_type: str, key: str, data: dict[str, Any]) -> tuple[uuid.UUID, dict[str, Any]]:
    """A new event's id and envelope: for `add`, or for a statement of the caller's that
    writes the event with the change it announces (and notifies CHANNEL), so that the
    change and its event take one round trip."""
    event_id = uuid.uuid4()
    return event_id, {
        "event_id": str(event_id),
        "type": event_type,
        "occurred_at": datetime.now(UTC).isoformat(),
        "key": key,
        "data": data,
    }


async def prune(pool: asyncpg.Pool, older_than: timedelta) -> int:
    """Delete events relayed more than `older_than` ago; how many were deleted."""
    status: str = await pool.execute(
        "DELETE FROM payment_outbox WHERE relayed_at < now() - $1::interval", older_than
    )
    return int(status.split()[-1])


async def ensure_topic(bootstrap: str, topic: str) -> None:
    """Create the events topic unless it exists (no-op when another process was faster)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


class BrokerUnavailable(Exception):
    """The broker refused, failed or did not acknowledge in time."""


class Relay:
    """Sends committed events to `topic` until told to stop.

    It wakes on `NOTIFY payment_outbox` (its own connection LISTENs, and is opened again
    when it drops) or every `poll_seconds` in case a notification was missed, and sends up
    to `batch` events per transaction. While the broker or PostgreSQL is away it waits
    with backoff; the events stay pending meanwhile.
    """

    def __init__(
        self,
        database_url: str,
        settings: Settings,
        bootstrap: str,
        topic: str,
        *,
        batch: int = 200,
        poll_seconds: float = 5.0,
        broker_timeout: float = 10.0,
    ) -> None:
        self.database_url = database_url
        self.settings = settings
        self.bootstrap = bootstrap
        self.topic = topic
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.broker_timeout = broker_timeout
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._producer: AIOKafkaProducer | None = None
        self._failing = False

    async def run(self, stop: asyncio.Event) -> None:
        wait = FIRST_WAIT
        try:
            while not stop.is_set():
                self._wake.clear()  # a notification from here on wakes the next round
                try:
                    sent = await self._round()
                except BrokerUnavailable as exc:
                    await self._drop_producer()
                    self._failed("broker", exc)
                except _DATABASE_DOWN as exc:
                    self._drop_connection()
                    self._failed("database", exc)
                else:
                    if self._failing:
                        log.warning("payments.outbox.relaying_again")
                    self._failing, wait = False, FIRST_WAIT
                    if sent < self.batch:  # caught up: sleep until the next commit
                        await _any(self.poll_seconds, stop, self._wake)
                    continue
                await _any(wait * random.uniform(0.8, 1.2), stop)  # noqa: S311 (jitter)
                wait = min(LONGEST_WAIT, wait * 2)
        finally:
            await self._drop_producer()
            await self._close_connection()

    async def _round(self) -> int:
        """Claim, send and mark one batch; how many events went out."""
        producer = await self._producer_ready()
        conn = await self._connection()
        limit = self.settings.db_timeout_seconds * 2 + self.broker_timeout
        async with asyncio.timeout(limit), conn.transaction():
            rows = await conn.fetch(_CLAIM, self.batch)
            if not rows:
                return 0
            await self._send(producer, rows)
            await conn.execute(
                "UPDATE payment_outbox SET relayed_at = now() WHERE event_id = ANY($1::uuid[])",
                [row["event_id"] for row in rows],
            )
        return len(rows)

    async def _send(self, producer: AIOKafkaProducer, rows: list[asyncpg.Record]) -> None:
        """Send in order and wait until the broker acknowledged every one."""
        try:
            async with asyncio.timeout(self.broker_timeout):
                deliveries = [
                    await producer.send(
                        self.topic,
                        key=row["key"].encode(),
                        value=row["envelope"].encode(),
                        headers=[("event_id", str(row["event_id"]).encode())],
                    )
                    for row in rows
                ]
                results = await asyncio.gather(*deliveries, return_exceptions=True)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BrokerUnavailable(repr(exc)) from exc
        if failed := next((r for r in results if isinstance(r, BaseException)), None):
            raise BrokerUnavailable(repr(failed)) from failed

    async def _producer_ready(self) -> AIOKafkaProducer:
        if self._producer is None:
            # Tansu has no InitProducerId, so no idempotent producer: acks from all
            # replicas, and consumers drop the repeats a resend makes.
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                request_timeout_ms=int(self.broker_timeout * 1000),
            )
            try:
                async with asyncio.timeout(self.broker_timeout):
                    await producer.start()
                    await ensure_topic(self.bootstrap, self.topic)
            except (KafkaError, OSError, TimeoutError) as exc:
                await producer.stop()
                raise BrokerUnavailable(repr(exc)) from exc
            self._producer = producer
        return self._producer

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(
                self.database_url,
                timeout=self.settings.db_timeout_seconds,
                command_timeout=self.settings.db_statement_timeout_seconds,
                server_settings={**db.SERVER_SETTINGS, "application_name": "ieum outbox relay"},
            )
            await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
            conn.add_termination_listener(lambda _: self._wake.set())
            self._conn = conn
            self._wake.set()  # events may have been committed while nobody listened
        return self._conn

    def _drop_connection(self) -> None:
        """Forget a connection after a failure: its state is unknown, a new one is not."""
        if self._conn is not None:
            self._conn.terminate()
        self._conn = None

    async def _close_connection(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            try:
                await self._conn.close(timeout=self.settings.db_timeout_seconds)
            except _DATABASE_DOWN:
                self._conn.terminate()
        self._conn = None

    async def _drop_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await self._producer.stop()
        self._producer = None

    def _failed(self, what: str, exc: BaseException) -> None:
        if not self._failing:
            log.error("payments.outbox.%s_unavailable error=%r; events wait", what, exc)
        self._failing = True


async def _any(seconds: float, *events: asyncio.Event) -> None:
    """Wait until one of `events` is set, or `seconds` pass."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Deduplicator:
    """The last `size` event ids seen, to drop the repeats at-least-once delivery makes.

    Memory only: a consumer that restarts may apply an event it applied before, so a
    consumer whose effects last keeps processed ids in its own table instead.
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        """True the first time an id is seen (recently), False for a repeat."""
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


async def follow(
    bootstrap: str, topic: str, *, from_end: bool = True
) -> AsyncGenerator[dict[str, Any], None]:
    """The topic's event envelopes, each once, until the caller stops iterating (close the
    generator, e.g. with `contextlib.aclosing`, to release its consumer). From the end of
    every partition (events from now on) or from the beginning. Not in a consumer group:
    every follower sees every event."""
    await ensure_topic(bootstrap, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        if from_end:
            await consumer.seek_to_end(*partitions)
        else:
            await consumer.seek_to_beginning(*partitions)
        seen = Deduplicator()
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    envelope = _envelope(record.value)
                    if envelope is None:
                        log.warning("payments.outbox.bad_event offset=%d", record.offset)
                    elif seen.first_time(envelope["event_id"]):
                        yield envelope
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        await consumer.client.force_metadata_update()
        numbers = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, number) for number in sorted(numbers)]


def _envelope(value: bytes | None) -> dict[str, Any] | None:
    try:
        envelope = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("event_id"), str):
        return None
    return envelope
