"""The MQTT bridge against a real MQTT broker (Mosquitto on 127.0.0.1:1883 where it runs)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import UTC, datetime

import aiomqtt
import pytest

from adapters.mqtt.bridge import MqttBridge, MqttSettings
from resolvers.sensors.ingest import ensure_topics
from tests.sensors.helpers import PARTITIONS, dead_letters, end_offsets, message, new_topic

MQTT_HOST = os.environ.get("IEUM_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("IEUM_TEST_MQTT_PORT", "1883"))


def mqtt_reachable() -> bool:
    try:
        with socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not mqtt_reachable(), reason=f"no MQTT broker at {MQTT_HOST}:{MQTT_PORT}"
)


async def test_bridge_forwards_good_messages_and_dead_letters_bad_ones(
    kafka_bootstrap: str,
) -> None:
    topic = new_topic()
    await ensure_topics(kafka_bootstrap, PARTITIONS, topic)
    bridge = MqttBridge(
        MqttSettings(MQTT_HOST, MQTT_PORT, client_id=f"bridge-{uuid.uuid4().hex[:6]}"),
        kafka_bootstrap,
        topic=topic,
        dlq_topic=f"{topic}.dlq",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(bridge.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    now = datetime.now(UTC)
    good = message("unit-9", "taxi-9", now, 37.5665, 126.9780, {"pm2_5": 12})
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT) as device:
        await device.publish("ieum/telemetry/unit-9", good, qos=1)
        await device.publish("ieum/telemetry/unit-9", b"{broken", qos=1)
        await device.publish("ieum/telemetry/other-unit", good, qos=1)
    for _ in range(100):  # up to 10 s for the three messages to pass the bridge
        if bridge.forwarded + bridge.rejected == 3:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await running

    assert (bridge.forwarded, bridge.rejected) == (1, 2)
    assert sum((await end_offsets(kafka_bootstrap, topic)).values()) == 1
    letters = await dead_letters(kafka_bootstrap, topic, 2)
    reasons = sorted(dict(r.headers)["reason"].decode() for r in letters)
    assert reasons == ["malformed_json", "topic_mismatch"]
    assert {dict(r.headers)["source_topic"] for r in letters} == {
        b"ieum/telemetry/unit-9",
        b"ieum/telemetry/other-unit",
    }


class Crash(Exception):
    """The bridge dying between receiving a message and Kafka's acknowledgement."""


class CrashingBridge(MqttBridge):
    async def forward(self, producer: object, mqtt_topic: str, payload: bytes) -> None:
        raise Crash


async def test_a_message_the_bridge_did_not_forward_comes_again(kafka_bootstrap: str) -> None:
    topic = new_topic()
    await ensure_topics(kafka_bootstrap, PARTITIONS, topic)
    settings = MqttSettings(MQTT_HOST, MQTT_PORT, client_id=f"bridge-{uuid.uuid4().hex[:6]}")
    topics = {"topic": topic, "dlq_topic": f"{topic}.dlq"}
    crashing = CrashingBridge(settings, kafka_bootstrap, **topics)
    stop, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(crashing.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    good = message("unit-7", "taxi-7", datetime.now(UTC), 37.5665, 126.9780, {"pm2_5": 12})
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT) as device:
        await device.publish("ieum/telemetry/unit-7", good, qos=1)
    with pytest.raises(Crash):
        await asyncio.wait_for(running, 10)

    bridge = MqttBridge(settings, kafka_bootstrap, **topics)  # the same session, restarted
    stop = asyncio.Event()
    running = asyncio.create_task(bridge.run(stop))
    for _ in range(100):
        if bridge.forwarded:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await running
    assert bridge.forwarded == 1
    assert sum((await end_offsets(kafka_bootstrap, topic)).values()) == 1
