"""The display targeting worker: which units show which messages, kept in step.

It follows where units are (the sensors domain's positions: the latest stored when it
starts, then its live feed), the open messages (PostgreSQL) and the units' acks (the ack
topic), and every tick:
- sends `show` to each unit inside an active message's area that has not been sent it
  (again after it left and came back: a new generation, a new command id);
- sends `withdraw` to each unit sent `show` that is now seen outside the area
  (`left_area`), or whose message ended (`window_ended`) or was withdrawn (`withdrawn`);
- records, for coverage, the cell and minute where each unit showing a message is seen.

A decision is stored with its command id before the command is sent and marked sent once
the broker has it, so a worker restarted at any point sends nothing twice but an unsent
command, again under its id (units drop ids they have seen), and forgets nothing. One
worker decides at a time (a PostgreSQL advisory lock); others wait to take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from hub.core import db
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.notices import displays, displays_area, displays_store, displays_wire
from resolvers.notices.displays import DisplayMessage
from resolvers.notices.displays_store import PresenceRow, Target
from resolvers.notices.settings import NoticesSettings
from resolvers.sensors import live_feed
from resolvers.sensors.positions import Position, latest_positions
from resolvers.sensors.settings import SensorsSettings

log = logging.getLogger(__name__)

LOCK_KEY = 0x6965756D_6469  # "ieum" "di": one targeting worker at a time
ACK_GROUP = "ieum-notices-displays"
PARTITIONS = 4
RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class Active:
    """A message as the worker holds it: its cells expanded once, its wire form made once."""

    message: DisplayMessage
    cells: frozenset[int]
    wire: displays_wire.Message

    @classmethod
    def of(cls, message: DisplayMessage) -> Active:
        wire = displays_wire.Message(
            id=message.message_id,
            priority=message.priority,  # type: ignore[arg-type]
            rank=message.rank,
            text=displays_wire.Text(ko=message.text_ko, en=message.text_en),
            starts_at=message.starts_at,
            ends_at=message.ends_at,
            area=displays_wire.Area(h3=displays_area.texts(message.area_cells)),
        )
        return cls(message, message.cells(), wire)


def decide(
    messages: dict[uuid.UUID, Active],
    closed: dict[uuid.UUID, DisplayMessage],
    positions: dict[str, Position],
    targets: dict[tuple[uuid.UUID, str], Target],
    now: datetime,
    max_age: timedelta,
) -> list[Target]:
    """The targets that change now (each with a new command id)."""
    changed: list[Target] = []

    def to(target: Target, action: str, reason: str | None, vehicle: str) -> None:
        changed.append(
            replace(
                target,
                vehicle_id=vehicle,
                generation=target.generation + (action == "show"),
                action=action,
                reason=reason,
                command_id=uuid.uuid4(),
                decided_at=now,
                sent=False,
            )
        )

    for (message_id, device), target in targets.items():
        if target.action != "show":
            continue
        if message_id in closed:
            over = closed[message_id]
            to(
                target,
                "withdraw",
                "window_ended" if over.withdrawn_at is None else "withdrawn",
                target.vehicle_id,
            )
            continue
        active = messages.get(message_id)
        seen = positions.get(device)
        if active and seen and seen.ts > target.decided_at and seen.cell not in active.cells:
            to(target, "withdraw", "left_area", seen.vehicle_id)
    for message_id, active in messages.items():
        if active.message.starts_at > now:
            continue
        for device, seen in positions.items():
            if seen.cell not in active.cells or now - seen.ts > max_age:
                continue
            known = targets.get((message_id, device))
            if known is None:
                first = Target(message_id, device, seen.vehicle_id, 1, "show", None,
                               uuid.uuid4(), now, sent=False)  # fmt: skip
                changed.append(first)
            elif known.action == "withdraw" and seen.ts > known.decided_at:
                to(known, "show", None, seen.vehicle_id)
    return changed


def command(target: Target, active: Active | None, now: datetime) -> displays_wire.Command:
    return displays_wire.Command(
        schema=displays_wire.COMMAND_SCHEMA,
        command_id=target.command_id,
        device_id=target.device_id,
        action=target.action,  # type: ignore[arg-type]
        issued_at=now,
        message_id=target.message_id,
        message=active.wire if target.action == "show" and active else None,
        reason=target.reason,  # type: ignore[arg-type]
    )


async def ensure_topics(bootstrap: str, names: list[str]) -> dict[str, list[int]]:
    """Create those missing; each topic's partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(n, PARTITIONS, 1) for n in names if n not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
        described = await admin.describe_topics(names)
        return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described}
    finally:
        await admin.close()


