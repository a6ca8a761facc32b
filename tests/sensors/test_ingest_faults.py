"""Ingest under faults an operator meets: a broker that forgets, stops or dies, a
PostgreSQL that goes away, a COMMIT whose answer is lost. Counts are exact."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from hub.core.settings import Settings
from hub.embedded import broker
from hub.embedded.ports import free_port
from resolvers.sensors import monitoring
from resolvers.sensors.ingest import IngestWorker
from tests.oauth import Hub
from tests.sensors.helpers import (
    dead_letters,
    message,
    new_topic,
    partner,
    produce,
    recent_minute,
    register,
    wait_ingested,
    workers,
)

pytestmark = pytest.mark.db

GANGNAM = (37.4979, 127.0276)


async def _fleet(hub: Hub, size: int) -> list[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    fleet = [(f"f-{tag}-{i}", f"car-{tag}-{i}") for i in range(size)]
    await register(hub.pool, await partner(hub.pool), fleet)
    return fleet


def _messages(
    fleet: list[tuple[str, str]], seconds: range, minutes_ago: int
) -> list[tuple[bytes, bytes]]:
    start = recent_minute(minutes_ago)
    return [
        (v.encode(), message(d, v, start + timedelta(seconds=s), *GANGNAM, {"pm10": s % 50}))
        for s in seconds
        for d, v in fleet
    ]


async def _stored(hub: Hub, fleet: list[tuple[str, str]]) -> int:
    return await hub.pool.fetchval(
        "SELECT count(*) FROM sensor_readings WHERE device_id = ANY($1::text[])",
        [d for d, _ in fleet],
    )


async def _wait_stored(hub: Hub, fleet: list[tuple[str, str]], n: int, within: float) -> int:
    deadline = asyncio.get_running_loop().time() + within
    while await _stored(hub, fleet) < n:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # and nothing more arrives
    return await _stored(hub, fleet)


def _resets() -> float:
    return sum(
        sample.value
        for metric in monitoring.INGEST_OFFSET_RESETS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


class AnswerLost(IngestWorker):
    """The first batch's COMMIT goes through, then the connection breaks before the answer."""

    lost = False

    async def _process(self, producer, parsed) -> None:  # type: ignore[no-untyped-def]
        await super()._process(producer, parsed)
        if not self.lost:
            self.lost = True
            raise OSError("connection reset after COMMIT, before its answer")


async def test_a_batch_committed_before_a_lost_answer_is_not_dead_lettered_again(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str
) -> None:
    fleet = await _fleet(auth_hub, 5)
    good = _messages(fleet, range(100), 20)
    poison = [(b"k", b"{not json %d" % i) for i in range(3)]
    topic, group = new_topic(), f"g-{uuid.uuid4().hex[:6]}"
    await produce(kafka_bootstrap, topic, [*poison, *good])
    settings = Settings.from_env()
    stop = asyncio.Event()
    worker = AnswerLost(settings, migrated_url, kafka_bootstrap, group_id=group, topic=topic)
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)
        await asyncio.sleep(1)  # the retry after the lost answer has run
        assert worker.lost
    finally:
        stop.set()
        await task
    letters = await dead_letters(kafka_bootstrap, topic, len(poison) + 1, all_sent=True)
    reasons = [dict(letter.headers)["reason"].decode() for letter in letters]
    assert reasons == ["malformed_json"] * 3, reasons  # no `duplicate`, none sent twice
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        source = f"{topic}:{headers['source_partition']}:{headers['source_offset']}"
        assert letter.key == source.encode()
    assert await _stored(auth_hub, fleet) == 500


