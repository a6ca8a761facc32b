"""IEUM_BROKER_STORAGE=s3: what the embedded broker acknowledged survives its kill -9.

The hub starts a local S3 store (LocalBucket, files under IEUM_DATA_DIR/broker-s3) and Tansu
on it. Counts and contents are exact: the memory default would read back nothing here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hub.core.settings import Settings
from hub.embedded import broker, s3store
from hub.embedded.ports import free_port
from hub.runtime import Owner, broker_banner, own_data_dir, read_owner
from tests.sensors.helpers import message, new_topic, partner, recent_minute, register

pytestmark = pytest.mark.slow

N = 5000
PARTITIONS = 3


@pytest.fixture(scope="module")
def s3_installed() -> None:
    """LocalBucket comes from PyPI on first use; without it (offline) there is no test."""
    try:
        s3store.ensure_installed()
    except s3store.EmbeddedS3StoreError as exc:
        pytest.skip(f"the S3 store for IEUM_BROKER_STORAGE=s3 cannot be installed: {exc}")


def _settings(data_dir: Path) -> Settings:
    return Settings.from_env(data_dir=data_dir, broker_storage="s3", kafka_bootstrap=None)


def _owner(data_dir: Path) -> Owner:
    owner = read_owner(data_dir.resolve())
    assert owner is not None
    return owner


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=value[-8:]) for value in values]
        for delivery in sent:
            await delivery  # acknowledged by the broker: it must keep these
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, expect: int, within: float) -> list[bytes]:
    """Every message of `topic` from the beginning, waiting until `expect` came and then
    a second more for any extra (Tansu's ListOffsets(latest) is not the end, so no end
    offsets here)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    got: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + within
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            got += [record.value for records in batch.values() for record in records]
            if len(got) >= expect:
                quiet_until = quiet_until or time.monotonic() + 1.0
                if time.monotonic() > quiet_until:
                    break
    finally:
        await consumer.stop()
    return got


