"""`ieum ingest`: device messages from Kafka into PostgreSQL, exactly once in effect.

Each batch from `getmany` becomes one PostgreSQL transaction: the new readings (a COPY
straight into sensor_readings; only if some were stored before, a staging table and
INSERT … ON CONFLICT DO NOTHING), their per-cell rollups, and the consumer offsets the
batch reaches. A batch is decoded into columns (columns.py, JSON or the compact binary
encoding) and its payloads are planned while the previous batch is written
(ingest_plan.py), so the database and the worker work at the same time.

On (re)assignment a worker seeks to the offsets stored in PostgreSQL, not Kafka's, so a
worker killed at any point and restarted re-reads exactly what was not committed, and
readings already stored are not counted twice. Rejected messages go to the dead-letter
topic, with the reason and source, before the commit: at-least-once there, but keyed by
their source (`topic:partition:offset`), so a consumer of dead letters drops a repeat by
its key; and a batch whose offsets are already stored (its COMMIT went through but the
answer was lost) is recognised and skipped whole.

Offsets beyond a partition's end (the topic was recreated, e.g. by an embedded broker
that keeps topics in memory, or truncated) are an error that is logged and counted, and
resolved by one rule: read the partition again from its beginning. Re-reading is safe: a
reading already stored with the same content is a redelivery, neither stored again nor a
dead letter. On a clean stop the worker first drains what the broker holds.
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
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
)
from aiokafka.structs import ConsumerRecord

from hub.core import db
from hub.core.settings import Settings
from resolvers.sensors import ingest_plan, ingest_store, live_feed, monitoring
from resolvers.sensors.columns import BatchDecoder, ReadingBatch
from resolvers.sensors.ingest_db import OUTAGE, Backoff, IngestDatabase, sleep_unless
from resolvers.sensors.message import Reading
from resolvers.sensors.message_binary import EPOCH
from resolvers.sensors.settings import SensorsSettings

log = logging.getLogger(__name__)

TOPIC = "ieum.telemetry.v1"
DLQ_TOPIC = "ieum.telemetry.dlq"
GROUP_ID = "ieum-ingest"
MAX_BATCH = 20_000  # larger batches fold more readings into each rollup row

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
        self.db = IngestDatabase(database_url, settings, self._prepare)
        self.stop = asyncio.Event()
        self._partitions_checked: float | None = None  # monotonic time; None: never
        self.decoder = BatchDecoder()
        self.live: asyncio.Task[None] | None = None  # the last committed batch's live feed

    @property
    def conn(self) -> asyncpg.Connection | None:
        return self.db.conn

    @conn.setter
    def conn(self, value: asyncpg.Connection | None) -> None:
        self.db.conn = value

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        await ensure_topics(self.bootstrap, self.sensors.telemetry_partitions, self.topic)
        await live_feed.ensure_topic(self.bootstrap, self.live_topic)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            # Positions come from PostgreSQL; one beyond a partition's end must reach us
            # (OffsetOutOfRangeError), not be reset silently.
            auto_offset_reset="none",
            max_poll_records=MAX_BATCH,
            # Fewer, larger fetches: a batch of 20,000 messages is about 25 MB.
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        self.consumer = consumer
        await producer.start()
        try:
            if await self.db.connection(stop) is None:
                return  # told to stop while waiting for the database
            consumer.subscribe([self.topic], listener=_Rebalance(self))
            await consumer.start()
            try:
                await self._consume(consumer, producer, stop)
            finally:
                await _bounded(consumer.stop(), "consumer")
        finally:
            if self.live is not None:  # the last batches' live feed, before the producer
                await _bounded(self.live, "live_feed")
            await _bounded(producer.stop(), "producer")
            await self.db.close()

    async def _consume(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        """Until stopped, then until drained: everything the broker held when the stop came
        (each assigned partition read to its end), within `ingest_drain_seconds`."""
        # Two batches in flight: while batch N is written (PostgreSQL works, this
        # process waits), batch N+1 is fetched and parsed. Writes stay in order.
        writing: asyncio.Task[bool] | None = None
        drain_until: float | None = None
        try:
            while True:
                if stop.is_set() and drain_until is None:
                    drain_until = time.monotonic() + self.sensors.ingest_drain_seconds
                    log.info("ingest.draining within_seconds=%s", self.sensors.ingest_drain_seconds)
                if drain_until is not None and time.monotonic() >= drain_until:
                    log.warning("ingest.drain.incomplete partition_ends=%s", _ends(consumer))
                    return
                try:
                    batch = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
                except OffsetOutOfRangeError as exc:  # Kafka's answer to a stale offset
                    writing = await _finish(writing)
                    for tp, offset in exc.args[0].items():
                        await self._restart_partition(consumer, tp, offset, None)
                    continue
                except NoOffsetForPartitionError:
                    # Fetched before the rebalance listener placed the partitions (it
                    # reads their offsets from PostgreSQL), or it could not: place them.
                    # Only a worker stopping with the database away leaves them unplaced;
                    # it reads them again on its next start.
                    placed = await _Rebalance(self).place(consumer.assignment())
                    if stop.is_set() and not placed:
                        return
                    continue
                if writing is not None and writing.done():
                    writing = await _finish(writing)  # a failed write stops the worker here
                if stale := await _beyond_end(consumer, set(consumer.assignment()) - set(batch)):
                    writing = await _finish(writing)  # its offsets are stored before ours
                    for tp, (position, end) in stale.items():
                        await self._restart_partition(consumer, tp, position, end)
                if not batch:
                    if writing is None:
                        if drain_until is not None and await _caught_up(consumer):
                            log.info("ingest.drained")
                            return
                        await self._maintain_when_idle()
                    continue
                parsed = await _parse_batch(batch, self.decoder)
                writing = await _finish(writing)
                writing = asyncio.create_task(self._process_with_retry(consumer, producer, parsed))
        finally:
            if writing is not None and not writing.done():
                if drain_until is not None:  # the last batch may finish within the bound
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            asyncio.shield(writing), max(0.0, drain_until - time.monotonic())
                        )
                if not writing.done():
                    writing.cancel()  # no COMMIT, nothing half-written: it is read again
                    with contextlib.suppress(asyncio.CancelledError):
                        await writing

    async def _restart_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, stored: int, end: int | None
    ) -> None:
        """The documented rule for an offset beyond the end: read the partition again from
        its beginning; what is already stored is recognised as a redelivery."""
        beginning = (await consumer.beginning_offsets([tp]))[tp]
        if end is None:
            end = (await consumer.end_offsets([tp]))[tp]
        log.error(
            "ingest.offset_beyond_end topic=%s partition=%d stored_offset=%d partition_end=%d"
            " restart_from=%d (the topic was recreated or truncated; reading it again from"
            " its beginning)",
            tp.topic,
            tp.partition,
            stored,
            end,
            beginning,
        )
        monitoring.INGEST_OFFSET_RESETS.labels(tp.topic, str(tp.partition)).inc()
        while True:
            conn = await self.db.connection(self.stop)
            if conn is None:
                return  # stopping: the next start finds the same stale offset
            try:
                async with self.lock, self._write_bound():
                    await ingest_store.rewind_offset(
                        conn, self.group_id, self.topic, tp.partition, beginning
                    )
                break
            except OUTAGE as exc:
                self.db.lost(exc)
        consumer.seek(tp, beginning)

    def _write_bound(self) -> asyncio.Timeout:
        return asyncio.timeout(self.sensors.ingest_write_timeout_seconds)

    async def _prepare(self, conn: asyncpg.Connection) -> None:
        await ingest_store.prepare_connection(conn, self.sensors.ingest_write_timeout_seconds)

    async def _connect(self) -> asyncpg.Connection:
        """A connection set up for ingest (tests use it for maintenance alone)."""
        conn = await db.connect(self.database_url, self.settings)
        await self._prepare(conn)
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
        if self.conn is None or self.conn.is_closed():
            return  # the next batch waits for the database
        try:
            async with self.lock, self._write_bound():  # the listener uses the connection too
                await self._maintain()
        except OUTAGE as exc:  # retried with the next batch
            log.warning("ingest.maintenance.failed error=%r", exc)
            self.db.lost(exc)

    async def _process_with_retry(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, parsed: ParsedBatch
    ) -> bool:
        """Write the batch, retrying through outages; False if the worker was told to stop
        first (nothing of the batch was committed, so it is read again on the next start)."""
        batch = parsed.batch
        backoff = Backoff()
        while True:
            if await self.db.connection(self.stop) is None:
                return False
            try:
                async with self.lock, self._write_bound():
                    await self._maintain()
                    await self._process(producer, parsed)
                break
            except (*OUTAGE, KafkaError) as exc:
                log.warning("ingest.batch.failed error=%r; retrying", exc)
                monitoring.INGEST_FAILURES.inc()
                if isinstance(exc, KafkaError):
                    await self._ensure_side_topics()
                else:
                    self.db.lost(exc)
                if self.stop.is_set():
                    return False
                await sleep_unless(self.stop, backoff.wait())
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
        return True

    async def _ensure_side_topics(self) -> None:
        """A broker that lost its topics (restarted in memory) gets them back."""
        try:
            async with asyncio.timeout(10):
                await ensure_topics(self.bootstrap, self.sensors.telemetry_partitions, self.topic)
                await live_feed.ensure_topic(self.bootstrap, self.live_topic)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.info("ingest.topics.unavailable error=%r", exc)

    async def _process(self, producer: AIOKafkaProducer, parsed: ParsedBatch) -> None:
        started = time.perf_counter()
        batch = parsed.batch
        assert self.conn is not None
        conn = self.conn
        async with conn.transaction():
            done = await ingest_store.lock_offsets(
                conn, self.group_id, self.topic, (tp.partition for tp in batch)
            )
            fresh, rejects, skipped = _not_yet_stored(parsed, done)
            if skipped:
                log.info("ingest.batch.already_stored messages=%d", skipped)
            readings = parsed.readings
            devices = await ingest_store.device_states(
                conn, {readings.device_ids[i] for i in np.flatnonzero(fresh).tolist()}
            )
            plan = parsed.plan
            if plan is None or plan.states != devices or skipped:
                plan = ingest_plan.make(readings, fresh, devices)  # not as assumed ahead
            checked = plan.checked
            rejects += [(parsed.records[parsed.rows[i]], *why) for i, why in checked.rejects]
            redelivered = checked.redelivered
            accepted = checked.accepted
            if len(accepted) and not await ingest_store.copy_new_readings(conn, plan.copy):
                known = await ingest_store.insert_batch(
                    conn,
                    ingest_plan.staging_copy(readings, plan),
                    len(accepted),
                    checked.devices,
                    checked.vehicles,
                )
                again = set()
                by_key = {
                    (readings.device_ids[i], EPOCH + timedelta(microseconds=t)): i
                    for i, t in zip(accepted.tolist(), readings.ts[accepted].tolist(), strict=True)
                }
                for key, same in known.items():
                    i = by_key[key]
                    again.add(i)
                    if same:
                        redelivered += 1
                    else:
                        rejects.append(
                            (
                                parsed.records[parsed.rows[i]],
                                "duplicate",
                                "this device and timestamp are stored with other values",
                            )
                        )
                if again:
                    stored = np.array(
                        [i for i in accepted.tolist() if i not in again], dtype=np.int64
                    )
                    plan = ingest_plan.restricted(readings, plan, stored)
            await ingest_store.merge_rollups(conn, plan.rollups, plan.slots)
            await ingest_store.store_offsets(
                conn,
                self.group_id,
                self.topic,
                {tp.partition: records[-1].offset + 1 for tp, records in batch.items()},
            )
            await _dead_letters(producer, self.dlq_topic, rejects)

        stored = plan.stored
        monitoring.INGEST_ACCEPTED.inc(len(stored))
        monitoring.INGEST_VALUES.inc(plan.values)
        monitoring.INGEST_REDELIVERED.inc(redelivered)
        for _, reason, _ in rejects:
            monitoring.INGEST_REJECTED.labels(reason).inc()
        monitoring.INGEST_BATCH_SECONDS.observe(time.perf_counter() - started + parsed.seconds)
        if len(stored):
            # Sent while the next batch is written, in commit order (each after the last).
            committed = readings.take(stored) if self.on_commit is not None else None
            self.live = asyncio.create_task(
                self._publish(self.live, producer, plan.live, committed)
            )

    async def _publish(
        self,
        previous: asyncio.Task[None] | None,
        producer: AIOKafkaProducer,
        messages: list[bytes],
        committed: ReadingBatch | None,
    ) -> None:
        """A committed batch to the live feed (and `on_commit`), after the one before."""
        if previous is not None:
            await asyncio.wait([previous])
        await live_feed.publish_encoded(producer, self.live_topic, messages)
        if self.on_commit is not None and committed is not None:
            try:
                await self.on_commit(committed.readings())
            except Exception:  # the batch is committed; a listener's failure is its own
                log.exception("ingest.on_commit.failed")


def _not_yet_stored(
    parsed: ParsedBatch, done: dict[int, int]
) -> tuple[np.ndarray, list[tuple[ConsumerRecord, str, str]], int]:
    """The batch without the messages below the stored offsets (already committed): a
    mask over its readings, and the rejects still to send."""
    if not done:
        return np.ones(len(parsed.readings), dtype=bool), list(parsed.rejects), 0
    floor = np.zeros(len(parsed.records), dtype=np.int64)
    for partition, offset in done.items():
        floor[parsed.partitions == partition] = offset
    fresh_records = parsed.offsets >= floor
    fresh = fresh_records[parsed.rows]
    rejects = [x for x in parsed.rejects if x[0].offset >= done.get(x[0].partition, 0)]
    skipped = len(parsed.records) - int(fresh_records.sum())
    return fresh, rejects, skipped


async def _finish(writing: asyncio.Task[bool] | None) -> asyncio.Task[bool] | None:
    """Wait for the batch being written; its failure is the worker's. None: nothing is
    being written any more (callers keep it as their `writing`)."""
    if writing is not None:
        await writing
    return None


async def _bounded(stopping: Awaitable[object], what: str, seconds: float = 10) -> None:
    """A Kafka client's stop flushes and leaves the group: with the broker gone it would
    wait forever, and the process would ignore SIGTERM."""
    try:
        await asyncio.wait_for(stopping, seconds)
    except (TimeoutError, KafkaError, OSError) as exc:
        log.warning("ingest.%s.stop_incomplete error=%r", what, exc)
    except asyncio.CancelledError:
        # aiokafka's fetcher lets the cancellation of its own retry task escape its close()
        # when the broker is gone; only a cancellation aimed at us goes on.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("ingest.%s.stop_incomplete error=CancelledError", what)


async def _beyond_end(
    consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
) -> dict[TopicPartition, tuple[int, int]]:
    """Positions beyond the partition's end as the last fetch reported it. Some brokers
    (Tansu) answer a fetch there with nothing instead of an error; a worker waiting there
    would skip every message of the new topic below the old offset."""
    found = {}
    for tp in partitions:
        end = consumer.highwater(tp)
        if end is not None and (position := await consumer.position(tp)) > end:
            found[tp] = (position, end)
    return found


async def _caught_up(consumer: AIOKafkaConsumer) -> bool:
    """Every assigned partition read to the end its last fetch reported (not before the
    group gave this worker its partitions)."""
    if not consumer.assignment():
        return False
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None or await consumer.position(tp) < end:
            return False
    return True


def _ends(consumer: AIOKafkaConsumer) -> dict[int, int | None]:
    return {tp.partition: consumer.highwater(tp) for tp in sorted(consumer.assignment())}


@dataclass(frozen=True)
class ParsedBatch:
    """One `getmany` result, parsed: the readings to check against the registry (as
    columns, each with the index of its record) and the messages already rejected by
    their content."""

    batch: dict[TopicPartition, list[ConsumerRecord]]
    records: list[ConsumerRecord]  # the batch's records, in order
    partitions: np.ndarray  # of each record
    offsets: np.ndarray  # of each record
    readings: ReadingBatch
    rows: np.ndarray  # each reading's index in `records`
    rejects: list[tuple[ConsumerRecord, str, str]]
    seconds: float
    plan: ingest_plan.Plan | None  # made ahead, for the registry the messages describe


PARSE_SLICE = 1000  # messages parsed between yields, so the batch being written moves on


async def _parse_batch(
    batch: dict[TopicPartition, list[ConsumerRecord]], decoder: BatchDecoder | None = None
) -> ParsedBatch:
    started = time.perf_counter()
    decoder = decoder or BatchDecoder()
    records = [record for records in batch.values() for record in records]
    now = datetime.now(UTC)
    parts: list[ReadingBatch] = []
    rows: list[np.ndarray] = []
    rejects: list[tuple[ConsumerRecord, str, str]] = []
    for first in range(0, len(records), PARSE_SLICE):
        raws = [record.value or b"" for record in records[first : first + PARSE_SLICE]]
        readings, index, refused = decoder.decode(raws, now)
        parts.append(readings)
        rows.append(index + first)
        rejects += [(records[first + i], exc.reason, exc.detail) for i, exc in refused]
        if first + PARSE_SLICE < len(records):
            await asyncio.sleep(0)
    readings = ReadingBatch.concat(parts) if len(parts) != 1 else parts[0]
    await asyncio.sleep(0)
    fresh = np.ones(len(readings), dtype=bool)
    plan = ingest_plan.make(readings, fresh, ingest_plan.assumed(readings))
    return ParsedBatch(
        batch,
        records,
        np.fromiter((r.partition for r in records), dtype=np.int64, count=len(records)),
        np.fromiter((r.offset for r in records), dtype=np.int64, count=len(records)),
        readings,
        np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
        rejects,
        time.perf_counter() - started,
        plan,
    )


async def _dead_letters(
    producer: AIOKafkaProducer, topic: str, rejects: list[tuple[ConsumerRecord, str, str]]
) -> None:
    """The original bytes, the reason and where they came from; all acknowledged. Keyed by
    the source (`topic:partition:offset`): a batch written again after a lost COMMIT sends
    the same letters under the same keys, so their consumer keeps one of each."""
    sends = [
        await producer.send(
            topic,
            value=record.value,
            key=dead_letter_key(record),
            headers=[
                ("reason", reason.encode()),
                ("detail", detail.encode()),
                ("source_topic", record.topic.encode()),
                ("source_partition", str(record.partition).encode()),
                ("source_offset", str(record.offset).encode()),
                ("source_key", record.key or b""),
            ],
        )
        for record, reason, detail in rejects
    ]
    await asyncio.gather(*sends)


def dead_letter_key(record: ConsumerRecord) -> bytes:
    return f"{record.topic}:{record.partition}:{record.offset}".encode()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.worker.lock:  # let the batch in flight commit first
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.place(assigned)

    async def place(self, assigned: set[TopicPartition]) -> bool:
        """Resume from the offsets PostgreSQL holds: they match the data exactly. While
        the database is away this waits (the fetches wait with it); a worker told to stop
        meanwhile leaves the partitions without a position and reads nothing more (False)."""
        worker = self.worker
        consumer = worker.consumer
        assert consumer is not None
        while True:
            conn = await worker.db.connection(worker.stop)
            if conn is None:
                return False
            try:
                async with worker.lock, worker._write_bound():
                    stored = await ingest_store.stored_offsets(conn, worker.group_id, worker.topic)
                break
            except OUTAGE as exc:
                worker.db.lost(exc)
        fresh = [tp for tp in assigned if tp.partition not in stored]
        # An explicit position: seek_to_beginning() resets lazily, after records already
        # fetched, which would hand the first batch over twice.
        beginnings = await consumer.beginning_offsets(fresh) if fresh else {}
        for tp in assigned:
            consumer.seek(tp, stored.get(tp.partition, beginnings.get(tp, 0)))
        log.info("ingest.assigned partitions=%s", sorted(tp.partition for tp in assigned))
        return True
