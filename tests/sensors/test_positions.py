"""Where units are, as other domains read it: stored readings' latest positions, and the
positions of the live feed, through the real broker, ingest worker and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from h3.api import basic_int as h3

from hub.core import db
from hub.core.settings import Settings
from resolvers.sensors import live_feed
from resolvers.sensors.positions import Position, latest_positions
from tests.sensors.helpers import (
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

CITY_HALL = (37.5665, 126.9780)
GANGNAM = (37.4979, 127.0276)


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    found = await db.create_pool(migrated_url, Settings.from_env())
    yield found
    await found.close()


def car(device: str) -> str:
    return device.replace("u-", "car-")


async def live_records(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        live_feed.live_topic_for(topic),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        found: list[bytes] = []
        while batch := await consumer.getmany(timeout_ms=1500):
            found += [r.value or b"" for records in batch.values() for r in records]
        return found
    finally:
        await consumer.stop()


async def test_latest_positions_and_the_live_feeds_positions_are_the_stored_readings(
    pool: asyncpg.Pool, migrated_url: str, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    mover, parked, gone = (f"u-{tag}-{n}" for n in ("mover", "parked", "gone"))
    await register(pool, await partner(pool), [(d, car(d)) for d in (mover, parked, gone)])
    start = recent_minute(10)
    since = start + timedelta(minutes=2)
    sent = [
        (gone, start, CITY_HALL),  # only before `since`
        (parked, start, CITY_HALL),
        (parked, since + timedelta(seconds=30), GANGNAM),
        (mover, since, CITY_HALL),
        (mover, since + timedelta(minutes=1), GANGNAM),
        (mover, since + timedelta(seconds=20), CITY_HALL),  # arrives last, is not the latest
    ]
    values = [(d.encode(), message(d, car(d), ts, *spot, {"pm2_5": 10})) for d, ts, spot in sent]
    topic, group = new_topic(), f"g-{tag}"
    await produce(kafka_bootstrap, topic, values)
    async with workers(migrated_url, kafka_bootstrap, topic, group):
        await wait_ingested(pool, kafka_bootstrap, topic, group)

    found = {p.device_id: p for p in await latest_positions(pool, since)}
    assert set(found) >= {mover, parked} and gone not in found
    gangnam = h3.latlng_to_cell(*GANGNAM, 9)
    latest = since + timedelta(minutes=1)
    assert found[mover] == Position(mover, car(mover), latest, *GANGNAM, gangnam)
    assert (found[parked].ts, found[parked].cell) == (since + timedelta(seconds=30), gangnam)

    records = await live_records(kafka_bootstrap, topic)
    readings = [r for record in records for r in live_feed.decode(record)]
    positions = [p for record in records for p in live_feed.positions(record)]
    assert len(positions) == len(sent)
    assert positions == [
        Position(r.device_id, r.vehicle_id, r.ts, r.lat, r.lng, r.cell) for r in readings
    ]
