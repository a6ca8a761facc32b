"""MQTT bridge throughput, and what two SIGKILLs lose, against a baseline in the same run.

    .venv/bin/python bench/mqtt_bridge.py [--messages 20000] [--kill-messages 5000]

Starts a Mosquitto of its own (adapters.mqtt.mosquitto, queueing without limit) and the
embedded broker (or IEUM_KAFKA_BOOTSTRAP). Throughput: the messages are queued in the
bridge's session while it is away, then one bridge drains them; the baseline is the same
bridge waiting for each Kafka write before the next (what it did before batching). Kills:
`ieum mqtt-bridge` SIGKILLed twice for a second during QoS 1 publishing at 1,000 msg/s;
counts what reached Kafka (distinct readings, repeats).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from adapters.mqtt import mosquitto
from adapters.mqtt.bridge import MqttBridge, MqttSettings
from hub.embedded import broker
from resolvers.sensors.ingest import dlq_for, ensure_topics

PARTITIONS = 4


class OneAtATime(MqttBridge):
    """The baseline: each message's Kafka write awaited before the next is handed over."""

    async def forward_batch(self, producer: AIOKafkaProducer, batch: list[aiomqtt.Message]) -> None:
        for message in batch:
            pending, dead_letter = await self.forward(
                producer, str(message.topic), bytes(message.payload)
            )
            await pending
            self.rejected += dead_letter
            self.forwarded += not dead_letter


def body(i: int, devices: int, start: datetime) -> tuple[str, bytes]:
    device = f"unit-{i % devices}"
    reading = {
        "schema": "ieum.telemetry.v1",
        "device_id": device,
        "vehicle_id": f"taxi-{i % devices}",
        "ts": (start + timedelta(seconds=i // devices)).isoformat(),
        "position": {"lat": 37.5665, "lng": 126.978},
        "speed_kmh": 20.0,
        "heading_deg": 90.0,
        "metrics": {"pm2_5": 12.0, "pm10": 30.0, "no2": 0.02},
    }
    return f"ieum/telemetry/{device}", orjson.dumps(reading)


async def publish(
    address: tuple[str, int], count: int, rate: float | None, start: datetime
) -> None:
    began = time.monotonic()
    async with aiomqtt.Client(*address, max_inflight_messages=200) as units:
        for i in range(count):
            topic, payload = body(i, 100, start)
            await units.publish(topic, payload, qos=1)
            if rate and i % 50 == 49 and (ahead := (i + 1) / rate - (time.monotonic() - began)) > 0:
                await asyncio.sleep(ahead)


async def read_back(bootstrap: str, topic: str, expected: int, within: float) -> list[str]:
    """Each record's (device, ts), read until `expected` distinct or `within` seconds, then
    a second more for repeats. Read, not taken from end offsets: the embedded broker's
    count record batches, not records, when a batch holds several messages."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + within
        while len(set(seen)) < expected and time.monotonic() < deadline:
            seen += keys(await consumer.getmany(timeout_ms=200))
        seen += keys(await consumer.getmany(timeout_ms=1000))
    finally:
        await consumer.stop()
    return seen


def keys(batch: dict[TopicPartition, list[ConsumerRecord]]) -> list[str]:
    readings = (orjson.loads(r.value) for records in batch.values() for r in records)
    return [f"{reading['device_id']} {reading['ts']}" for reading in readings]


async def throughput(
    kind: type[MqttBridge], address: tuple[str, int], bootstrap: str, count: int
) -> float:
    """Messages per second one bridge forwards from a full session queue."""
    topic = f"bench.mqtt.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, PARTITIONS, topic)
    tag = uuid.uuid4().hex[:6]
    settings = MqttSettings(*address, client_id=f"bench-{tag}", share_group=f"bench-{tag}")
    bridge = kind(settings, bootstrap, topic=topic, dlq_topic=dlq_for(topic))
    stop, ready = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(bridge.run(stop, ready))  # makes the session, then leaves
    await ready.wait()
    stop.set()
    await first
    await publish(address, count, None, datetime.now(UTC) - timedelta(hours=2))
    stop = asyncio.Event()
    started = time.monotonic()
    running = asyncio.create_task(bridge.run(stop))
    while bridge.forwarded < count:  # noqa: ASYNC110 (counted by the bridge's own loop)
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - started
    stop.set()
    await running
    return count / elapsed


async def kills(address: tuple[str, int], bootstrap: str, count: int) -> tuple[int, int, int]:
    """(published, distinct readings in Kafka, repeats) with two one-second SIGKILLs."""
    topic = f"bench.mqtt.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, PARTITIONS, topic)
    tag = uuid.uuid4().hex[:6]
    ieum = str(Path(sys.executable).with_name("ieum"))
    argv = [ieum, "mqtt-bridge", "--mqtt-host", address[0], "--mqtt-port", str(address[1]),
            "--client-id", f"bench-{tag}", "--share-group", f"bench-{tag}",
            "--topic", topic]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "IEUM_KAFKA_BOOTSTRAP": bootstrap, "IEUM_DATA_DIR": tmp}
        log_path = Path(tmp) / "bridge.log"

        async def start(n: int) -> subprocess.Popen[bytes]:
            with log_path.open("ab") as log:
                process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)  # noqa: ASYNC220
            while log_path.read_text().count("bridging") < n:  # noqa: ASYNC110 (another process)
                await asyncio.sleep(0.05)
            return process

        process = await start(1)
        await asyncio.sleep(0.5)  # subscribed
        stream = asyncio.create_task(
            publish(address, count, 1000.0, datetime.now(UTC) - timedelta(hours=1))
        )
        for n in (2, 3):
            await asyncio.sleep(1.0)
            process.send_signal(signal.SIGKILL)
            process.wait()
            await asyncio.sleep(1.0)
            process = await start(n)
        await stream
        seen = await read_back(bootstrap, topic, count, within=60)
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    return count, len(set(seen)), len(seen) - len(set(seen))


async def main(args: argparse.Namespace) -> None:
    with mosquitto.running() as address:
        embedded = None
        bootstrap = os.environ.get("IEUM_KAFKA_BOOTSTRAP")
        if not bootstrap:
            embedded = broker.start(Path(tempfile.mkdtemp()) / "broker.log")
            bootstrap = embedded.bootstrap
        try:
            base = await throughput(OneAtATime, address, bootstrap, args.messages // 4)
            print(f"baseline, one Kafka write awaited at a time: {base:8.0f} msg/s", flush=True)
            batched = await throughput(MqttBridge, address, bootstrap, args.messages)
            print(f"bridge, batched writes then acks:          {batched:8.0f} msg/s "
                  f"({batched / base:.1f}x)", flush=True)  # fmt: skip
            published, distinct, repeats = await kills(address, bootstrap, args.kill_messages)
            print(
                f"two 1 s SIGKILLs at 1,000 msg/s: published {published}, in Kafka {distinct} "
                f"distinct, lost {published - distinct}, repeats {repeats} "
                "(same device and ts: stored once by ingest)"
            )
        finally:
            if embedded:
                embedded.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--kill-messages", type=int, default=5000)
    asyncio.run(main(parser.parse_args()))
