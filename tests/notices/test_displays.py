"""Public messages on taxi-top displays, end to end with real parts.

One world for the module: PostgreSQL, the Kafka-protocol broker, Mosquitto, an ingest
worker, the MQTT bridge, the display targeting worker, the hub over HTTP, and simulated
taxis parked at known places (one of them an MQTT unit), sending telemetry and acting on
display commands as units do. Each test uses its own units and areas.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from h3.api import basic_int as h3

from adapters.mqtt import mosquitto
from adapters.mqtt.bridge import MqttBridge, MqttSettings
from adapters.sandbox import taxi_fleet
from adapters.sandbox.taxi_displays import Display
from adapters.sandbox.taxi_fleet import DisplayLinks, Vehicle
from hub.app import create_app
from hub.core import db
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.serve import serving
from resolvers.notices import displays_wire
from resolvers.notices.displays import DISPLAY_SCOPES
from resolvers.notices.displays_targeting import ACK_GROUP, DisplayTargeting
from resolvers.notices.displays_targeting import ensure_topics as ensure_display_topics
from resolvers.notices.settings import NoticesSettings
from resolvers.sensors.ingest import IngestWorker, ensure_topics
from schema.pagination import encode_cursor
from tests.conftest import local_settings
from tests.oauth import Hub
from tests.sensors.helpers import dead_letters, partner

pytestmark = pytest.mark.db

GANGNAM = "11680"
YEOKSAM = (37.5007, 127.0363)  # 강남구
SEOLLEUNG = (37.5045, 127.0489)  # 강남구, another resolution-8 cell
CITY_HALL = (37.5665, 126.9780)  # 중구
YONGSAN = (37.5172, 126.9658)  # 용산구
YEOUIDO = (37.5219, 126.9245)
JAMSIL = (37.5133, 127.1001)
NOWON = (37.6542, 127.0568)
JEJU = (33.4996, 126.5312)
SINCHON = (37.5559, 126.9368)


def parked(name: str, spot: tuple[float, float], mqtt: bool = False) -> Vehicle:
    road = [spot, (spot[0] + 0.0002, spot[1])]
    return Vehicle(f"taxi-{name}", f"unit-{name}", road, 0.0, 1, 0.0, mqtt=mqtt, display=Display())


def screen(unit: Vehicle) -> Display:
    assert isinstance(unit.display, Display)
    return unit.display


def move(unit: Vehicle, spot: tuple[float, float]) -> None:
    unit.road, unit.position = [spot, (spot[0] + 0.0002, spot[1])], 0.0


def cell7(spot: tuple[float, float]) -> str:
    """The resolution-7 cell holding the spot's resolution-9 cell (which is not always
    the resolution-7 cell the spot lies in: H3's children do not tile their parent)."""
    return str(h3.int_to_str(h3.cell_to_parent(h3.latlng_to_cell(*spot, 9), 7)))


UNITS = [
    parked("a1", YEOKSAM),
    parked("a2", YEOKSAM),
    parked("a3", YEOKSAM, mqtt=True),
    parked("b1", SEOLLEUNG),
    parked("o1", CITY_HALL),
    parked("o2", YONGSAN),
    parked("leaver", YEOUIDO),
    parked("late", JAMSIL),
    parked("r1", NOWON),
    parked("r2", NOWON),
    parked("p1", SINCHON),
]


@pytest.fixture(scope="module")
def mqtt_broker() -> Iterator[tuple[str, int]]:
    if mosquitto.binary() is None:
        pytest.skip("no MQTT broker: install Mosquitto (apt-get install mosquitto)")
    with mosquitto.running() as address:
        yield address