async def test_dead_letters_sent_again_after_a_lost_commit_carry_the_same_keys(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COMMIT that fails after the letters went out sends them again, under their keys."""
    from resolvers.sensors import ingest

    original = ingest._dead_letters
    failed: list[bool] = []

    async def then_commit_lost(*args: object) -> None:
        await original(*args)  # type: ignore[arg-type]
        if not failed:
            failed.append(True)
            raise OSError("COMMIT lost: the transaction rolls back")

    monkeypatch.setattr(ingest, "_dead_letters", then_commit_lost)
    fleet = await _fleet(auth_hub, 2)
    poison = [(b"k", b"{nope %d" % i) for i in range(4)]
    topic, group = new_topic(), f"g-{uuid.uuid4().hex[:6]}"
    await produce(kafka_bootstrap, topic, [*poison, *_messages(fleet, range(10), 25)])
    async with workers(migrated_url, kafka_bootstrap, topic, group):
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)
    assert failed
    letters = await dead_letters(kafka_bootstrap, topic, 9, all_sent=True)
    assert len(letters) == 8  # at-least-once: each twice, ...
    assert len({letter.key for letter in letters}) == 4  # ... under one key each
    assert await _stored(auth_hub, fleet) == 20


async def test_clean_stop_drains_and_a_forgetful_broker_restart_is_read_from_the_start(
    auth_hub: Hub,
    migrated_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What producers handed over before a stop is stored; after the in-memory broker
    comes back empty, the stale offsets are detected, logged, counted and reset."""
    fleet = await _fleet(auth_hub, 10)
    first = _messages(fleet, range(300), 50)  # 3,000 in flight when the stop comes
    later = _messages(fleet, range(300, 330), 50)  # 300 after the restart
    topic, group = new_topic(), f"g-{uuid.uuid4().hex[:6]}"
    # The drain's bound counts from the stop, here before the group even gave the worker
    # its partitions: on a loaded CI machine joining alone took most of the default 10 s.
    monkeypatch.setenv("IEUM_INGEST_DRAIN_SECONDS", "60")
    settings = Settings.from_env()
    one = broker.start(tmp_path / "broker.log")
    try:
        await produce(one.bootstrap, topic, first)
        stop = asyncio.Event()
        stop.set()  # the hub is stopping: ingest has not read a message yet
        worker = IngestWorker(settings, migrated_url, one.bootstrap, group_id=group, topic=topic)
        await asyncio.wait_for(worker.run(stop), 30)
    finally:
        one.stop()
    assert await _stored(auth_hub, fleet) == 3000
    # Ten vehicles' keys need not hash to all four partitions: only those with a stored
    # offset can be beyond the end of the new topic.
    used = await auth_hub.pool.fetchval(
        "SELECT count(*) FROM ingest_offsets WHERE group_id = $1 AND topic = $2"
        " AND next_offset > 0",
        group,
        topic,
    )
    assert 1 <= used <= 4

    resets = _resets()
    two = broker.start(tmp_path / "broker.log")  # the same topic, new and empty
    try:
        await produce(two.bootstrap, topic, later)
        caplog.set_level(logging.ERROR, logger="resolvers.sensors.ingest")
        async with workers(migrated_url, two.bootstrap, topic, group):
            assert await _wait_stored(auth_hub, fleet, 3300, within=20) == 3300
    finally:
        two.stop()
    lines = [r.getMessage() for r in caplog.records if "offset_beyond_end" in r.getMessage()]
    assert len(lines) == used, lines  # each partition once, with both offsets
    assert all("stored_offset=" in line and "partition_end=" in line for line in lines)
    assert _resets() - resets == used


async def test_broker_killed_mid_stream_ingest_resumes_and_still_obeys_sigterm(
    auth_hub: Hub, migrated_url: str, tmp_path: Path
) -> None:
    """kill -9 of the embedded broker under `ieum ingest`: what the broker kept in memory
    is gone (the documented loss), but ingest neither hangs nor skips what comes next."""
    fleet = await _fleet(auth_hub, 10)
    port = free_port()
    log_file = tmp_path / "ingest.log"
    topic, group = new_topic(), f"g-{uuid.uuid4().hex[:6]}"
    tansu = broker.start(tmp_path / "broker.log", port=port)
    env = os.environ | {"IEUM_DATABASE_URL": migrated_url, "IEUM_KAFKA_BOOTSTRAP": tansu.bootstrap}
    command = [str(Path(sys.executable).parent / "ieum"), "ingest", "--topic", topic]
    with log_file.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *command, "--group", group, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        streaming = asyncio.create_task(
            produce(tansu.bootstrap, topic, _messages(fleet, range(2000), 80))
        )
        while await _stored(auth_hub, fleet) < 1000:
            assert process.returncode is None
            await asyncio.sleep(0.05)
        os.kill(tansu.pid, signal.SIGKILL)  # mid-stream
        tansu.process.wait()
        await asyncio.gather(streaming, return_exceptions=True)
        await asyncio.sleep(3)  # a batch already fetched may still commit
        kept = await _stored(auth_hub, fleet)
        assert kept >= 1000

        tansu = broker.start(tmp_path / "broker.log", port=port)  # empty: memory
        await produce(tansu.bootstrap, topic, _messages(fleet, range(2000, 2050), 80))
        assert await _wait_stored(auth_hub, fleet, kept + 500, within=30) == kept + 500
        assert process.returncode is None

        os.kill(tansu.pid, signal.SIGKILL)  # and with the broker gone, SIGTERM still stops it
        tansu.process.wait()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 45) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        tansu.stop()
    assert "offset_beyond_end" in log_file.read_text()


