"""Ingest throughput of one worker, against a bare COPY of the same rows in the same run.

    .venv/bin/python bench/ingest.py [--messages 100000] [--vehicles 1000]

Starts embedded PostgreSQL and broker (or uses IEUM_DATABASE_URL / IEUM_KAFKA_BOOTSTRAP),
registers the devices, produces the messages (every message carries all catalog metrics),
then times one IngestWorker from the first message to the last offset stored. The
baseline COPYs the same readings, already parsed and packed, into an unindexed copy of
the readings table: the database's own limit for this row shape.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from harness import servers

from adapters.sandbox import taxi_fleet as simulate
from auth import clients
from hub.bootstrap import prepare_database
from hub.core import db, gc_tuning
from hub.core.settings import Settings
from hub.domains import installed
from resolvers.sensors import ingest_store
from resolvers.sensors.catalog import metrics
from resolvers.sensors.ingest import IngestWorker, ensure_topics
from resolvers.sensors.message import parse

installed()  # the domains' settings sections, as `ieum` loads them


def make_messages(count: int, vehicles: int) -> list[tuple[bytes, bytes]]:
    """The simulator's fleet driving Seoul roads, one message a second per vehicle, with
    every catalog metric (the simulator's realistic ones plus the rest filled in)."""
    rng = random.Random(3)
    fleet = simulate.fleet(vehicles)
    start = datetime.now(UTC) - timedelta(hours=6)
    rest = {m.name: round(m.min + (m.max - m.min) * 0.25, 3) for m in metrics()}
    out: list[tuple[bytes, bytes]] = []
    second = 0
    while len(out) < count:
        now = start + timedelta(seconds=second)
        for key, value in simulate.messages(fleet, now, 1.0, 0.0, rng):
            body = orjson.loads(value)
            body["metrics"] = rest | body["metrics"]
            out.append((key, orjson.dumps(body)))
        second += 1
    return out[:count]


async def run(messages: int, vehicles: int) -> None:
    settings = Settings.from_env()
    with servers(settings) as (url, bootstrap):
        await prepare_database(url, settings)
        pool = await db.create_pool(url, settings)
        owner = await clients.create(pool, name="bench fleet", scope_names="sensors:ingest")
        await simulate.register(pool, owner.client_id, simulate.fleet(vehicles))
        data = make_messages(messages, vehicles)
        values = len(orjson.loads(data[0][1])["metrics"]) * messages
        topic = f"bench.telemetry.{int(time.time())}"
        await ensure_topics(bootstrap, 4, topic)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
        await producer.start()
        for key, value in data:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
        await producer.stop()
        print(f"{messages} messages ({len(data[0][1])} bytes, {values // messages} values each)")

        stop = asyncio.Event()
        gc_tuning.settle_after_startup()  # as `ieum ingest` and `ieum serve` do
        worker = IngestWorker(settings, url, bootstrap, group_id="bench", topic=topic)
        started = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        first_batch = 0
        while (done := await _stored(pool, topic)) < messages:
            if not first_batch and done:
                first_batch, first_at = done, time.perf_counter()
            await asyncio.sleep(0.02)
        finished = time.perf_counter()
        stop.set()
        await task
        elapsed = finished - started
        steady = (messages - first_batch) / (finished - first_at)
        rate = messages / elapsed
        print(
            f"one worker: {rate:10.0f} messages/s  {values / elapsed:12.0f} values/s"
            f"  ({elapsed:.1f} s from start, consumer group join included)"
        )
        print(
            f"steady:     {steady:10.0f} messages/s  {steady * values / messages:12.0f}"
            " values/s  (after the first batch; broker to PostgreSQL, rollups included)"
        )

        readings = [parse(value) for _, value in data]
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TEMP TABLE bare (LIKE sensor_readings INCLUDING DEFAULTS)")
        records = [
            (r.ts, r.device_id, r.vehicle_id, r.lat, r.lng, r.cell, r.speed_kmh,
             r.heading_deg, r.packed)
            for r in readings
        ]  # fmt: skip
        started = time.perf_counter()
        for i in range(0, len(records), 5000):
            await conn.copy_records_to_table(
                "bare", columns=ingest_store.READING_COLUMNS, records=records[i : i + 5000]
            )
        bare = messages / (time.perf_counter() - started)
        await conn.close()
        print(f"bare COPY:  {bare:10.0f} rows/s (same rows, no index, no rollups)")
        print(f"ratio steady worker / bare COPY: {steady / bare:.3f}")
        await pool.close()


async def _stored(pool: asyncpg.Pool, topic: str) -> int:
    return await pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM ingest_offsets WHERE topic = $1", topic
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--vehicles", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.vehicles))


if __name__ == "__main__":
    main()
