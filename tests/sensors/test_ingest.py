"""Device messages through the real broker into PostgreSQL, and back out through GraphQL."""

from __future__ import annotations

import asyncio
import functools
import math
import random
import statistics
import uuid
from datetime import timedelta

import httpx
import pytest
from h3.api import basic_int as h3

from hub.core.settings import Settings
from resolvers.sensors.ingest import IngestWorker
from resolvers.sensors.message import H3_RESOLUTION
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

SEOUL_CITY_HALL = (37.5665, 126.9780)
GANGNAM = (37.4979, 127.0276)


async def graphql(hub: Hub, query: str, access_token: str | None, **variables: object) -> dict:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    async with httpx.AsyncClient(base_url=hub.url, timeout=20) as http:
        response = await http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
    assert response.status_code == 200, response.text
    return response.json()


SERIES = """
query($cells: [String!], $from: DateTime!, $to: DateTime!, $bucket: Bucket!, $metric: String!) {
  sensorSeries(area: {cells: $cells}, metric: $metric, from: $from, to: $to, bucket: $bucket) {
    bucket value { count mean min max stddev }
  }
}"""


async def test_messages_become_exact_aggregates(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    owner = await partner(auth_hub.pool)
    vehicles = [(f"u-{tag}-{i}", f"car-{tag}-{i}") for i in range(4)]
    await register(auth_hub.pool, owner, vehicles)
    rng = random.Random(5)
    start = recent_minute(30)
    sent: list[tuple[int, int, float]] = []  # (cell, minute index, pm2_5)
    values = []
    for minute in range(3):
        for second in range(0, 60, 10):
            ts = start + timedelta(minutes=minute, seconds=second)
            for i, (device, vehicle) in enumerate(vehicles):
                lat, lng = SEOUL_CITY_HALL if i < 3 else GANGNAM
                pm = round(rng.uniform(5, 90), 2)
                values.append(
                    (vehicle.encode(), message(device, vehicle, ts, lat, lng, {"pm2_5": pm}))
                )
                sent.append((h3.latlng_to_cell(lat, lng, H3_RESOLUTION), minute, pm))
    topic, group = new_topic(), f"g-{tag}"
    await produce(kafka_bootstrap, topic, values)
    async with workers(migrated_url, kafka_bootstrap, topic, group):
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)

    city_hall = h3.latlng_to_cell(*SEOUL_CITY_HALL, H3_RESOLUTION)
    reader = await auth_hub.token("sensors:read")
    body = await graphql(
        auth_hub,
        SERIES,
        reader,
        cells=[h3.int_to_str(city_hall)],
        metric="pm2_5",
        bucket="MINUTE",
        **{"from": start.isoformat(), "to": (start + timedelta(minutes=3)).isoformat()},
    )
    points = body["data"]["sensorSeries"]
    assert len(points) == 3
    for minute, point in enumerate(points):
        expected = [pm for cell, m, pm in sent if cell == city_hall and m == minute]
        value = point["value"]
        assert value["count"] == len(expected) == 18
        assert value["mean"] == pytest.approx(statistics.fmean(expected), rel=1e-5)
        assert value["min"] == pytest.approx(min(expected), rel=1e-6)
        assert value["max"] == pytest.approx(max(expected), rel=1e-6)
        assert value["stddev"] == pytest.approx(statistics.pstdev(expected), rel=1e-4)

    # One vehicle in Gangnam: below k = 3, so the value is withheld.
    lonely = await graphql(
        auth_hub,
        SERIES,
        reader,
        cells=[h3.int_to_str(h3.latlng_to_cell(*GANGNAM, H3_RESOLUTION))],
        metric="pm2_5",
        bucket="HOUR",
        **{
            "from": (start - timedelta(hours=1)).isoformat(),
            "to": (start + timedelta(hours=1)).isoformat(),
        },
    )
    assert [p["value"] for p in lonely["data"]["sensorSeries"]] == [None] * len(
        lonely["data"]["sensorSeries"]
    )
    assert lonely["data"]["sensorSeries"]


