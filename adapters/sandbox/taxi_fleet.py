"""`ieum simulate`: a fleet of taxis driving Seoul's arterial roads, sending telemetry.

Vehicles shuttle along real arterial roads (waypoints below), at traffic-like speeds.
Values follow daily cycles (rush-hour fine dust and noise, sunlight, temperature) plus
pollution hotspots near the expressways and industrial areas, with sensor noise. A
configurable share of messages is deliberately broken, to exercise the dead-letter path.

A taxi's roof unit may also carry a display (`Vehicle.display`, a `DisplayUnit`), when
`run` is given `DisplayLinks`: the fleet hands it the commands for its device from the
command topic (units that speak MQTT: from `ieum/devices/{device}/commands`, and they send
their telemetry over MQTT too) and sends the acks it makes as it drives. What commands
mean is the display's business: taxi_displays.py has the notices domain's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import aiomqtt
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub.core.errors import IeumError
from resolvers.sensors import devices
from resolvers.sensors.ingest import TOPIC

# (lat, lng) waypoints of Seoul arterial roads.
ROADS: dict[str, list[tuple[float, float]]] = {
    "세종대로-한강대로": [(37.5759, 126.9769), (37.5665, 126.9780), (37.5547, 126.9723),
                    (37.5345, 126.9723), (37.5172, 126.9658)],
    "종로-왕산로": [(37.5704, 126.9831), (37.5713, 127.0016), (37.5716, 127.0157),
                (37.5751, 127.0390), (37.5801, 127.0469)],
    "테헤란로": [(37.4982, 127.0276), (37.5009, 127.0365), (37.5045, 127.0489),
             (37.5087, 127.0631)],
    "강남대로": [(37.4840, 127.0346), (37.4979, 127.0276), (37.5096, 127.0224),
             (37.5172, 127.0196)],
    "올림픽대로": [(37.5498, 126.8630), (37.5355, 126.9038), (37.5170, 126.9500),
              (37.5108, 126.9976), (37.5160, 127.0530), (37.5218, 127.1010)],
    "강변북로": [(37.5580, 126.8960), (37.5450, 126.9350), (37.5290, 126.9690),
             (37.5270, 127.0100), (37.5390, 127.0600), (37.5440, 127.1000)],
    "도봉로-동부간선": [(37.6680, 127.0470), (37.6380, 127.0250), (37.6060, 127.0170),
                  (37.5870, 127.0240), (37.5630, 127.0380)],
    "디지털로-시흥대로": [(37.4850, 126.9010), (37.4820, 126.8950), (37.4680, 126.8960),
                   (37.4560, 126.8970)],
    "통일로": [(37.6400, 126.9190), (37.6110, 126.9280), (37.5900, 126.9440),
            (37.5740, 126.9650)],
    "천호대로": [(37.5710, 127.0240), (37.5610, 127.0650), (37.5440, 127.1020),
             (37.5380, 127.1240)],
}  # fmt: skip

# Places with more fine dust (expressways, industrial areas) and more people.
DUST_HOTSPOTS = [(37.5355, 126.9038, 25.0), (37.4820, 126.8950, 30.0), (37.5390, 127.0600, 15.0)]
CROWD_HOTSPOTS = [(37.4979, 127.0276, 3.0), (37.5636, 126.9827, 3.5), (37.5563, 126.9220, 2.5)]


class DisplayUnit(Protocol):
    """A roof unit's display, as the fleet drives it (formats of its own)."""

    def receive(self, command: bytes) -> None:
        """A command for this unit, as it came off the command topic."""

    def update(self, device_id: str, lat: float, lng: float, now: datetime) -> list[bytes]:
        """The unit is at (lat, lng) now: its acks, if its screen changed."""


@dataclass
class Vehicle:
    vehicle_id: str
    device_id: str
    road: list[tuple[float, float]]
    position: float  # metres along the road
    direction: int
    speed_kmh: float
    mqtt: bool = False  # its unit speaks MQTT (telemetry, commands, acks), not Kafka
    display: DisplayUnit | None = None

    def where(self) -> tuple[float, float]:
        lat, lng, _ = _locate(self.road, self.position)
        return lat, lng


def fleet(vehicles: int, seed: int = 7) -> list[Vehicle]:
    rng = random.Random(seed)
    names = sorted(ROADS)
    fleet_ = []
    for i in range(vehicles):
        road = ROADS[names[i % len(names)]]
        fleet_.append(
            Vehicle(
                vehicle_id=f"sim-taxi-{i:04d}",
                device_id=f"sim-unit-{i:04d}",
                road=road,
                position=rng.uniform(0, _length(road)),
                direction=rng.choice((1, -1)),
                speed_kmh=rng.uniform(15, 55),
            )
        )
    return fleet_