async def test_acknowledged_messages_survive_a_broker_kill(
    s3_installed: None, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    settings = _settings(data_dir)
    topic = f"durable-{uuid.uuid4().hex[:6]}"
    values = [f'{{"n": {i}, "pad": "{"x" * 200}"}} {i:08d}'.encode() for i in range(N)]

    with own_data_dir(settings, "test", need_database=False) as servers:
        owner = _owner(data_dir)
        assert owner.broker_storage == "s3://tansu/"
        assert owner.broker_pid and owner.s3_store_pid
        assert "on disk in" in servers.broker_label and "broker-s3" in servers.broker_label
        assert "survive a broker crash" in servers.broker_label
        assert servers.kafka_bootstrap
        await _produce(servers.kafka_bootstrap, topic, values)

        os.kill(owner.broker_pid, signal.SIGKILL)  # the broker only
        deadline = time.monotonic() + 10
        while _alive(owner.broker_pid) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert not _alive(owner.broker_pid)
        assert _alive(owner.s3_store_pid)
    assert not _alive(owner.s3_store_pid)  # a clean stop stops the store too

    # Started again the way `ieum serve` starts it: the store reads its folder back.
    with own_data_dir(settings, "test", need_database=False) as servers:
        assert servers.kafka_bootstrap
        got = await _read_all(servers.kafka_bootstrap, topic, N, within=60)
    assert len(got) == N
    assert sorted(got) == sorted(values)


async def test_a_restarted_broker_continues_the_topic(s3_installed: None, tmp_path: Path) -> None:
    """Offsets go on from where they were, so ingest's stored offsets stay valid: no
    'offset beyond end' reset after a restart with s3 storage."""
    data_dir = tmp_path / "data"
    store = s3store.start(data_dir / "broker-s3", data_dir / "broker-s3.log")
    storage = broker.local_s3(store)
    tansu = broker.start(data_dir / "broker.log", storage=storage)
    topic = f"continued-{uuid.uuid4().hex[:6]}"
    try:
        first = [f"first {i:06d}".encode() for i in range(300)]
        await _produce(tansu.bootstrap, topic, first)
        os.kill(tansu.pid, signal.SIGKILL)
        tansu.process.wait()
        tansu = broker.start(data_dir / "broker.log", storage=storage)
        producer = AIOKafkaProducer(bootstrap_servers=tansu.bootstrap, acks="all")
        await producer.start()
        try:
            after = [await producer.send_and_wait(topic, b"after", partition=p) for p in (0, 1, 2)]
        finally:
            await producer.stop()
        assert sum(meta.offset for meta in after) == len(first)  # appended behind the first
        got = await _read_all(tansu.bootstrap, topic, len(first) + 3, within=30)
        assert sorted(got) == sorted([*first, b"after", b"after", b"after"])
    finally:
        tansu.stop()
        store.stop()


def test_s3_storage_says_what_to_install_when_the_store_cannot_be_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec(s3store.PACKAGE) is not None:
        pytest.skip("LocalBucket is installed in this Python; nothing to install")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as offline
    settings = _settings(tmp_path / "data")
    with (
        pytest.raises(
            broker.EmbeddedBrokerError, match=re.escape("pip install localbucket==1.2.1")
        ) as err,
        own_data_dir(settings, "test", need_database=False),
    ):
        pass
    assert "IEUM_BROKER_STORAGE=memory" in str(err.value)
    assert _owner_gone(tmp_path / "data")


def _owner_gone(data_dir: Path) -> bool:
    return read_owner(data_dir.resolve()) is None


def test_the_banner_says_what_each_storage_keeps() -> None:
    memory = broker_banner("127.0.0.1:9092", broker.MEMORY)
    assert "topics in memory" in memory and "a broker crash loses" in memory
    assert "IEUM_BROKER_STORAGE=s3" in memory
    s3 = broker_banner("127.0.0.1:9092", broker.operator_s3("s3://city-broker/"))
    assert "s3://city-broker/" in s3 and "survive a broker crash" in s3


@pytest.mark.db
async def test_ingest_stores_every_message_across_a_broker_kill(
    s3_installed: None, migrated_url: str, tmp_path: Path
) -> None:
    """`ieum ingest` on the s3-stored broker; the broker is SIGKILLed mid-stream, while
    producers are still sending, and started again on its port: PostgreSQL ends with every
    reading, each once, and ingest never resets an offset. A send the broker refused around
    the kill (Tansu may answer UNKNOWN_SERVER_ERROR) is sent again, as a device would."""
    pool = await asyncpg.create_pool(migrated_url, min_size=1, max_size=2)
    assert pool is not None
    tag = uuid.uuid4().hex[:6]
    fleet = [(f"d-{tag}-{i}", f"car-{tag}-{i}") for i in range(15)]
    await register(pool, await partner(pool), fleet)
    start = recent_minute(90)
    values = [
        (v.encode(), message(d, v, start + timedelta(seconds=s), 37.4979, 127.0276, {"pm10": s}))
        for s in range(200)
        for d, v in fleet
    ]

    async def stored() -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM sensor_readings WHERE device_id = ANY($1::text[])",
            [d for d, _ in fleet],
        )
        return count

    store = s3store.start(tmp_path / "broker-s3", tmp_path / "broker-s3.log")
    storage = broker.local_s3(store)
    port = free_port()
    tansu = broker.start(tmp_path / "broker.log", port=port, storage=storage)
    topic, log_file = new_topic(), tmp_path / "ingest.log"
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    env = os.environ | {"IEUM_DATABASE_URL": migrated_url, "IEUM_KAFKA_BOOTSTRAP": tansu.bootstrap}
    ieum = str(Path(sys.executable).parent / "ieum")
    with log_file.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *[ieum, "ingest", "--topic", topic, "--group", f"g-{tag}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    ingesting = asyncio.Event()

    async def send_all() -> None:
        """The first 300 at once; the rest at about 1,000 msg/s once ingest is storing, so
        the kill falls in the middle of the stream."""
        producer = AIOKafkaProducer(
            bootstrap_servers=tansu.bootstrap,
            acks="all",
            linger_ms=5,
            request_timeout_ms=5000,  # a request lost with the broker is sent again sooner
        )
        await producer.start()
        try:
            pending = []
            for i, (key, value) in enumerate(values):
                pending.append((key, value, await producer.send(topic, value, key=key)))
                if i == 300:
                    await ingesting.wait()
                if i > 300 and i % 10 == 0:
                    await asyncio.sleep(0.01)
            for _ in range(10):  # as a device does: what was refused is sent again
                results = await asyncio.gather(*(d for _, _, d in pending), return_exceptions=True)
                refused = [
                    (k, v)
                    for (k, v, _), r in zip(pending, results, strict=True)
                    if isinstance(r, Exception)
                ]
                if not refused:
                    return
                await asyncio.sleep(0.5)
                pending = [(k, v, await producer.send(topic, v, key=k)) for k, v in refused]
            raise AssertionError(f"{len(pending)} messages never acknowledged")
        finally:
            await producer.stop()

    try:
        streaming = asyncio.create_task(send_all())
        while await stored() < 300:
            assert process.returncode is None and not streaming.done()
            await asyncio.sleep(0.05)
        ingesting.set()
        await asyncio.sleep(0.5)
        assert not streaming.done()
        os.kill(tansu.pid, signal.SIGKILL)  # mid-stream; the store stays up
        tansu.process.wait()
        await asyncio.sleep(1)
        tansu = broker.start(tmp_path / "broker.log", port=port, storage=storage)
        await asyncio.wait_for(streaming, 120)

        deadline = time.monotonic() + 60
        while await stored() < len(values) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # and nothing more arrives
        assert await stored() == len(values)
        assert process.returncode is None
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 45) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        tansu.stop()
        store.stop()
        await pool.close()
    assert "offset_beyond_end" not in log_file.read_text()