async def test_each_reject_reason_lands_in_the_dead_letter_topic(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    owner = await partner(auth_hub.pool)
    good, other, off = (
        (f"ok-{tag}", f"car-{tag}"),
        (f"x-{tag}", f"cx-{tag}"),
        (f"off-{tag}", f"co-{tag}"),
    )
    await register(auth_hub.pool, owner, [good, other, off])
    from resolvers.sensors import devices

    await devices.disable(auth_hub.pool, owner, off[0])
    ts = recent_minute(5)
    lat, lng = SEOUL_CITY_HALL
    ok = message(*good, ts, lat, lng, {"pm10": 30})
    cases = {
        "malformed_json": b"{oops",
        "schema": message(*good, ts, lat, lng, {"pm10": 30}, schema="ieum.telemetry.v0"),
        "unknown_metric": message(*good, ts, lat, lng, {"smog_level": 3}),
        "out_of_range": message(*good, ts, lat, lng, {"humidity": 140}),
        "future_timestamp": message(*good, ts + timedelta(hours=2), lat, lng, {"pm10": 1}),
        "stale_timestamp": message(*good, ts - timedelta(days=30), lat, lng, {"pm10": 1}),
        "outside_korea": message(*good, ts, 35.68, 139.76, {"pm10": 1}),  # Tokyo
        "unknown_device": message("nobody", "car-0", ts, lat, lng, {"pm10": 1}),
        "disabled_device": message(*off, ts, lat, lng, {"pm10": 1}),
        "vehicle_mismatch": message(other[0], "someone-else", ts, lat, lng, {"pm10": 1}),
        "duplicate": message(*good, ts, lat, lng, {"pm10": 99}),  # same key, other values
        "too_large": b" " * 70_000,
    }
    topic, group = new_topic(), f"g-{tag}"
    after = message(*good, ts + timedelta(seconds=1), lat, lng, {"pm10": 31})
    await produce(
        kafka_bootstrap,
        topic,
        [(b"k", ok), *((b"k", raw) for raw in cases.values()), (b"k", after)],
    )
    async with workers(migrated_url, kafka_bootstrap, topic, group):
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)
    letters = await dead_letters(kafka_bootstrap, topic, len(cases))
    by_reason = {dict(r.headers)["reason"].decode(): r for r in letters}
    assert set(by_reason) == set(cases)
    for reason, raw in cases.items():
        letter = by_reason[reason]
        headers = {k: v.decode() for k, v in letter.headers}
        assert letter.value == raw, reason  # the original bytes
        assert headers["source_topic"] == topic
        assert int(headers["source_offset"]) >= 0 and headers["source_partition"].isdigit()
        assert headers["detail"]
    # The poison messages did not stop the stream: the valid ones around them are stored.
    stored = await auth_hub.pool.fetchval(
        "SELECT count(*) FROM sensor_readings WHERE device_id = $1", good[0]
    )
    assert stored == 2


async def test_two_workers_share_the_partitions_with_exact_totals(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    owner = await partner(auth_hub.pool)
    fleet = [(f"u-{tag}-{i}", f"car-{tag}-{i}") for i in range(12)]
    await register(auth_hub.pool, owner, fleet)
    start = recent_minute(60)
    values = [
        (
            v.encode(),
            message(d, v, start + timedelta(seconds=s), *GANGNAM, {"noise_laeq": 50 + s % 20}),
        )
        for s in range(300)
        for d, v in fleet
    ]
    topic, group = new_topic(), f"g-{tag}"
    await produce(kafka_bootstrap, topic, values)
    async with workers(migrated_url, kafka_bootstrap, topic, group, count=2) as pair:
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)
        assigned = [w.consumer.assignment() if w.consumer else set() for w in pair]
    assert all(assigned), "both workers got partitions"
    total = await auth_hub.pool.fetchval(
        "SELECT count(*) FROM sensor_readings WHERE device_id = ANY($1::text[])",
        [d for d, _ in fleet],
    )
    assert total == len(values) == 3600
    rolled = await auth_hub.pool.fetchval(
        "SELECT sum(n[$1]) FROM sensor_rollups WHERE cell = $2 AND bucket >= $3 AND bucket < $4",
        _metric_index("noise_laeq"),
        h3.latlng_to_cell(*GANGNAM, H3_RESOLUTION),
        start,
        start + timedelta(minutes=5),
    )
    assert rolled == 3600