async def register(pool: asyncpg.Pool, owner: str, vehicles: list[Vehicle]) -> None:
    """Register the fleet's units as `owner`'s devices (the partner that runs the taxis)."""
    try:
        for v in vehicles:
            await devices.register(pool, owner, v.device_id, v.vehicle_id, "simulated unit")
    except (IeumError, asyncpg.ForeignKeyViolationError) as exc:
        raise ValueError(f"cannot register the simulated devices as {owner!r}: {exc}") from exc


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dlat = (b[0] - a[0]) * 111_320
    dlng = (b[1] - a[1]) * 111_320 * math.cos(math.radians(a[0]))
    return math.hypot(dlat, dlng)


def _length(road: list[tuple[float, float]]) -> float:
    return sum(_metres(a, b) for a, b in itertools.pairwise(road))


def _locate(road: list[tuple[float, float]], distance: float) -> tuple[float, float, float]:
    """Point `distance` metres along the road, and the heading there."""
    for a, b in itertools.pairwise(road):
        step = _metres(a, b)
        if distance <= step:
            f = distance / step if step else 0.0
            heading = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])) % 360
            return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, heading
        distance -= step
    a, b = road[-2], road[-1]
    return b[0], b[1], math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])) % 360


def _bump(lat: float, lng: float, spots: list[tuple[float, float, float]], km: float) -> float:
    return sum(
        weight * math.exp(-((_metres((lat, lng), (s_lat, s_lng)) / (km * 1000)) ** 2))
        for s_lat, s_lng, weight in spots
    )


def metrics_at(lat: float, lng: float, now: datetime, rng: random.Random) -> dict[str, float]:
    """Plausible values for one place and moment (KST daily cycles)."""
    hour = (now.hour + 9 + now.minute / 60) % 24
    rush = math.exp(-(((hour - 8.5) / 1.5) ** 2)) + math.exp(-(((hour - 18.5) / 2) ** 2))
    daylight = max(0.0, math.sin(math.pi * (hour - 6.5) / 12))
    night = 1.0 - min(1.0, daylight * 3)
    pm25 = max(2.0, 18 + 14 * rush + _bump(lat, lng, DUST_HOTSPOTS, 2.0) + rng.gauss(0, 3))
    crowd = _bump(lat, lng, CROWD_HOTSPOTS, 1.2) * (0.3 + rush + 0.5 * (1 - night))
    traffic = 0.4 + rush
    return {
        "pm1_0": round(pm25 * 0.7, 1),
        "pm2_5": round(pm25, 1),
        "pm10": round(max(0.0, pm25 * 1.6 + rng.gauss(0, 4)), 1) if pm25 * 1.6 > 8 else 8.0,
        "no2": round(max(0.0, 0.015 + 0.025 * traffic + rng.gauss(0, 0.003)), 4),
        "o3": round(max(0.0, 0.01 + 0.04 * daylight + rng.gauss(0, 0.004)), 4),
        "co": round(max(0.0, 0.3 + 0.4 * traffic + rng.gauss(0, 0.05)), 3),
        "so2": round(max(0.0, 0.003 + rng.gauss(0, 0.0005)), 4),
        "co2": round(415 + 40 * traffic + rng.gauss(0, 5), 1),
        "voc": round(max(0.0, 150 + 200 * traffic + rng.gauss(0, 30)), 1),
        "temperature": round(4 + 6 * daylight + rng.gauss(0, 0.3), 2),
        "humidity": round(min(100.0, max(5.0, 60 - 15 * daylight + rng.gauss(0, 2))), 1),
        "pressure": round(1021 + rng.gauss(0, 0.5), 1),
        "noise_laeq": round(min(120.0, 55 + 12 * traffic + rng.gauss(0, 2)), 1),
        "noise_lmax": round(min(130.0, 70 + 12 * traffic + rng.gauss(0, 4)), 1),
        "illuminance": round(max(0.0, 30000 * daylight + (12 + rng.gauss(0, 4)) * night), 1),
        "uv_index": round(max(0.0, 3 * daylight + rng.gauss(0, 0.2)), 2),
        "road_surface_temperature": round(3 + 9 * daylight + rng.gauss(0, 0.5), 2),
        "pedestrian_count": float(max(0, round(crowd * 20 + rng.gauss(0, 2)))),
        "vehicle_count": float(max(0, round(traffic * 12 + rng.gauss(0, 2)))),
        "crowd_density": round(min(10.0, max(0.0, crowd * 0.4 + rng.gauss(0, 0.03))), 3),
        "streetlight_outages": float(rng.random() < 0.02 * night),
        "cctv_visible": float(rng.randint(0, 4)),
        "road_traffic_speed": round(max(3.0, 45 - 25 * rush + rng.gauss(0, 4)), 1),
    }


BROKEN = (
    b"{not json",
    b'{"schema": "ieum.telemetry.v0"}',
    b'{"schema": "ieum.telemetry.v1", "device_id": "sim-unit-0000"}',
)


