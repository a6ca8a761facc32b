"""MQTT bridge: units that speak MQTT publish to `ieum/telemetry/{device}`; the bridge
forwards each message to the Kafka topic, keyed by vehicle id, under the same contract.

A message is acknowledged to the MQTT broker only after Kafka has acknowledged it, so a
bridge stopped or killed in between gets it again from its session (QoS 1, at least
once; ingest drops the repeat as a duplicate of device and timestamp).

Messages are checked with the same parser as ingest, so a unit gets the same reject
reasons whichever way it sends: bad ones go to the dead-letter topic with the reason and
`source_topic` set to the MQTT topic. Registry checks (unknown or disabled devices) stay
with the ingest workers, which see every message whatever its path.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiomqtt
from aiokafka import AIOKafkaProducer

from resolvers.sensors.ingest import DLQ_TOPIC, TOPIC
from resolvers.sensors.message import Rejected, parse

log = logging.getLogger(__name__)

SUBSCRIPTION = "ieum/telemetry/+"


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = "ieum-mqtt-bridge"


class MqttBridge:
    def __init__(
        self,
        mqtt: MqttSettings,
        bootstrap: str,
        *,
        topic: str = TOPIC,
        dlq_topic: str = DLQ_TOPIC,
    ) -> None:
        self.mqtt = mqtt
        self.bootstrap = bootstrap
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.forwarded = 0
        self.rejected = 0

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        client = aiomqtt.Client(
            self.mqtt.host,
            self.mqtt.port,
            username=self.mqtt.username,
            password=self.mqtt.password,
            identifier=self.mqtt.client_id,
            clean_session=False,  # the broker keeps QoS 1 messages while we are away
        )
        # Acknowledge a message only once Kafka has it: paho's default acknowledges on
        # receipt, so a bridge stopped in between lost the message. aiomqtt has no option
        # for this; its paho client does (set before connecting: a resumed session
        # redelivers at once).
        paho = client._client
        paho.manual_ack_set(True)
        try:
            async with client:
                await client.subscribe(SUBSCRIPTION, qos=1)
                if ready is not None:
                    ready.set()
                messages = aiter(client.messages)
                while not stop.is_set():
                    try:
                        message = await asyncio.wait_for(anext(messages), 0.5)
                    except TimeoutError:
                        continue
                    await self.forward(producer, str(message.topic), bytes(message.payload))
                    paho.ack(message.mid, message.qos)
        finally:
            await producer.stop()

    async def forward(self, producer: AIOKafkaProducer, mqtt_topic: str, payload: bytes) -> None:
        device = mqtt_topic.rsplit("/", 1)[-1]
        try:
            reading = parse(payload)
            if reading.device_id != device:
                raise Rejected(
                    "topic_mismatch",
                    f"published on {mqtt_topic} but device_id is {reading.device_id}",
                )
        except Rejected as exc:
            self.rejected += 1
            await producer.send_and_wait(
                self.dlq_topic,
                value=payload,
                key=device.encode(),
                headers=[
                    ("reason", exc.reason.encode()),
                    ("detail", exc.detail.encode()),
                    ("source_topic", mqtt_topic.encode()),
                ],
            )
            return
        await producer.send_and_wait(self.topic, value=payload, key=reading.vehicle_id.encode())
        self.forwarded += 1