class Killed(BaseException):
    """A kill: like SystemExit, no `except Exception` handler sees it (and, unlike
    SystemExit, asyncio hands it to whoever awaits the dying task)."""


class CrashingWorker(IngestWorker):
    """Dies once at a chosen point of a batch, as a killed process would."""

    def __init__(self, *args: object, crash: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.crash = crash
        self.crashed = asyncio.Event()

    async def _process(self, producer, batch) -> None:  # type: ignore[no-untyped-def]
        if self.crash == "before_commit" and not self.crashed.is_set():
            from resolvers.sensors import ingest_store

            original = ingest_store.store_offsets

            async def boom(*args: object, **kwargs: object) -> None:
                await original(*args, **kwargs)  # type: ignore[arg-type]
                self.crashed.set()
                raise Killed("killed inside the transaction, before COMMIT")

            ingest_store.store_offsets = boom  # type: ignore[assignment]
            try:
                await super()._process(producer, batch)
            finally:
                ingest_store.store_offsets = original
        else:
            await super()._process(producer, batch)
            if self.crash == "after_commit" and not self.crashed.is_set():
                self.crashed.set()
                raise Killed("killed after COMMIT, before the Kafka commit")


@pytest.fixture
def short_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest's consumers heartbeat every 0.5 s and are dropped from their group 3 s after
    the last (aiokafka's defaults: 3 s and 10 s): a killed worker's member stops holding
    the group's partitions sooner, and its replacement gets them. Nothing checked changes."""
    from resolvers.sensors import ingest

    monkeypatch.setattr(
        ingest,
        "AIOKafkaConsumer",
        functools.partial(
            ingest.AIOKafkaConsumer, session_timeout_ms=3000, heartbeat_interval_ms=500
        ),
    )


@pytest.mark.parametrize("crash", ["before_commit", "after_commit"])
async def test_killed_worker_restarted_gives_exact_counts(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str, crash: str, short_sessions: None
) -> None:
    tag = uuid.uuid4().hex[:6]
    owner = await partner(auth_hub.pool)
    fleet = [(f"u-{tag}-{i}", f"car-{tag}-{i}") for i in range(5)]
    await register(auth_hub.pool, owner, fleet)
    start = recent_minute(90 if crash == "before_commit" else 120)  # apart in the rollups
    values = [
        (
            v.encode(),
            message(d, v, start + timedelta(seconds=s), *SEOUL_CITY_HALL, {"co2": 400 + s}),
        )
        for s in range(400)
        for d, v in fleet
    ]
    topic, group = new_topic(), f"g-{tag}"
    await produce(kafka_bootstrap, topic, values)

    stop = asyncio.Event()
    dying = CrashingWorker(
        Settings.from_env(), migrated_url, kafka_bootstrap, group_id=group, topic=topic, crash=crash
    )
    with pytest.raises(Killed):
        await dying.run(stop)
    assert dying.crashed.is_set()

    async with workers(migrated_url, kafka_bootstrap, topic, group):
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)
    devices = [d for d, _ in fleet]
    total = await auth_hub.pool.fetchval(
        "SELECT count(*) FROM sensor_readings WHERE device_id = ANY($1::text[])", devices
    )
    assert total == 2000
    n, total_co2 = await auth_hub.pool.fetchrow(
        "SELECT sum(n[$1]), sum(sum[$1]) FROM sensor_rollups"
        " WHERE cell = $2 AND bucket >= $3 AND bucket < $4",
        _metric_index("co2"),
        h3.latlng_to_cell(*SEOUL_CITY_HALL, H3_RESOLUTION),
        start,
        start + timedelta(minutes=7),
    )
    assert n == 2000
    assert math.isclose(total_co2, 5 * sum(400 + s for s in range(400)))


def _metric_index(name: str) -> int:
    from resolvers.sensors.catalog import by_name

    return by_name()[name].id + 1


async def test_partitions_are_made_ahead_and_dropped_after_retention(
    auth_hub: Hub,
) -> None:
    from datetime import date

    from resolvers.sensors import ingest_store

    async with auth_hub.pool.acquire() as conn:
        await ingest_store.ensure_partitions(conn, date(2020, 1, 1), date(2020, 1, 3))
        names = {
            row["relname"]
            for row in await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'sensor_readings'::regclass"
            )
        }
        assert {"sensor_readings_20200101", "sensor_readings_20200103"} <= names
        dropped = await ingest_store.drop_partitions_before(conn, date(2020, 1, 3))
        assert dropped == ["sensor_readings_20200101", "sensor_readings_20200102"]
        assert await conn.fetchval("SELECT to_regclass('sensor_readings_20200103')") is not None


