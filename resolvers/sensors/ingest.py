"""`ieum ingest`: device messages from Kafka into PostgreSQL, exactly once in effect.

Each batch from `getmany` becomes one PostgreSQL transaction: the new readings (COPY into
a staging table, then INSERT … ON CONFLICT DO NOTHING), their per-cell rollups, and the
consumer offsets the batch reaches. On (re)assignment a worker seeks to the offsets stored
in PostgreSQL, not Kafka's, so a worker killed at any point and restarted re-reads exactly
what was not committed, and readings already stored are not counted twice. Rejected
messages go to the dead-letter topic, with the reason and source, before the commit
(at-least-once there: a crash between the two can repeat a dead letter, never lose one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from hub.core import db
from hub.core.settings import Settings
from resolvers.sensors import ingest_store, live_feed, monitoring
from resolvers.sensors.message import Reading, Rejected, parse
from resolvers.sensors.rollup import rollups
from resolvers.sensors.settings import SensorsSettings

log = logging.getLogger(__name__)

TOPIC = "ieum.telemetry.v1"
DLQ_TOPIC = "ieum.telemetry.dlq"
GROUP_ID = "ieum-ingest"
MAX_BATCH = 20_000  # larger batches fold more readings into each rollup row
RETRY_SECONDS = 1.0

OnCommit = Callable[[Sequence[Reading]], Awaitable[None]]


def dlq_for(topic: str) -> str:
    return DLQ_TOPIC if topic == TOPIC else f"{topic}.dlq"


async def ensure_topics(bootstrap: str, partitions: int, topic: str = TOPIC) -> None:
    """The telemetry topic and its dead-letter topic (no-op when they exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name in (topic, dlq_for(topic))
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was faster
                await admin.create_topics(wanted)
    finally:
        await admin.close()


class IngestWorker:
    """One consumer in the ingest group; several share a topic's partitions."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        bootstrap: str,
        *,
        group_id: str = GROUP_ID,
        topic: str = TOPIC,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.settings = settings
        self.sensors = settings.section(SensorsSettings)
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topic = topic
        self.dlq_topic = dlq_for(topic)
        self.live_topic = live_feed.live_topic_for(topic)
        self.on_commit = on_commit  # in-process, after the live feed is sent
        self.lock = asyncio.Lock()  # held while a batch is written; rebalances wait for it
        self.consumer: AIOKafkaConsumer | None = None
        self.conn: asyncpg.Connection | None = None
        self._partitions_checked: float | None = None  # monotonic time; None: never

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_topics(self.bootstrap, self.sensors.telemetry_partitions, self.topic)
        await live_feed.ensure_topic(self.bootstrap, self.live_topic)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_BATCH,
            # Fewer, larger fetches: a batch of 20,000 messages is about 25 MB.
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        self.consumer = consumer
        await producer.start()
        try:
            self.conn = await self._connect()
            consumer.subscribe([self.topic], listener=_Rebalance(self))
            await consumer.start()
            # Two batches in flight: while batch N is written (PostgreSQL works, this
            # process waits), batch N+1 is fetched and parsed. Writes stay in order.
            writing: asyncio.Task[None] | None = None
            try:
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
                    if writing is not None and writing.done():
                        writing, done = None, writing
                        await done  # a failed write stops the worker here
                    if not batch:
                        if writing is None:
                            await self._maintain_when_idle()
                        continue
                    parsed = await _parse_batch(batch)
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(
                        self._process_with_retry(consumer, producer, parsed, stop)
                    )
                if writing is not None:
                    await writing
            finally:
                if writing is not None and not writing.done():
                    writing.cancel()  # the worker is dying: no COMMIT, nothing half-written
                    with contextlib.suppress(asyncio.CancelledError):
                        await writing
                await consumer.stop()
        finally:
            await producer.stop()
            if self.conn is not None:
                await self.conn.close()

    async def _connect(self) -> asyncpg.Connection:
        conn = await db.connect(self.database_url, self.settings)
        await ingest_store.prepare_connection(conn)
        return conn

    async def _maintain(self) -> None:
        """Partitions for the days messages may carry; old raw partitions dropped. Hourly."""
        checked = self._partitions_checked
        if checked is not None and time.monotonic() - checked < 3600:
            return
        assert self.conn is not None
        today = datetime.now(UTC).date()
        await ingest_store.ensure_partitions(
            self.conn, today - timedelta(days=8), today + timedelta(days=2)
        )
        retention = today - timedelta(days=self.sensors.raw_retention_days)
        for name in await ingest_store.drop_partitions_before(self.conn, retention):
            log.info("ingest.partition.dropped name=%s", name)
        self._partitions_checked = time.monotonic()

    async def _maintain_when_idle(self) -> None:
        try:
            async with self.lock:  # the rebalance listener uses the connection too
                await self._maintain()
        except (asyncpg.PostgresError, OSError) as exc:  # retried with the next batch
            log.warning("ingest.maintenance.failed error=%r", exc)

    async def _process_with_retry(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        parsed: ParsedBatch,
        stop: asyncio.Event,
    ) -> None:
        batch = parsed.batch
        while True:
            try:
                async with self.lock:
                    await self._maintain()
                    await self._process(producer, parsed)
                break
            except (asyncpg.PostgresError, OSError, KafkaError, TimeoutError) as exc:
                log.warning("ingest.batch.failed error=%r; retrying", exc)
                monitoring.INGEST_FAILURES.inc()
                if stop.is_set():
                    raise
                await asyncio.sleep(RETRY_SECONDS)
                if self.conn is None or self.conn.is_closed():
                    try:
                        self.conn = await self._connect()
                    except (OSError, asyncpg.PostgresError) as again:
                        log.warning("ingest.db.reconnect_failed error=%r", again)
        try:
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
        except KafkaError as exc:  # only lag metrics read Kafka's offsets; ours are in PG
            log.info("ingest.kafka_commit.skipped error=%r", exc)
        for tp in batch:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                monitoring.INGEST_LAG.labels(str(tp.partition)).set(
                    highwater - batch[tp][-1].offset - 1
                )

    async def _process(self, producer: AIOKafkaProducer, parsed: ParsedBatch) -> None:
        started = time.perf_counter()
        batch = parsed.batch
        candidates = parsed.candidates
        rejects = list(parsed.rejects)  # a retried batch starts again from the parse result
        assert self.conn is not None
        conn = self.conn
        devices = await ingest_store.device_states(conn, (r.device_id for _, r in candidates))
        accepted: list[tuple[ConsumerRecord, Reading]] = []
        seen: set[tuple[str, datetime]] = set()
        for record, reading in candidates:
            state = devices.get(reading.device_id)
            key = (reading.device_id, reading.ts)
            if state is None:
                rejects.append((record, "unknown_device", f"{reading.device_id} is not registered"))
            elif state[1]:
                rejects.append((record, "disabled_device", f"{reading.device_id} is disabled"))
            elif state[0] != reading.vehicle_id:
                rejects.append(
                    (record, "vehicle_mismatch", f"{reading.device_id} is on {state[0]}")
                )
            elif key in seen:
                rejects.append((record, "duplicate", "same device and timestamp earlier in batch"))
            else:
                seen.add(key)
                accepted.append((record, reading))

        async with conn.transaction():
            known = await ingest_store.insert_readings(conn, [r for _, r in accepted])
            stored = [r for _, r in accepted]
            if known:
                stored = [r for r in stored if (r.device_id, r.ts) not in known]
                for record, reading in accepted:
                    if (reading.device_id, reading.ts) in known:
                        rejects.append(
                            (record, "duplicate", "this device and timestamp are stored")
                        )
            rows = rollups(stored)
            await ingest_store.upsert_rollups(conn, rows)
            await ingest_store.store_offsets(
                conn,
                self.group_id,
                self.topic,
                {tp.partition: records[-1].offset + 1 for tp, records in batch.items()},
            )
            await _dead_letters(producer, self.dlq_topic, rejects)

        monitoring.INGEST_ACCEPTED.inc(len(stored))
        monitoring.INGEST_VALUES.inc(sum(sum(row.n) for row in rows))
        for _, reason, _ in rejects:
            monitoring.INGEST_REJECTED.labels(reason).inc()
        monitoring.INGEST_BATCH_SECONDS.observe(time.perf_counter() - started + parsed.seconds)
        if stored:
            await live_feed.publish(producer, self.live_topic, stored)
        if self.on_commit is not None and stored:
            await self.on_commit(stored)


@dataclass(frozen=True)
class ParsedBatch:
    """One `getmany` result, parsed: the readings to check against the registry and the
    messages already rejected by their content."""

    batch: dict[TopicPartition, list[ConsumerRecord]]
    candidates: list[tuple[ConsumerRecord, Reading]]
    rejects: list[tuple[ConsumerRecord, str, str]]
    seconds: float


PARSE_SLICE = 500  # messages parsed between yields, so the batch being written moves on


async def _parse_batch(batch: dict[TopicPartition, list[ConsumerRecord]]) -> ParsedBatch:
    started = time.perf_counter()
    candidates: list[tuple[ConsumerRecord, Reading]] = []
    rejects: list[tuple[ConsumerRecord, str, str]] = []
    now = datetime.now(UTC)
    parsed = 0
    for records in batch.values():
        for record in records:
            try:
                candidates.append((record, parse(record.value or b"", now)))
            except Rejected as exc:
                rejects.append((record, exc.reason, exc.detail))
            parsed += 1
            if parsed % PARSE_SLICE == 0:
                await asyncio.sleep(0)
    return ParsedBatch(batch, candidates, rejects, time.perf_counter() - started)


async def _dead_letters(
    producer: AIOKafkaProducer, topic: str, rejects: list[tuple[ConsumerRecord, str, str]]
) -> None:
    """The original bytes, the reason and where they came from; all acknowledged."""
    sends = [
        await producer.send(
            topic,
            value=record.value,
            key=record.key,
            headers=[
                ("reason", reason.encode()),
                ("detail", detail.encode()),
                ("source_topic", record.topic.encode()),
                ("source_partition", str(record.partition).encode()),
                ("source_offset", str(record.offset).encode()),
            ],
        )
        for record, reason, detail in rejects
    ]
    await asyncio.gather(*sends)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.worker.lock:  # let the batch in flight commit first
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Resume from the offsets PostgreSQL holds: they match the data exactly."""
        consumer = self.worker.consumer
        assert consumer is not None and self.worker.conn is not None
        async with self.worker.lock:  # the connection is the batch writer's too
            stored = await ingest_store.stored_offsets(
                self.worker.conn, self.worker.group_id, self.worker.topic
            )
        fresh = [tp for tp in assigned if tp.partition not in stored]
        # An explicit position: seek_to_beginning() resets lazily, after records already
        # fetched, which would hand the first batch over twice.
        beginnings = await consumer.beginning_offsets(fresh) if fresh else {}
        for tp in assigned:
            consumer.seek(tp, stored.get(tp.partition, beginnings.get(tp, 0)))
        log.info("ingest.assigned partitions=%s", sorted(tp.partition for tp in assigned))
