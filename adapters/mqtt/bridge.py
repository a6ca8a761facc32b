"""MQTT bridge: units that speak MQTT publish to `ieum/telemetry/{device}`; the bridge
forwards each message to the Kafka topic, keyed by vehicle id, under the same contract.

Nothing the MQTT broker acknowledged to a unit is lost when a bridge dies:
- the session is persistent (MQTT 5, clean start off, a session expiry), so the broker
  keeps QoS 1 messages while the bridge is away and resends unacknowledged ones;
- a message is acknowledged to the broker only after Kafka acknowledged its write, so a
  bridge killed in between gets it again (at least once: a repeat carries the same device
  id and timestamp, which ingest recognises as a redelivery and stores once);
- each bridge has its own client id (two bridges with one id take over each other's
  session) and they share the subscription (`$share/GROUP/ieum/telemetry/+`), so the
  broker spreads the units' messages over however many bridges run.

Throughput comes from batches: every message that has arrived is handed to the Kafka
producer without waiting, the batch's writes are awaited together, then acknowledged in
the order received. Waiting for each write alone made about 165 msg/s.

Messages are checked with the same parser as ingest, so a unit gets the same reject
reasons whichever way it sends: bad ones go to the dead-letter topic with the reason and
`source_topic` set to the MQTT topic. Registry checks (unknown or disabled devices) stay
with the ingest workers, which see every message whatever its path.

Units also take commands and send acknowledgements through the bridge, whatever the
commands are for (display messages: docs/notices-displays.md). Acks on
`ieum/devices/{device}/acks` go to the Kafka ack topic under the same rules: the envelope
is checked (a JSON object of at most MAX_ACK_BYTES whose `device_id` is the topic's),
a bad one is a dead letter with the reason, a good one is acknowledged to the broker once
Kafka has it; what the body means is for the domain that reads the ack topic. Commands
on the Kafka command topic (keyed by device id) are published to
`ieum/devices/{device}/commands` (QoS 1; the broker keeps them for a unit whose session
is away). The bridges of a share group are one Kafka consumer group on the command
topic, whose offsets move on only once the MQTT broker has taken the commands: each
command reaches MQTT at least once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

import aiomqtt
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from resolvers.sensors.devices import ACKS_TOPIC, COMMANDS_TOPIC, DEVICE_ID
from resolvers.sensors.ingest import DLQ_TOPIC, TOPIC
from resolvers.sensors.message import Rejected, parse

log = logging.getLogger(__name__)

TELEMETRY = "ieum/telemetry/+"
ACKS = "ieum/devices/+/acks"
DEFAULT_GROUP = "ieum-bridges"
# Messages the broker may send before the bridge acknowledges any: the batch's upper
# bound. Mosquitto's default for MQTT 3 clients is 20, which held a bridge to 20 messages
# per Kafka round trip; MQTT 5 lets the client say.
RECEIVE_MAXIMUM = 2000
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600  # how long the broker keeps messages for a bridge
MAX_ACK_BYTES = 4096


def default_client_id() -> str:
    """Stable across restarts (the session is found again), different per machine."""
    return f"ieum-mqtt-bridge-{socket.gethostname()}"


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = ""  # empty: default_client_id()
    share_group: str | None = DEFAULT_GROUP  # None: a plain subscription

    @property
    def subscription(self) -> str:
        return self.shared(TELEMETRY)

    def shared(self, topic: str) -> str:
        return f"$share/{self.share_group}/{topic}" if self.share_group else topic

    @property
    def command_group(self) -> str:
        """The Kafka consumer group of the bridges that relay commands together."""
        return f"{self.share_group or self.client_id or default_client_id()}.commands"


class MqttBridge:
    def __init__(
        self,
        mqtt: MqttSettings,
        bootstrap: str,
        *,
        topic: str = TOPIC,
        dlq_topic: str = DLQ_TOPIC,
        acks_topic: str = ACKS_TOPIC,
        commands_topic: str | None = COMMANDS_TOPIC,
    ) -> None:
        self.mqtt = mqtt
        self.bootstrap = bootstrap
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.acks_topic = acks_topic
        self.commands_topic = commands_topic  # None: relay no commands
        self.forwarded = 0
        self.rejected = 0
        self.relayed = 0

    def client(self) -> aiomqtt.Client:
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        connect.ReceiveMaximum = RECEIVE_MAXIMUM
        client = aiomqtt.Client(
            self.mqtt.host,
            self.mqtt.port,
            username=self.mqtt.username,
            password=self.mqtt.password,
            identifier=self.mqtt.client_id or default_client_id(),
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,  # resume the session: what the broker kept while we were away
            properties=connect,
        )
        # Acknowledge only once Kafka has the message: paho's default acknowledges on
        # receipt, so a bridge stopped in between lost it. aiomqtt has no option for this;
        # its paho client does (set before connecting: a resumed session redelivers at once).
        client._client.manual_ack_set(True)
        return client

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=2)
        await producer.start()
        client = self.client()
        try:
            async with client:
                await client.subscribe(self.mqtt.subscription, qos=1)
                await client.subscribe(self.mqtt.shared(ACKS), qos=1)
                relay = None
                if self.commands_topic is not None:
                    relay = asyncio.create_task(self.relay_commands(client, self.commands_topic))
                try:
                    if ready is not None:
                        ready.set()
                    await self._forward_all(client, producer, stop, relay)
                finally:
                    if relay is not None:
                        relay.cancel()
                        await asyncio.gather(relay, return_exceptions=True)
        finally:
            await producer.stop()

    async def _forward_all(
        self,
        client: aiomqtt.Client,
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
        relay: asyncio.Task[None] | None,
    ) -> None:
        messages = client.messages
        while not stop.is_set():
            if relay is not None and relay.done():
                relay.result()  # the relay's failure stops the bridge, to be restarted
            try:
                first = await asyncio.wait_for(anext(messages), 0.5)
            except TimeoutError:
                continue
            batch = [first]
            while len(messages) and len(batch) < RECEIVE_MAXIMUM:
                batch.append(await anext(messages))
            await self.forward_batch(producer, batch)
            for message in batch:
                client._client.ack(message.mid, message.qos)

    async def relay_commands(self, client: aiomqtt.Client, topic: str) -> None:
        """Commands from Kafka to each unit's MQTT topic; offsets committed once the MQTT
        broker acknowledged every command before them."""
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.mqtt.command_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        try:
            await consumer.start()
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        device = (record.key or b"").decode(errors="replace")
                        if not DEVICE_ID.match(device):
                            log.warning(
                                "mqtt_bridge.command_without_device offset=%d", record.offset
                            )
                            continue
                        await client.publish(f"ieum/devices/{device}/commands", record.value, qos=1)
                        self.relayed += 1
                if batch:
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def forward_batch(self, producer: AIOKafkaProducer, batch: list[aiomqtt.Message]) -> None:
        """Hand every message to the producer, then wait for all of Kafka's answers."""
        sent = [
            await self.forward(producer, str(message.topic), bytes(message.payload))
            for message in batch
        ]
        await asyncio.gather(*(pending for pending, _ in sent))
        rejected = sum(dead_letter for _, dead_letter in sent)
        self.rejected += rejected
        self.forwarded += len(sent) - rejected

    async def forward(
        self, producer: AIOKafkaProducer, mqtt_topic: str, payload: bytes
    ) -> tuple[asyncio.Future[object], bool]:
        """The pending Kafka write of one message, and whether it is a dead letter (to the
        dead-letter topic, with the reason) rather than telemetry or an ack."""
        parts = mqtt_topic.split("/")
        if parts[0] == "ieum" and parts[1:2] == ["devices"]:
            return await self._forward_ack(producer, mqtt_topic, parts[2], payload)
        device = parts[-1]
        try:
            reading = parse(payload)
            if reading.device_id != device:
                raise Rejected(
                    "topic_mismatch",
                    f"published on {mqtt_topic} but device_id is {reading.device_id}",
                )
        except Rejected as exc:
            return await self._dead_letter(producer, mqtt_topic, device, payload, exc), True
        _track(producer, self.topic)
        pending = await producer.send(self.topic, value=payload, key=reading.vehicle_id.encode())
        return pending, False

    async def _forward_ack(
        self, producer: AIOKafkaProducer, mqtt_topic: str, device: str, payload: bytes
    ) -> tuple[asyncio.Future[object], bool]:
        try:
            check_ack(payload, device, mqtt_topic)
        except Rejected as exc:
            return await self._dead_letter(producer, mqtt_topic, device, payload, exc), True
        _track(producer, self.acks_topic)
        pending = await producer.send(self.acks_topic, value=payload, key=device.encode())
        return pending, False

    async def _dead_letter(
        self,
        producer: AIOKafkaProducer,
        mqtt_topic: str,
        device: str,
        payload: bytes,
        exc: Rejected,
    ) -> asyncio.Future[object]:
        _track(producer, self.dlq_topic)
        pending: asyncio.Future[object] = await producer.send(
            self.dlq_topic,
            value=payload,
            key=device.encode(),
            headers=[
                ("reason", exc.reason.encode()),
                ("detail", exc.detail.encode()),
                ("source_topic", mqtt_topic.encode()),
            ],
        )
        return pending


def check_ack(payload: bytes, device: str, mqtt_topic: str) -> None:
    """Raise Rejected unless the ack is a JSON object of at most MAX_ACK_BYTES from the
    unit whose topic it came on (the ack topic's reader checks the rest)."""
    if len(payload) > MAX_ACK_BYTES:
        raise Rejected("too_large", f"{len(payload)} bytes; at most {MAX_ACK_BYTES}")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Rejected("malformed_json", str(exc)) from exc
    if not isinstance(body, dict):
        raise Rejected("invalid", "an ack is a JSON object")
    if body.get("device_id") != device:
        raise Rejected(
            "topic_mismatch",
            f"published on {mqtt_topic} but device_id is {body.get('device_id')!r}",
        )


def _track(producer: AIOKafkaProducer, topic: str) -> None:
    """Keep `topic` in the producer's metadata. aiokafka asks the broker about all topics
    while it tracks none, then only about those it had to look up: once the acks topic,
    created after the bridge started, was looked up, telemetry and dead letters fell out
    of its metadata, and a batch waiting on them never found their partitions (the
    bridge stalled). Tracking each topic it sends to, before sending, keeps them all;
    for a topic already tracked this costs a finished future."""
    producer.client.add_topic(topic)