async def test_ingest_counters_are_on_metrics(auth_hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=auth_hub.url) as http:
        text = (await http.get("/metrics")).text
    # Earlier tests in this module ingested and rejected messages in this process.
    assert "ieum_ingest_accepted_messages_total" in text
    assert 'ieum_ingest_rejected_messages_total{reason="unknown_device"}' in text
    assert "ieum_ingest_lag_messages" in text


async def test_ingest_process_killed_repeatedly_loses_and_doubles_nothing(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str
) -> None:
    """`ieum ingest` as a real process, SIGKILLed twice mid-stream, then run to the end."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    tag = uuid.uuid4().hex[:6]
    owner = await partner(auth_hub.pool)
    fleet = [(f"k-{tag}-{i}", f"car-{tag}-{i}") for i in range(20)]
    await register(auth_hub.pool, owner, fleet)
    start = recent_minute(150)
    values = [
        (
            v.encode(),
            message(d, v, start + timedelta(seconds=s), *GANGNAM, {"so2": 0.001 * (s % 7)}),
        )
        for s in range(1500)
        for d, v in fleet
    ]
    topic, group = new_topic(), f"g-{tag}"
    await produce(kafka_bootstrap, topic, values)
    env = os.environ | {"IEUM_DATABASE_URL": migrated_url, "IEUM_KAFKA_BOOTSTRAP": kafka_bootstrap}
    command = [
        str(Path(sys.executable).parent / "ieum"),
        "ingest",
        "--topic",
        topic,
        "--group",
        group,
    ]

    async def stored() -> int:
        return await auth_hub.pool.fetchval(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM ingest_offsets"
            " WHERE group_id = $1 AND topic = $2",
            group,
            topic,
        )

    for kill_after in (1, 12_000):  # kill once early, once further in
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(600):
            if await stored() >= kill_after:
                break
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
        assert await stored() < len(values), "killed before the end"

    final = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group, within=120)
    finally:
        final.send_signal(signal.SIGTERM)
        await asyncio.wait_for(final.wait(), 30)
    devices = [d for d, _ in fleet]
    total = await auth_hub.pool.fetchval(
        "SELECT count(*) FROM sensor_readings WHERE device_id = ANY($1::text[])", devices
    )
    assert total == len(values) == 30_000
    rolled = await auth_hub.pool.fetchval(
        "SELECT sum(n[$1]) FROM sensor_rollups WHERE cell = $2 AND bucket >= $3 AND bucket < $4",
        _metric_index("so2"),
        h3.latlng_to_cell(*GANGNAM, H3_RESOLUTION),
        start,
        start + timedelta(minutes=26),
    )
    assert rolled == 30_000


async def test_partitions_are_made_ahead_even_soon_after_boot(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hourly check must run the first time, whatever the monotonic clock reads."""
    from datetime import UTC, datetime

    from resolvers.sensors import ingest, ingest_store

    ahead = ingest_store.partition_name(datetime.now(UTC).date() + timedelta(days=2))
    await auth_hub.pool.execute(f"DROP TABLE IF EXISTS {ahead}")
    monkeypatch.setattr(ingest.time, "monotonic", lambda: 5.0)  # a machine up for 5 s
    worker = IngestWorker(Settings.from_env(), migrated_url, kafka_bootstrap)
    worker.conn = await worker._connect()
    try:
        await worker._maintain()
    finally:
        await worker.conn.close()
    assert await auth_hub.pool.fetchval("SELECT to_regclass($1) IS NOT NULL", ahead)


