"""`ieum worker payments`: the payments worker as its own process, beside the hub."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from hub.core import db
from hub.core.settings import Settings
from resolvers.payments import outbox

pytestmark = pytest.mark.slow

IEUM = str(Path(sys.executable).parent / "ieum")


async def test_the_worker_relays_events_and_stops_cleanly(
    migrated_url: str, kafka_bootstrap: str
) -> None:
    topic = f"payments.worker.{uuid.uuid4().hex[:8]}"
    pool = await db.create_pool(migrated_url, Settings.from_env())
    async with pool.acquire() as conn, conn.transaction():
        event_id = await outbox.add(conn, "payment.test", "k", {"n": 1})
    await pool.close()
    env = {
        **os.environ,
        "IEUM_DATABASE_URL": migrated_url,
        "IEUM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "IEUM_PAYMENTS_EVENTS_TOPIC": topic,
    }
    worker = subprocess.Popen(  # noqa: ASYNC220 (started once; waited for in a thread)
        [IEUM, "worker", "payments"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(_keyed(consumer, b"k"), 30)
        finally:
            await consumer.stop()
        assert dict(record.headers)["event_id"].decode() == str(event_id)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 30)
        output = worker.stdout.read().decode() if worker.stdout else ""
        if worker.stdout:
            worker.stdout.close()
    assert code == 0, output
    assert "worker payments" in output


async def _keyed(consumer: AIOKafkaConsumer, key: bytes) -> ConsumerRecord[bytes, bytes]:
    """The first record with this key: the worker relays the bill feed's bill.created
    events to the same topic, on other partitions, and they may be read first."""
    while True:
        record = await consumer.getone()
        if record.key == key:
            return record
