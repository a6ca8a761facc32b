"""The sensors domain's commands, in-process worker and demo fleet.

`ieum ingest`, `ieum simulate` and `ieum mqtt-bridge` keep the names they had before
domains declared their own commands; each is also `ieum sensors <name>`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
from collections.abc import Awaitable, Callable, Sequence

from adapters.mqtt.bridge import DEFAULT_GROUP, MqttBridge, MqttSettings, default_client_id
from adapters.sandbox import taxi_fleet
from hub.core import db, eventloop, gc_tuning
from hub.core.domain import Command, DemoEnv, Worker
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.sensors.devices import ACKS_TOPIC, COMMANDS_TOPIC
from resolvers.sensors.ingest import IngestWorker, dlq_for, ensure_topics
from resolvers.sensors.settings import SensorsSettings

DEMO_VEHICLES = 40


def _until_signalled(work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `work` until SIGINT or SIGTERM sets its stop event."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await work(stop)

    eventloop.run(main())


async def _ingest(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    # Its readings reach every hub's subscriptions through the live feed topic.
    await IngestWorker(settings, servers.database, servers.broker).run(stop)


INGEST_WORKER = Worker(
    name="ingest",
    help="telemetry from the broker into PostgreSQL",
    run=_ingest,
    in_serve=lambda settings: settings.section(SensorsSettings).ingest,
)


def _ingest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default="ieum-ingest", help="consumer group id")
    parser.add_argument(
        "--topic", help="telemetry topic (IEUM_TELEMETRY_TOPIC, default ieum.telemetry.v1)"
    )


def _run_ingest(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    topic = args.topic or settings.section(SensorsSettings).telemetry_topic
    worker = IngestWorker(
        settings, servers.database, servers.broker, group_id=args.group, topic=topic
    )
    print(f"ingesting from {servers.broker} (group {args.group}); Ctrl-C stops", flush=True)
    gc_tuning.settle_after_startup()
    _until_signalled(worker.run)
    return 0


def _bridge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--mqtt-username")
    parser.add_argument("--mqtt-password-env", metavar="VAR", help="environment variable")
    parser.add_argument(
        "--client-id",
        default=os.environ.get("IEUM_MQTT_CLIENT_ID") or default_client_id(),
        help="MQTT client id, one per bridge: its session keeps messages while it is away "
        "(IEUM_MQTT_CLIENT_ID; default %(default)s)",
    )
    parser.add_argument(
        "--share-group",
        default=DEFAULT_GROUP,
        help="bridges in one group share the subscription; '' subscribes alone "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--topic", help="telemetry topic (IEUM_TELEMETRY_TOPIC, default ieum.telemetry.v1)"
    )
    parser.add_argument(
        "--commands-topic", default=COMMANDS_TOPIC, help="units' commands (default %(default)s)"
    )
    parser.add_argument(
        "--acks-topic", default=ACKS_TOPIC, help="units' acks (default %(default)s)"
    )


def _run_bridge(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    mqtt = MqttSettings(
        host=args.mqtt_host,
        port=args.mqtt_port,
        username=args.mqtt_username,
        password=os.environ.get(args.mqtt_password_env) if args.mqtt_password_env else None,
        client_id=args.client_id,
        share_group=args.share_group or None,
    )
    topic = args.topic or settings.section(SensorsSettings).telemetry_topic
    bridge = MqttBridge(
        mqtt,
        servers.broker,
        topic=topic,
        dlq_topic=dlq_for(topic),
        acks_topic=args.acks_topic,
        commands_topic=args.commands_topic,
    )

    async def run(stop: asyncio.Event) -> None:
        sensors = settings.section(SensorsSettings)
        await ensure_topics(servers.broker, sensors.telemetry_partitions, topic)
        subscribed = asyncio.Event()

        async def banner() -> None:
            # Printed once the broker acknowledged the subscription: a message published
            # after this line reaches the bridge (before it, a first session has none).
            await subscribed.wait()
            print(
                f"bridging mqtt://{mqtt.host}:{mqtt.port}/{mqtt.subscription} to Kafka "
                f"{topic} as {mqtt.client_id}",
                flush=True,
            )

        announcing = asyncio.create_task(banner())
        try:
            await bridge.run(stop, subscribed)
        finally:
            announcing.cancel()

    _until_signalled(run)
    print(f"forwarded {bridge.forwarded}, rejected {bridge.rejected}")
    return 0


def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vehicles", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1.0, help="messages/s per vehicle")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--bad-share", type=float, default=0.01, help="share of bad messages")
    parser.add_argument(
        "--owner", default="demo-partner", help="client that owns the simulated devices"
    )


def _run_simulate(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    vehicles = taxi_fleet.fleet(args.vehicles)

    async def run() -> int:
        pool = await db.create_pool(servers.database, settings)
        try:
            await taxi_fleet.register(pool, args.owner, vehicles)
        finally:
            await pool.close()
        await ensure_topics(servers.broker, settings.section(SensorsSettings).telemetry_partitions)
        return await taxi_fleet.run(
            servers.broker, vehicles, args.rate, args.duration, args.bad_share
        )

    sent = asyncio.run(run())
    print(f"sent {sent} messages from {len(vehicles)} vehicles")
    return 0


COMMANDS = (
    Command(
        "ingest",
        "an ingest worker: telemetry into PostgreSQL",
        _run_ingest,
        _ingest_arguments,
        needs_broker=True,
        top_level=True,
    ),
    Command(
        "mqtt-bridge",
        "forward MQTT telemetry to Kafka",
        _run_bridge,
        _bridge_arguments,
        needs_database=False,
        needs_broker=True,
        top_level=True,
    ),
    Command(
        "simulate",
        "a taxi fleet sending telemetry",
        _run_simulate,
        _simulate_arguments,
        needs_broker=True,
        top_level=True,
    ),
)


async def demo(env: DemoEnv) -> Sequence[str]:
    """40 simulated taxis, one message every 2 s each, until the hub stops."""
    vehicles = taxi_fleet.fleet(DEMO_VEHICLES)
    await taxi_fleet.register(env.pool, env.client_id, vehicles)

    async def drive() -> None:
        await ensure_topics(
            env.servers.broker, env.settings.section(SensorsSettings).telemetry_partitions
        )
        fleet = asyncio.create_task(
            taxi_fleet.run(
                env.servers.broker, vehicles, rate=0.5, duration=math.inf, bad_share=0.01
            )
        )
        await env.stopping.wait()
        fleet.cancel()
        await asyncio.gather(fleet, return_exceptions=True)

    env.background(drive(), "demo-fleet")
    return [f"Sensors   {DEMO_VEHICLES} simulated taxis send readings every 2 s"]