async def test_rollup_arrays_merge_element_wise_across_catalog_growth(auth_hub: Hub) -> None:
    """A row written before a metric joined the catalog merges with a longer one."""
    row = await auth_hub.pool.fetchrow(
        "SELECT ieum_array_add('{1,2}'::int[], '{10,20,30}'::int[]) AS n,"
        " ieum_array_add('{0.5}'::float8[], '{0.25}'::float8[]) AS s,"
        " ieum_array_least('{3,1}'::real[], '{2,5,7}'::real[]) AS lo,"
        " ieum_array_greatest('{3,1,NULL}'::real[], '{2,5}'::real[]) AS hi"
    )
    assert row["n"] == [11, 22, 30]
    assert row["s"] == [0.75]
    assert row["lo"] == [2, 1, 7]
    assert row["hi"] == [3, 5, None]


async def test_a_reading_sent_again_is_a_redelivery_and_a_conflicting_one_a_duplicate(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str
) -> None:
    """A producer that resends (at-least-once) is not sending bad input: the same message
    again is counted once and not dead-lettered; other values under a stored key are."""
    from resolvers.sensors import monitoring

    tag = uuid.uuid4().hex[:6]
    owner = await partner(auth_hub.pool)
    device = (f"again-{tag}", f"car-{tag}")
    await register(auth_hub.pool, owner, [device])
    ts = recent_minute(40)
    first = message(*device, ts, *SEOUL_CITY_HALL, {"co2": 410})
    second = message(*device, ts + timedelta(seconds=1), *SEOUL_CITY_HALL, {"co2": 420})
    conflicting = message(*device, ts, *SEOUL_CITY_HALL, {"co2": 999})
    topic, group = new_topic(), f"g-{tag}"
    await produce(kafka_bootstrap, topic, [(b"k", first)])
    redelivered = monitoring.INGEST_REDELIVERED._value.get()
    async with workers(migrated_url, kafka_bootstrap, topic, group):
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)
        await produce(kafka_bootstrap, topic, [(b"k", first), (b"k", second), (b"k", conflicting)])
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)
    assert monitoring.INGEST_REDELIVERED._value.get() - redelivered == 1
    letters = await dead_letters(kafka_bootstrap, topic, 2, all_sent=True)  # a second one?
    assert len(letters) == 1
    headers = {k: v.decode() for k, v in letters[0].headers}
    assert (headers["reason"], letters[0].value) == ("duplicate", conflicting)
    assert "timestamp" in headers["detail"]
    n, total = await auth_hub.pool.fetchrow(
        "SELECT sum(n[$1]), sum(sum[$1]) FROM sensor_rollups WHERE cell = $2 AND bucket = $3",
        _metric_index("co2"),
        h3.latlng_to_cell(*SEOUL_CITY_HALL, H3_RESOLUTION),
        ts,
    )
    assert (n, total) == (2, 830)