@dataclass
class World:
    url: str
    pool: asyncpg.Pool
    settings: Settings
    bootstrap: str
    database_url: str
    units: dict[str, Vehicle]
    bridge: MqttBridge
    operator: str = ""  # bearer token with notices:display
    worker: DisplayTargeting | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def section(self) -> NoticesSettings:
        return self.settings.section(NoticesSettings)

    async def start_worker(self, worker: DisplayTargeting | None = None) -> DisplayTargeting:
        self.worker = worker or DisplayTargeting(self.database_url, self.bootstrap, self.settings)
        self._stop, ready = asyncio.Event(), asyncio.Event()
        self._task = asyncio.create_task(self.worker.run(self._stop, ready))
        await asyncio.wait_for(ready.wait(), 20)
        return self.worker

    async def stop_worker(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.url, timeout=20) as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def publish(self, area: dict[str, Any], **fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        given = {
            "idempotencyKey": uuid.uuid4().hex,
            "textKo": "미세먼지 나쁨: 마스크를 쓰세요",
            "textEn": "Fine dust is bad: wear a mask",
            "priority": "WARNING",
            "area": area,
            "endsAt": (now + timedelta(minutes=10)).isoformat(),
            **fields,
        }
        body = await self.graphql(PUBLISH, {"input": given}, self.operator)
        assert "errors" not in body, body
        message: dict[str, Any] = body["data"]["publishDisplayMessage"]
        return message

    async def acks(self, message_id: str) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(
            "SELECT * FROM display_acks WHERE message_id = $1 ORDER BY at", uuid.UUID(message_id)
        )
        return rows

    async def shown_on(self, message_id: str) -> set[str]:
        return {r["device_id"] for r in await self.acks(message_id) if r["state"] == "shown"}

    async def target(self, message_id: str, device: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow(
            "SELECT * FROM display_targets WHERE message_id = $1 AND device_id = $2",
            uuid.UUID(message_id),
            device,
        )
        return row


PUBLISH = """
mutation ($input: PublishDisplayMessageInput!) {
  publishDisplayMessage(input: $input) {
    id status priority area { kind districtCode cells cellCount }
  }
}"""

COVERAGE = """
query ($id: UUID!, $by: CoverageBy!) {
  displayMessage(id: $id) {
    status
    coverage(by: $by) { units unitMinutes suppressed minUnits places { key units unitMinutes } }
  }
}"""

SHOWINGS = """
query ($id: UUID!) {
  displayMessage(id: $id) {
    coverage { showings { deviceId vehicleId shownAt hiddenAt hiddenReason minutes } }
  }
}"""


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 20) -> Any:
    """The first truthy answer of `check`, polled for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(coroutine: Awaitable[object], stop: asyncio.Event | None) -> AsyncIterator[None]:
    task = asyncio.ensure_future(coroutine)
    try:
        yield
    finally:
        if stop is not None:
            stop.set()
        else:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(scope="module")
async def world(
    migrated_url: str,
    kafka_bootstrap: str,
    mqtt_broker: tuple[str, int],
) -> AsyncIterator[World]:
    tag = uuid.uuid4().hex[:8]
    telemetry = f"test.telemetry.{tag}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IEUM_TELEMETRY_TOPIC", telemetry)
        env.setenv("IEUM_NOTICES_DISPLAY_COMMANDS_TOPIC", f"test.commands.{tag}")
        env.setenv("IEUM_NOTICES_DISPLAY_ACKS_TOPIC", f"test.acks.{tag}")
        env.setenv("IEUM_NOTICES_DISPLAY_TICK_SECONDS", "0.2")
        settings = local_settings()
    section = settings.section(NoticesSettings)
    pool = await db.create_pool(migrated_url, settings)
    await taxi_fleet.register(pool, await partner(pool), UNITS)
    await ensure_topics(kafka_bootstrap, 2, telemetry)
    mqtt = MqttSettings(*mqtt_broker, client_id=f"bridge-{tag}", share_group=f"group-{tag}")
    bridge = MqttBridge(
        mqtt,
        kafka_bootstrap,
        topic=telemetry,
        dlq_topic=f"{telemetry}.dlq",
        acks_topic=section.display_acks_topic,
        commands_topic=section.display_commands_topic,
    )
    links = DisplayLinks(section.display_commands_topic, section.display_acks_topic, mqtt_broker)
    ingest = IngestWorker(settings, migrated_url, kafka_bootstrap, topic=telemetry,
                          group_id=f"ingest-{tag}")  # fmt: skip
    ingest_stop, bridge_stop, bridge_ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
    app = create_app(settings, Servers(migrated_url, kafka_bootstrap))
    fleet = taxi_fleet.run(kafka_bootstrap, UNITS, rate=4, duration=math.inf, bad_share=0,
                           topic=telemetry, displays=links)  # fmt: skip
    async with (
        running(ingest.run(ingest_stop), ingest_stop),
        running(bridge.run(bridge_stop, bridge_ready), bridge_stop),
        serving(app, settings.port) as url,
    ):
        await asyncio.wait_for(bridge_ready.wait(), 20)
        found = World(url, pool, settings, kafka_bootstrap, migrated_url,
                      {u.device_id: u for u in UNITS}, bridge)  # fmt: skip
        found.operator = await Hub(url, pool).token(DISPLAY_SCOPES[0].name)
        await found.start_worker()
        async with running(fleet, None):
            yield found
        await found.stop_worker()
    await pool.close()


@pytest.fixture(scope="module")
async def gangnam(world: World) -> dict[str, Any]:
    """A message for 강남구, shown by its four units."""
    message = await world.publish({"districtCode": GANGNAM})
    inside = {"unit-a1", "unit-a2", "unit-a3", "unit-b1"}
    assert await eventually(lambda: _equals(world.shown_on(message["id"]), inside)) == inside
    return message


async def _shown_everywhere(world: World, message_id: str, units: set[str]) -> bool:
    return await world.shown_on(message_id) == units


async def _equals(found: Awaitable[set[str]], wanted: set[str]) -> set[str] | None:
    value = await found
    return value if value == wanted else None


async def test_a_message_reaches_the_units_in_its_area_and_not_those_outside(
    world: World, gangnam: dict[str, Any]
) -> None:
    assert gangnam["status"] == "ACTIVE"
    assert gangnam["area"]["kind"] == "district"
    message_id = uuid.UUID(gangnam["id"])
    for device in ("unit-o1", "unit-o2"):  # outside 강남구: never sent it, never held it
        assert await world.target(gangnam["id"], device) is None
        assert message_id not in screen(world.units[device]).held
        assert message_id not in screen(world.units[device]).on_screen
    for device in ("unit-a1", "unit-a3", "unit-b1"):
        assert screen(world.units[device]).on_screen == {message_id}
    # The MQTT unit took its command from MQTT and acknowledged over MQTT, through the bridge.
    assert world.bridge.relayed >= 1
    acked = [r for r in await world.acks(gangnam["id"]) if r["device_id"] == "unit-a3"]
    target = await world.target(gangnam["id"], "unit-a3")
    assert target is not None and acked[0]["command_id"] == target["command_id"]


async def test_coverage_counts_units_minutes_and_places_with_ids_only_for_the_operator(
    world: World, gangnam: dict[str, Any]
) -> None:
    await asyncio.sleep(1.5)  # the four units are seen showing it for a while
    by_cell = await world.graphql(COVERAGE, {"id": gangnam["id"], "by": "CELL_8"})
    coverage = by_cell["data"]["displayMessage"]["coverage"]
    assert coverage["units"] == 4
    assert coverage["minUnits"] == 3
    yeoksam = h3.int_to_str(h3.latlng_to_cell(*YEOKSAM, 8))
    # 역삼's three units are shown; 선릉's one is below the minimum and left out.
    assert [(p["key"], p["units"]) for p in coverage["places"]] == [(yeoksam, 3)]
    assert coverage["suppressed"] == 1
    assert coverage["places"][0]["unitMinutes"] >= 3
    by_district = await world.graphql(COVERAGE, {"id": gangnam["id"], "by": "DISTRICT"})
    places = by_district["data"]["displayMessage"]["coverage"]["places"]
    assert [(p["key"], p["units"]) for p in places] == [(GANGNAM, 4)]

    rows = await world.acks(gangnam["id"])
    first_shown = {r["device_id"]: r["at"] for r in reversed(rows) if r["state"] == "shown"}
    before = datetime.now(UTC)
    expected = sum((before - at).total_seconds() / 60 for at in first_shown.values())
    again = await world.graphql(COVERAGE, {"id": gangnam["id"], "by": "CELL_9"})
    minutes = again["data"]["displayMessage"]["coverage"]["unitMinutes"]
    after = datetime.now(UTC)
    assert expected - 0.01 <= minutes <= expected + 4 * (after - before).total_seconds() / 60 + 0.01

    anonymous = await world.graphql(SHOWINGS, {"id": gangnam["id"]})
    assert anonymous["data"]["displayMessage"]["coverage"]["showings"] is None
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    operator = await world.graphql(SHOWINGS, {"id": gangnam["id"]}, world.operator)
    showings = operator["data"]["displayMessage"]["coverage"]["showings"]
    assert {(s["deviceId"], s["vehicleId"]) for s in showings} == {
        (f"unit-{n}", f"taxi-{n}") for n in ("a1", "a2", "a3", "b1")
    }
    assert all(s["hiddenAt"] is None and s["minutes"] > 0 for s in showings)
    audited = await world.pool.fetch(
        "SELECT subject FROM audit_log WHERE action = 'display_showings.read'"
    )
    assert {r["subject"] for r in audited} == {"unit-a1", "unit-a2", "unit-a3", "unit-b1"}


async def test_a_unit_leaving_the_area_hides_the_message_and_the_hub_withdraws_it(
    world: World,
) -> None:
    unit = world.units["unit-leaver"]
    message = await world.publish({"cells": [cell7(YEOUIDO)]})
    assert await eventually(lambda: _equals(world.shown_on(message["id"]), {"unit-leaver"}))

    move(unit, CITY_HALL)

    async def hidden() -> list[asyncpg.Record]:
        return [r for r in await world.acks(message["id"]) if r["state"] == "hidden"]

    acks = await eventually(hidden)
    assert [(r["reason"], r["command_id"]) for r in acks] == [("left_area", None)]  # on its own
    withdrawn = await eventually(lambda: _sent_withdraw(world, message["id"], "unit-leaver"))
    assert (withdrawn["reason"], withdrawn["generation"]) == ("left_area", 1)
    assert screen(unit).on_screen == set()

    move(unit, YEOUIDO)  # back in the area: shown again, under a new command

    async def shown_twice() -> bool:
        return [r["state"] for r in await world.acks(message["id"])] == ["shown", "hidden", "shown"]

    assert await eventually(shown_twice)
    again = await world.target(message["id"], "unit-leaver")
    assert again is not None and (again["action"], again["generation"]) == ("show", 2)


async def _sent_withdraw(world: World, message_id: str, device: str) -> asyncpg.Record | None:
    row = await world.target(message_id, device)
    if row is None or row["action"] != "withdraw" or row["sent_at"] is None:
        return None
    return row


async def test_the_window_ending_hides_the_message(world: World) -> None:
    ends = datetime.now(UTC) + timedelta(seconds=4)
    message = await world.publish({"cells": [cell7(JAMSIL)]}, endsAt=ends.isoformat())
    assert await eventually(lambda: _equals(world.shown_on(message["id"]), {"unit-late"}))

    async def hidden() -> list[tuple[str, str]]:
        return [(r["state"], r["reason"]) for r in await world.acks(message["id"])][1:]

    assert await eventually(hidden) == [("hidden", "window_ended")]
    assert (await world.acks(message["id"]))[-1]["at"] >= ends
    withdrawn = await eventually(lambda: _sent_withdraw(world, message["id"], "unit-late"))
    assert withdrawn["reason"] == "window_ended"
    status = await world.graphql(COVERAGE, {"id": message["id"], "by": "CELL_8"})
    assert status["data"]["displayMessage"]["status"] == "ENDED"
    coverage = status["data"]["displayMessage"]["coverage"]
    assert coverage["units"] == 1 and 0 < coverage["unitMinutes"] <= 4 / 60 + 0.01
    assert coverage["places"] == [] and coverage["suppressed"] == 1  # one unit: no place shown


async def test_a_missing_child_alert_outranks_a_fine_dust_warning(world: World) -> None:
    unit = world.units["unit-p1"]
    area = {"cells": [cell7(SINCHON)]}
    dust = await world.publish(area)
    assert await eventually(lambda: _equals(world.shown_on(dust["id"]), {"unit-p1"}))
    alert = await world.publish(area, priority="MISSING_PERSON", textKo="실종 아동을 찾습니다",
                                textEn="Missing child: have you seen her?")  # fmt: skip
    assert await eventually(lambda: _equals(world.shown_on(alert["id"]), {"unit-p1"}))
    assert screen(unit).on_screen == {uuid.UUID(alert["id"])}
    states = [(r["state"], r["reason"]) for r in await world.acks(dust["id"])]
    assert states == [("shown", None), ("hidden", "outranked")]

    body = await world.graphql(
        "mutation ($id: UUID!) { withdrawDisplayMessage(id: $id) { status } }",
        {"id": alert["id"]},
        world.operator,
    )
    assert body["data"]["withdrawDisplayMessage"]["status"] == "WITHDRAWN"

    async def back() -> bool:
        return [r["state"] for r in await world.acks(dust["id"])] == ["shown", "hidden", "shown"]

    assert await eventually(back)  # the warning is back on screen
    alert_states = [(r["state"], r["reason"]) for r in await world.acks(alert["id"])]
    assert alert_states == [("shown", None), ("hidden", "withdrawn")]


@pytest.mark.parametrize(
    ("area", "argument"),
    [
        ({"cells": ["8030fffffffffff"]}, "cells"),  # resolution 0: 40 million cells
        ({"cells": [h3.int_to_str(h3.latlng_to_cell(*YEOKSAM, 9))] * 2001}, "cells"),
        ({"cells": ["not-a-cell"]}, "cells"),
        ({"cells": [h3.int_to_str(h3.latlng_to_cell(*YEOKSAM, 11))]}, "cells"),
        (
            {"polygon": {"type": "Polygon", "coordinates": [
                [[124.6, 33.1], [131.9, 33.1], [131.9, 38.6], [124.6, 38.6], [124.6, 33.1]]
            ]}},
            "polygon",
        ),  # all of Korea
        (
            {"polygon": {"type": "Polygon", "coordinates": [
                [[127.0 + i * 1e-6, 37.5] for i in range(6000)] + [[127.0, 37.5]]
            ]}},
            "polygon",
        ),
        ({"polygon": {"type": "Point", "coordinates": [127.0, 37.5]}}, "polygon"),
        ({"districtCode": "99999"}, "districtCode"),
        ({"districtCode": GANGNAM, "cells": [cell7(YEOKSAM)]}, "area"),
    ],
)  # fmt: skip
async def test_oversized_or_wrong_areas_are_refused_before_any_work(
    world: World, area: dict[str, Any], argument: str
) -> None:
    key = uuid.uuid4().hex
    variables = {
        "input": {
            "idempotencyKey": key,
            "textKo": "안내",
            "textEn": "Notice",
            "priority": "INFORMATION",
            "area": area,
            "endsAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        }
    }
    began = time.monotonic()
    body = await world.graphql(PUBLISH, variables, world.operator)
    assert time.monotonic() - began < 2  # nothing was expanded
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["argument"] == argument
    assert body["data"]["publishDisplayMessage"] is None
    stored = await world.pool.fetchval(
        "SELECT count(*) FROM display_messages WHERE idempotency_key = $1", key
    )
    assert stored == 0


async def test_a_window_in_minutes_counts_from_the_first_send_even_for_the_largest_county(
    world: World,
) -> None:
    """홍천군, the largest 시군구 (about 24,000 resolution-9 cells), takes a message by its
    code; `durationMinutes` sent again with the same key is the same message."""
    key = uuid.uuid4().hex
    first = await world.publish(
        {"districtCode": "51720"}, idempotencyKey=key, endsAt=None, durationMinutes=90
    )
    assert first["status"] == "ACTIVE" and first["area"]["cellCount"] > 20_000
    row = await world.pool.fetchrow(
        "SELECT starts_at, ends_at FROM display_messages WHERE message_id = $1",
        uuid.UUID(first["id"]),
    )
    assert row["ends_at"] - row["starts_at"] == timedelta(minutes=90)
    await asyncio.sleep(1)
    again = await world.publish(
        {"districtCode": "51720"}, idempotencyKey=key, endsAt=None, durationMinutes=90
    )
    assert again["id"] == first["id"]

    for both_or_neither in ({"durationMinutes": 30}, {"endsAt": None}):
        variables = {"input": {"idempotencyKey": uuid.uuid4().hex, "textKo": "안내",
                               "textEn": "Notice", "priority": "INFORMATION",
                               "area": {"cells": [cell7(YONGSAN)]},
                               "endsAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                               **both_or_neither}}  # fmt: skip
        body = await world.graphql(PUBLISH, variables, world.operator)
        error = body["errors"][0]["extensions"]
        assert (error["code"], error["argument"]) == ("BAD_USER_INPUT", "endsAt"), body


async def test_publishing_needs_the_operator_scope_and_a_key_means_one_message(
    world: World,
) -> None:
    given = {
        "idempotencyKey": uuid.uuid4().hex,
        "textKo": "행사 안내",
        "textEn": "Event notice",
        "priority": "INFORMATION",
        "area": {"cells": [cell7(YONGSAN)]},
        "endsAt": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
    }
    anonymous = await world.graphql(PUBLISH, {"input": given})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    first = await world.graphql(PUBLISH, {"input": given}, world.operator)
    again = await world.graphql(PUBLISH, {"input": given}, world.operator)
    assert first["data"] == again["data"]
    other = await world.graphql(
        PUBLISH, {"input": {**given, "textKo": "다른 안내"}}, world.operator
    )
    assert other["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_the_bridge_dead_letters_a_bad_ack_envelope_and_the_worker_a_bad_ack(
    world: World,
) -> None:
    """The bridge checks what every device ack shares (a JSON object of bounded size from
    the unit whose topic it came on); the worker, reading the ack topic, the rest."""
    message = await world.publish({"cells": [cell7(JEJU)]})  # no unit there
    device, topic = "unit-zz", "ieum/devices/unit-zz/acks"
    at = datetime.now(UTC)
    good = displays_wire.Ack(schema=displays_wire.ACK_SCHEMA, ack_id=uuid.uuid4(),
                             device_id=device, message_id=uuid.UUID(message["id"]),
                             state="shown", at=at)  # fmt: skip
    wrong_schema = {"device_id": device, "message_id": message["id"], "state": "shown"}
    async with aiomqtt.Client(world.bridge.mqtt.host, world.bridge.mqtt.port) as unit:
        for payload in (
            b"{broken",
            b'["unit-zz"]',
            orjson.dumps({**wrong_schema, "device_id": "unit-other"}),
            orjson.dumps({**wrong_schema, "padding": "x" * 5000}),
            orjson.dumps(wrong_schema),  # passes the bridge, not the worker
            displays_wire.encode(good),
        ):
            await unit.publish(topic, payload, qos=1)

    letters = await dead_letters(
        world.bootstrap,
        world.bridge.topic,
        4,
        where=lambda r: dict(r.headers)["source_topic"] == topic.encode(),
    )
    reasons = sorted(dict(r.headers)["reason"].decode() for r in letters)
    assert reasons == ["invalid", "malformed_json", "too_large", "topic_mismatch"]
    stored = await eventually(lambda: world.acks(message["id"]))
    assert [(r["ack_id"], r["device_id"]) for r in stored] == [(good.ack_id, device)]


class Crash(Exception):
    """The worker dying after storing its decisions, before the broker had the commands."""


class CrashingTargeting(DisplayTargeting):
    async def _send_unsent(self, *args: Any) -> None:
        if any(not t.sent for t in self.targets.values()):
            raise Crash


async def commands_sent(world: World) -> list[displays_wire.Command]:
    """Every command on the topic so far."""
    consumer = AIOKafkaConsumer(
        world.section.display_commands_topic,
        bootstrap_servers=world.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        found: list[displays_wire.Command] = []
        while batch := await consumer.getmany(timeout_ms=1500):
            for records in batch.values():
                found.extend(displays_wire.parse_command(r.value or b"") for r in records)
        return found
    finally:
        await consumer.stop()


async def test_a_restarted_worker_sends_nothing_twice_and_loses_nothing(world: World) -> None:
    area = {"cells": [cell7(NOWON)]}
    units = {"unit-r1", "unit-r2"}
    await world.stop_worker()
    crashing = CrashingTargeting(world.database_url, world.bootstrap, world.settings)
    stop = asyncio.Event()
    crashed = asyncio.create_task(crashing.run(stop))
    first = await world.publish(area)
    with pytest.raises(Crash):
        await asyncio.wait_for(crashed, 20)
    decided = await world.pool.fetch(
        "SELECT device_id, command_id, sent_at FROM display_targets WHERE message_id = $1",
        uuid.UUID(first["id"]),
    )
    assert {r["device_id"] for r in decided} == units
    assert all(r["sent_at"] is None for r in decided)
    second = await world.publish(area, textKo="두 번째 안내", textEn="Second notice")  # no worker

    await world.start_worker()
    for message_id in (first["id"], second["id"]):
        assert await eventually(functools.partial(_shown_everywhere, world, message_id, units))
    acks = {r["device_id"]: r["command_id"] for r in await world.acks(first["id"])}
    assert acks == {r["device_id"]: r["command_id"] for r in decided}  # the stored commands

    await world.stop_worker()
    await world.start_worker()
    await asyncio.sleep(1.5)  # several ticks of the restarted worker
    mine = {uuid.UUID(first["id"]), uuid.UUID(second["id"])}
    shows = [(c.message_id, c.device_id) for c in await commands_sent(world)
             if c.message_id in mine and c.action == "show"]  # fmt: skip
    assert sorted(shows) == sorted((m, d) for m in mine for d in units)  # each exactly once
    assert all(screen(world.units[d]).on_screen == mine for d in units)
    assert await eventually(functools.partial(_acks_all_committed, world))  # none read twice


async def _acks_all_committed(world: World) -> bool:
    """The worker's ack offsets (kept by its consumer group) are past every ack on the
    topic (found by reading it: the embedded broker's end offsets count batches)."""
    topic = world.section.display_acks_topic
    partitions = (await ensure_display_topics(world.bootstrap, [topic]))[topic]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=world.bootstrap, group_id=ACK_GROUP, enable_auto_commit=False
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        committed = {tp: await consumer.committed(tp) or 0 for tp in assigned}
        ends = dict.fromkeys(assigned, 0)
        for tp in assigned:
            consumer.seek(tp, 0)
        while batch := await consumer.getmany(timeout_ms=1000):
            for tp, records in batch.items():
                ends[tp] = max(ends[tp], *(r.offset + 1 for r in records))
        return committed == ends and sum(ends.values()) > 0
    finally:
        await consumer.stop()


MESSAGES_PAGE = """
query ($first: Int!, $after: String, $current: Boolean!) {
  displayMessages(first: $first, after: $after, currentOnly: $current) {
    edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}"""


async def every_message(world: World, current: bool) -> list[str]:
    """Every listed message's id, two at a time with `after`, checking each page's info."""
    ids: list[str] = []
    after, more = None, True
    while more:
        answer = await world.graphql(
            MESSAGES_PAGE, {"first": 2, "after": after, "current": current}
        )
        page = answer["data"]["displayMessages"]
        info = page["pageInfo"]
        assert info["hasPreviousPage"] == (after is not None)
        ids += [edge["node"]["id"] for edge in page["edges"]]
        after, more = info["endCursor"], info["hasNextPage"]
        assert after == page["edges"][-1]["cursor"]
    return ids


async def test_display_messages_page_newest_first_each_once(world: World) -> None:
    mine = [(await world.publish({"cells": [cell7(JEJU)]}))["id"] for _ in range(3)]
    # Two published in the same instant: the id orders them, and neither is skipped.
    await world.pool.execute(
        "UPDATE display_messages SET created_at = (SELECT created_at FROM display_messages"
        " WHERE message_id = $1) WHERE message_id = $2",
        uuid.UUID(mine[0]),
        uuid.UUID(mine[1]),
    )
    newest_first = [
        str(r["message_id"])
        for r in await world.pool.fetch(
            "SELECT message_id FROM display_messages ORDER BY created_at DESC, message_id DESC"
        )
    ]

    assert await every_message(world, current=False) == newest_first

    withdrawn = await world.graphql(
        "mutation ($id: UUID!) { withdrawDisplayMessage(id: $id) { status } }",
        {"id": mine[2]},
        world.operator,
    )
    assert withdrawn["data"]["withdrawDisplayMessage"]["status"] == "WITHDRAWN"
    current = await every_message(world, current=True)
    assert len(set(current)) == len(current) and mine[2] not in current
    assert [i for i in current if i in mine] == [i for i in newest_first if i in mine[:2]]
    late = "9999-12-31T23:59:59-14:00"  # an aware time past the last UTC one
    for forged in ("abc", encode_cursor("2026-12-01", mine[0]), encode_cursor(late, mine[0])):
        refused = await world.graphql(
            MESSAGES_PAGE, {"first": 2, "after": forged, "current": False}
        )
        assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}