class DisplayTargeting:
    def __init__(
        self,
        database_url: str,
        bootstrap: str,
        settings: Settings,
        *,
        live_topic: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.hub_settings = settings
        self.settings = settings.section(NoticesSettings)
        telemetry = settings.section(SensorsSettings).telemetry_topic
        self.live_topic = live_topic or live_feed.live_topic_for(telemetry)
        self.positions: dict[str, Position] = {}
        self.targets: dict[tuple[uuid.UUID, str], Target] = {}
        self.messages: dict[uuid.UUID, Active] = {}
        self.showing: dict[tuple[uuid.UUID, str], tuple[datetime, str]] = {}
        self.presence: set[PresenceRow] = set()
        self.recorded: set[PresenceRow] = set()
        self.sent = 0  # commands handed to the broker by this worker
        self.followers: list[asyncio.Task[None]] = []

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Decide until `stop`; a failure (database or broker gone) is logged and the
        worker starts again from what PostgreSQL holds."""
        while not stop.is_set():
            try:
                await self._run(stop, ready)
            except (asyncpg.PostgresError, OSError, KafkaError, TimeoutError) as exc:
                log.warning("notices.displays.worker_failed error=%r; restarting", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_SECONDS)

    async def _run(self, stop: asyncio.Event, ready: asyncio.Event | None) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
                if stop.is_set():
                    return
            s = self.settings
            topics = [s.display_commands_topic, s.display_acks_topic]
            partitions = await ensure_topics(self.bootstrap, topics)
            await live_feed.ensure_topic(self.bootstrap, self.live_topic)
            async with contextlib.AsyncExitStack() as stack:
                await self._follow(stack, conn, partitions[s.display_acks_topic], stop)
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
                stack.push_async_callback(producer.stop)
                await producer.start()
                if ready is not None:
                    ready.set()
                while not stop.is_set():
                    await self.tick(conn, producer)
                    for follower in self.followers:
                        if follower.done():
                            follower.result()  # its failure restarts the worker
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), s.display_tick_seconds)
                await self.tick(conn, producer)  # presence seen since the last tick
        finally:
            await conn.close()

    async def _follow(
        self,
        stack: contextlib.AsyncExitStack,
        conn: asyncpg.Connection,
        ack_partitions: list[int],
        stop: asyncio.Event,
    ) -> None:
        """Start following positions and acks, then load what the worker starts from.

        The consumers are started here, not in their tasks (a task cancelled while its
        consumer was starting left connections open). The ack topic's partitions are all
        assigned to this worker, the only one deciding, with the group only keeping its
        offsets: joining a group made each start wait out the broker's rebalance, 5 to 18
        seconds. The feed is followed from before the stored positions are read, so none
        stored in between is missed."""
        feed = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        stack.push_async_callback(feed.stop)
        await feed.start()
        partition = TopicPartition(self.live_topic, 0)
        feed.assign([partition])
        await feed.seek_to_end(partition)
        acks = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=ACK_GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        stack.push_async_callback(acks.stop)
        await acks.start()
        acks.assign([TopicPartition(self.settings.display_acks_topic, p) for p in ack_partitions])
        pool = await db.create_pool(self.database_url, self.hub_settings)
        stack.push_async_callback(pool.close)
        await self._load(conn)
        self.followers = [
            asyncio.create_task(self._follow_positions(feed)),
            asyncio.create_task(self._follow_acks(acks, pool, stop)),
        ]
        stack.push_async_callback(_cancel, self.followers)

    async def _load(self, conn: asyncpg.Connection) -> None:
        self.targets = {
            (t.message_id, t.device_id): t for t in await displays_store.targets_to_follow(conn)
        }
        self.messages = {m.message_id: Active.of(m) for m in await displays.open_messages(conn)}
        self.showing = await displays_store.latest_states(conn, list(self.messages))
        max_age = timedelta(seconds=self.settings.display_position_max_age_seconds)
        for position in await latest_positions(conn, datetime.now(UTC) - max_age):
            self.saw(position)

    async def tick(self, conn: asyncpg.Connection, producer: AIOKafkaProducer) -> None:
        now = datetime.now(UTC)
        opened = await displays.open_messages(conn)
        self.messages = {
            m.message_id: self.messages.get(m.message_id) or Active.of(m) for m in opened
        }
        self.showing = {k: v for k, v in self.showing.items() if k[0] in self.messages}
        gone = {mid for mid, _ in self.targets if mid not in self.messages}
        closed = {m.message_id: m for m in await displays.by_ids(conn, list(gone))}
        max_age = timedelta(seconds=self.settings.display_position_max_age_seconds)
        changed = decide(self.messages, closed, self.positions, self.targets, now, max_age)
        if changed:
            async with conn.transaction():
                await displays_store.save_targets(conn, changed)
            for target in changed:
                self.targets[(target.message_id, target.device_id)] = target
        await self._send_unsent(conn, producer, now)
        for key, target in list(self.targets.items()):  # over, withdrawn and sent: done
            if key[0] in closed and target.action == "withdraw" and target.sent:
                del self.targets[key]
        await self._record_presence(conn, now)

    async def _send_unsent(
        self, conn: asyncpg.Connection, producer: AIOKafkaProducer, now: datetime
    ) -> None:
        unsent = [t for t in self.targets.values() if not t.sent]
        if not unsent:
            return
        topic = self.settings.display_commands_topic
        pending = [
            await producer.send(
                topic,
                key=t.device_id.encode(),
                value=displays_wire.encode(command(t, self.messages.get(t.message_id), now)),
            )
            for t in unsent
        ]
        await asyncio.gather(*pending)
        await displays_store.mark_sent(conn, [t.command_id for t in unsent])
        for t in unsent:
            t.sent = True
        self.sent += len(unsent)

    async def _record_presence(self, conn: asyncpg.Connection, now: datetime) -> None:
        rows, self.presence = self.presence, set()
        await displays_store.store_presence(conn, rows - self.recorded)
        self.recorded |= rows
        recent = now - timedelta(minutes=2)
        self.recorded = {r for r in self.recorded if r[3] >= recent}

    def saw(self, position: Position) -> None:
        """A unit's new position; where it shows a message there, a presence."""
        device = position.device_id
        known = self.positions.get(device)
        if known is not None and known.ts >= position.ts:
            return
        self.positions[device] = position
        minute = position.ts.replace(second=0, microsecond=0)
        for message_id, active in self.messages.items():
            state = self.showing.get((message_id, device))
            if state and state[1] == "shown" and position.cell in active.cells:
                self.presence.add((message_id, device, position.cell, minute))

    def acknowledged(self, ack: displays_wire.Ack) -> None:
        key = (ack.message_id, ack.device_id)
        known = self.showing.get(key)
        if known is None or known[0] <= ack.at:
            self.showing[key] = (ack.at, ack.state)

    async def _follow_positions(self, feed: AIOKafkaConsumer) -> None:
        while True:
            batch = await feed.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    for position in live_feed.positions(record.value or b""):
                        self.saw(position)

    async def _follow_acks(
        self, consumer: AIOKafkaConsumer, pool: asyncpg.Pool, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=1000)
            acks = []
            for records in batch.values():
                for record in records:
                    try:
                        acks.append(displays_wire.parse_ack(record.value or b""))
                    except displays_wire.BadAck as exc:
                        log.warning("notices.displays.bad_ack offset=%d %s", record.offset, exc)
            if acks:
                async with pool.acquire() as conn, conn.transaction():
                    stored = await displays_store.store_acks(conn, acks)
                for ack in stored:
                    self.acknowledged(ack)
            if batch:
                await consumer.commit()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    """The worker as `ieum worker notices-displays` (or inside `ieum serve`) runs it."""
    await DisplayTargeting(servers.database, servers.broker, settings).run(stop)