def messages(
    vehicles: list[Vehicle],
    now: datetime,
    step_seconds: float,
    bad_share: float,
    rng: random.Random,
) -> Iterator[tuple[bytes, bytes]]:
    """One (key, value) per vehicle for this tick; vehicles move on by `step_seconds`."""
    for v in vehicles:
        length = _length(v.road)
        v.position += v.direction * v.speed_kmh / 3.6 * step_seconds
        if not 0 <= v.position <= length:
            v.direction = -v.direction
            v.position = min(max(v.position, 0.0), length)
        if rng.random() < bad_share:
            yield v.vehicle_id.encode(), rng.choice(BROKEN)
            continue
        lat, lng, heading = _locate(v.road, v.position)
        heading = heading if v.direction > 0 else (heading + 180) % 360
        body = {
            "schema": "ieum.telemetry.v1",
            "device_id": v.device_id,
            "vehicle_id": v.vehicle_id,
            "ts": now.isoformat(timespec="milliseconds"),
            "position": {"lat": round(lat, 6), "lng": round(lng, 6)},
            "speed_kmh": round(v.speed_kmh, 1),
            "heading_deg": round(heading, 1),
            "metrics": metrics_at(lat, lng, now, rng),
        }
        yield v.vehicle_id.encode(), orjson.dumps(body)


@dataclass(frozen=True)
class DisplayLinks:
    """Where the units' displays take commands and send acks."""

    commands_topic: str = devices.COMMANDS_TOPIC
    acks_topic: str = devices.ACKS_TOPIC
    mqtt: tuple[str, int] | None = None  # MQTT broker (host, port) of units that speak it


async def _take_kafka_commands(bootstrap: str, topic: str, units: dict[str, Vehicle]) -> None:
    """The Kafka units' commands (keyed by device id), from where the fleet left off."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"ieum-sim-fleet.{topic}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    try:
        await consumer.start()
        async for record in consumer:
            unit = units.get((record.key or b"").decode())
            if unit is not None:
                _receive(unit, record.value or b"")
    finally:
        await consumer.stop()


def _receive(unit: Vehicle, raw: bytes) -> None:
    if unit.display is not None:
        unit.display.receive(raw)


@contextlib.asynccontextmanager
async def _mqtt_unit(unit: Vehicle, broker: tuple[str, int]) -> AsyncIterator[aiomqtt.Client]:
    """The unit's own MQTT session (kept by the broker while it is away), its commands
    taken as they come."""
    client = aiomqtt.Client(
        *broker,
        identifier=unit.device_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
    )
    async with client:
        await client.subscribe(f"ieum/devices/{unit.device_id}/commands", qos=1)

        async def take() -> None:
            async for message in client.messages:
                _receive(unit, bytes(message.payload))

        taking = asyncio.create_task(take())
        try:
            yield client
        finally:
            taking.cancel()
            await asyncio.gather(taking, return_exceptions=True)


async def run(
    bootstrap: str,
    vehicles: list[Vehicle],
    rate: float,
    duration: float,
    bad_share: float,
    seed: int = 11,
    *,
    topic: str = TOPIC,
    displays: DisplayLinks | None = None,
) -> int:
    """Send `rate` messages a second per vehicle for `duration` seconds; return the count.
    With `displays`, the units also act on display commands and acknowledge."""
    rng = random.Random(seed)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20)
    await producer.start()
    sent = 0
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(producer.stop)
        mqtt: dict[str, aiomqtt.Client] = {}
        if displays is not None:
            kafka_units = {v.device_id: v for v in vehicles if v.display is not None and not v.mqtt}
            taking = asyncio.create_task(
                _take_kafka_commands(bootstrap, displays.commands_topic, kafka_units)
            )
            stack.push_async_callback(_cancelled, taking)
            if displays.mqtt is not None:
                for v in vehicles:
                    if v.mqtt:
                        unit = _mqtt_unit(v, displays.mqtt)
                        mqtt[v.device_id] = await stack.enter_async_context(unit)
        interval = 1.0 / rate
        deadline = time.monotonic() + duration
        next_tick = time.monotonic()
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            for v, (key, value) in zip(
                vehicles, messages(vehicles, now, interval, bad_share, rng), strict=True
            ):
                if v.device_id in mqtt:
                    await mqtt[v.device_id].publish(f"ieum/telemetry/{v.device_id}", value, qos=1)
                else:
                    await producer.send(topic, value=value, key=key)
                sent += 1
            if displays is not None:
                await _show(vehicles, displays, producer, mqtt, now)
            next_tick += interval
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        await producer.flush()
    return sent


async def _show(
    vehicles: list[Vehicle],
    links: DisplayLinks,
    producer: AIOKafkaProducer,
    mqtt: dict[str, aiomqtt.Client],
    now: datetime,
) -> None:
    for v in vehicles:
        if v.display is None:
            continue
        for body in v.display.update(v.device_id, *v.where(), now):
            if v.device_id in mqtt:
                await mqtt[v.device_id].publish(f"ieum/devices/{v.device_id}/acks", body, qos=1)
            else:
                await producer.send(links.acks_topic, value=body, key=v.device_id.encode())


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
