"""The outbox: committed events reach Kafka at least once, rolled-back ones never."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from hub.core import db
from hub.core.settings import Settings
from hub.embedded import broker
from hub.embedded.ports import free_port
from resolvers.payments import outbox
from resolvers.payments.outbox import Deduplicator, Relay

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


@pytest.fixture(autouse=True)
async def empty_outbox(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Each test's events only: a later test's relay must not send an earlier one's."""
    yield
    await pool.execute("DELETE FROM payment_outbox")


@pytest.fixture
def topic() -> str:
    return f"test.payments.{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def relays(
    url: str, bootstrap: str, topic: str, count: int = 1, **options: Any
) -> AsyncIterator[list[Relay]]:
    stop = asyncio.Event()
    running = [Relay(url, Settings.from_env(), bootstrap, topic, **options) for _ in range(count)]
    tasks = [asyncio.create_task(relay.run(stop)) for relay in running]
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def add_events(pool: asyncpg.Pool, key: str, count: int) -> list[uuid.UUID]:
    """`count` events of one key in one committed transaction."""
    async with pool.acquire() as conn, conn.transaction():
        return [
            await outbox.add(conn, "payment.confirmed", key, {"seq": seq, "amount": 1_000})
            for seq in range(count)
        ]


async def consume(
    bootstrap: str, topic: str, expected: int, *, within: float = 20, linger: float = 1.0
) -> list[ConsumerRecord]:
    """Every message of the topic from the beginning: waits for `expected` of them, then
    `linger` seconds more so a duplicate or a stray message would show too."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + within
        while len(found) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
        lingering = time.monotonic() + linger
        while time.monotonic() < lingering:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    return found


def event_ids(records: list[ConsumerRecord]) -> Counter[str]:
    return Counter(json.loads(record.value)["event_id"] for record in records)


async def pending(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM payment_outbox WHERE relayed_at IS NULL")
    return count


async def test_committed_events_are_relayed_once_and_rolled_back_ones_never(
    pool: asyncpg.Pool, migrated_url: str, kafka_bootstrap: str, topic: str
) -> None:
    class Abandoned(Exception):
        pass

    # A long poll: only the NOTIFY at commit can wake the relay in time.
    async with relays(migrated_url, kafka_bootstrap, topic, poll_seconds=60):
        with contextlib.suppress(Abandoned):
            async with pool.acquire() as conn, conn.transaction():
                abandoned = await outbox.add(conn, "payment.confirmed", "p-rolled-back", {})
                raise Abandoned
        started = time.monotonic()
        committed = [eid for key in ("p-1", "p-2", "p-3") for eid in await add_events(pool, key, 5)]
        records = await consume(kafka_bootstrap, topic, len(committed))
        assert time.monotonic() - started < 10

    assert event_ids(records) == Counter(str(eid) for eid in committed)
    assert str(abandoned) not in event_ids(records)
    for record in records:
        envelope = json.loads(record.value)
        assert record.key.decode() == envelope["key"]
        assert dict(record.headers) == {"event_id": envelope["event_id"].encode()}
        assert envelope["type"] == "payment.confirmed"
        assert envelope["data"]["amount"] == 1_000
        assert envelope["occurred_at"].endswith("+00:00")
    for key in ("p-1", "p-2", "p-3"):  # a payment's events in the order they were written
        sequence = [json.loads(r.value)["data"]["seq"] for r in records if r.key == key.encode()]
        assert sequence == list(range(5))
    assert await pending(pool) == 0


async def test_two_relays_send_each_event_once(
    pool: asyncpg.Pool, migrated_url: str, kafka_bootstrap: str, topic: str
) -> None:
    async with relays(migrated_url, kafka_bootstrap, topic, count=2, batch=7):
        written = await asyncio.gather(*(add_events(pool, f"p-{n}", 10) for n in range(30)))
        records = await consume(kafka_bootstrap, topic, 300)
    assert event_ids(records) == Counter(str(eid) for batch in written for eid in batch)
    assert await pending(pool) == 0


async def test_a_row_another_relay_holds_is_skipped_not_waited_for(
    pool: asyncpg.Pool, migrated_url: str, kafka_bootstrap: str, topic: str
) -> None:
    [held] = await add_events(pool, "p-held", 1)
    others = await add_events(pool, "p-free", 3)
    async with pool.acquire() as other_relay, other_relay.transaction():
        await other_relay.execute(
            "SELECT 1 FROM payment_outbox WHERE event_id = $1 FOR UPDATE", held
        )
        async with relays(migrated_url, kafka_bootstrap, topic):
            records = await consume(kafka_bootstrap, topic, 3)
    assert event_ids(records) == Counter(str(eid) for eid in others)
    assert await pending(pool) == 1


async def test_events_wait_while_the_broker_is_unreachable_and_leave_when_it_is_back(
    pool: asyncpg.Pool, migrated_url: str, tmp_path: Path, topic: str
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    async with relays(migrated_url, bootstrap, topic, broker_timeout=2):
        written = await add_events(pool, "p-1", 5)
        await asyncio.sleep(2)
        assert await pending(pool) == 5
        back = await asyncio.to_thread(broker.start, tmp_path / "broker.log", port=port)
        try:
            records = await consume(bootstrap, topic, 5, within=40)
        finally:
            await asyncio.to_thread(back.stop)
    assert event_ids(records) == Counter(str(eid) for eid in written)
    assert await pending(pool) == 0


async def test_the_relay_listens_again_after_its_connection_drops(
    pool: asyncpg.Pool, migrated_url: str, kafka_bootstrap: str, topic: str
) -> None:
    async with relays(migrated_url, kafka_bootstrap, topic, poll_seconds=60):
        first = await add_events(pool, "p-1", 1)
        assert event_ids(await consume(kafka_bootstrap, topic, 1, linger=0)) == Counter(
            str(eid) for eid in first
        )
        # Its round committed: killed between the broker's ack and the commit, the relay
        # rightly sends the event again (at least once), which is not what is tested here.
        async with asyncio.timeout(10):
            while True:
                if not await pending(pool):
                    break
                await asyncio.sleep(0.05)
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'ieum outbox relay' AND datname = current_database()"
        )
        assert killed == 1
        await asyncio.sleep(0.5)
        started = time.monotonic()
        second = await add_events(pool, "p-2", 1)
        records = await consume(kafka_bootstrap, topic, 2)
        assert time.monotonic() - started < 10  # woken by NOTIFY, not the 60 s poll
    assert event_ids(records) == Counter(str(eid) for eid in first + second)


async def test_follow_yields_new_envelopes_once(
    pool: asyncpg.Pool, migrated_url: str, kafka_bootstrap: str, topic: str
) -> None:
    async with relays(migrated_url, kafka_bootstrap, topic):
        [old] = await add_events(pool, "p-old", 1)
        await consume(kafka_bootstrap, topic, 1, linger=0)
        received: list[dict[str, Any]] = []

        async def listen(from_end: bool, count: int) -> None:
            async with contextlib.aclosing(
                outbox.follow(kafka_bootstrap, topic, from_end=from_end)
            ) as events:
                async for envelope in events:
                    received.append(envelope)
                    if len(received) == count:
                        return

        follower = asyncio.create_task(listen(from_end=True, count=2))
        await asyncio.sleep(1.5)  # the follower is at the end of every partition
        [new] = await add_events(pool, "p-new", 1)
        [envelope] = [json.loads(r.value) for r in await consume(kafka_bootstrap, topic, 2)
                      if json.loads(r.value)["event_id"] == str(new)]  # fmt: skip
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:  # a resend, as after a relay that died before its commit
            await producer.send_and_wait(topic, json.dumps(envelope).encode(), key=b"p-new")
            await producer.send_and_wait(topic, b"not json", key=b"p-new")
        finally:
            await producer.stop()
        [last] = await add_events(pool, "p-last", 1)
        await asyncio.wait_for(follower, 20)
        assert [e["event_id"] for e in received] == [str(new), str(last)]

        received.clear()
        await asyncio.wait_for(listen(from_end=False, count=3), 20)
        # From the beginning: each event once (in order per partition, not across them).
        assert sorted(e["event_id"] for e in received) == sorted(map(str, (old, new, last)))


def test_the_deduplicator_forgets_the_least_recently_seen() -> None:
    seen = Deduplicator(size=3)
    assert [seen.first_time(e) for e in ("a", "b", "a", "c", "d")] == [
        True, True, False, True, True
    ]  # fmt: skip
    # "b" was the least recently seen of a, b, c when "d" came: it is forgotten.
    assert [seen.first_time(e) for e in ("a", "c", "d", "b")] == [False, False, False, True]


async def test_prune_deletes_only_events_relayed_long_enough_ago(pool: asyncpg.Pool) -> None:
    ids = [eid for key in ("old", "recent", "waiting") for eid in await add_events(pool, key, 1)]
    await pool.execute(
        "UPDATE payment_outbox SET relayed_at = now() - $2::interval WHERE event_id = $1",
        ids[0],
        timedelta(days=8),
    )
    await pool.execute(
        "UPDATE payment_outbox SET relayed_at = now() - $2::interval WHERE event_id = $1",
        ids[1],
        timedelta(days=1),
    )
    assert await outbox.prune(pool, timedelta(days=7)) == 1
    left = {row["event_id"] for row in await pool.fetch("SELECT event_id FROM payment_outbox")}
    assert left == set(ids[1:])