class Proxy:
    """A TCP proxy to PostgreSQL that can refuse, drop every connection, or go silent."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.flowing = asyncio.Event()
        self.flowing.set()

    @property
    def silent(self) -> bool:
        return not self.flowing.is_set()

    @silent.setter
    def silent(self, value: bool) -> None:
        if value:
            self.flowing.clear()
        else:
            self.flowing.set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def refuse(self) -> None:
        """Stop listening and close every connection: PostgreSQL restarting."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self.flowing.wait()  # packets dropped: nothing passes or closes
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[Proxy, str]]:
    parts = urlsplit(url)
    if not parts.hostname or parts.hostname.startswith("/"):
        pytest.skip("PostgreSQL on a Unix socket; the proxy speaks TCP")
    proxy = Proxy(parts.hostname, parts.port or 5432)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    yield (
        proxy,
        urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)),
    )
    await proxy.refuse()


async def _until_disconnected(within: float) -> None:
    """Until the worker has seen its connection go (the gauge is 0), or `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while monitoring.INGEST_DB_CONNECTED._value.get() != 0:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)


async def test_ingest_waits_out_postgresql_outages_and_loses_nothing(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Down at start, a restart mid-stream, then a network that drops packets."""
    monkeypatch.setenv("IEUM_INGEST_WRITE_TIMEOUT_SECONDS", "2")
    settings = Settings.from_env(db_timeout_seconds=1)
    fleet = await _fleet(auth_hub, 5)
    topic, group = new_topic(), f"g-{uuid.uuid4().hex[:6]}"
    stop = asyncio.Event()
    async with proxied(migrated_url) as (proxy, url):
        await produce(kafka_bootstrap, topic, _messages(fleet, range(0, 100), 60))
        worker = IngestWorker(settings, url, kafka_bootstrap, group_id=group, topic=topic)
        task = asyncio.create_task(worker.run(stop))
        try:
            await asyncio.sleep(2)  # PostgreSQL is down as the worker starts
            assert not task.done()
            assert monitoring.INGEST_DB_CONNECTED._value.get() == 0
            await proxy.start()
            assert await _wait_stored(auth_hub, fleet, 500, within=20) == 500
            assert monitoring.INGEST_DB_CONNECTED._value.get() == 1

            await proxy.refuse()  # PostgreSQL restarts: connections drop, then refused
            await produce(kafka_bootstrap, topic, _messages(fleet, range(100, 200), 60))
            await _until_disconnected(within=20)
            assert not task.done()
            assert monitoring.INGEST_DB_CONNECTED._value.get() == 0
            await proxy.start()
            assert await _wait_stored(auth_hub, fleet, 1000, within=20) == 1000
            assert monitoring.INGEST_DB_CONNECTED._value.get() == 1  # so the wait below waits

            proxy.silent = True  # packets dropped: the batch must time out, not hang
            await produce(kafka_bootstrap, topic, _messages(fleet, range(200, 300), 60))
            await _until_disconnected(within=10)  # the batch's write timed out (2 s)
            assert not task.done()
            assert monitoring.INGEST_DB_CONNECTED._value.get() == 0
            proxy.silent = False
            await proxy.refuse()  # the silent connections are dead; new ones get through
            await proxy.start()
            assert await _wait_stored(auth_hub, fleet, 1500, within=20) == 1500
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
