"""The worker's batch path (columns, the binary encoding, COPY payloads, live feed rows)
says exactly what the one-message reference path says."""

from __future__ import annotations

import contextlib
import json
import math
import random
import struct
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from resolvers.sensors import copy_binary, ingest_store, live_feed, live_rows
from resolvers.sensors.catalog import metrics
from resolvers.sensors.columns import BatchDecoder, ReadingBatch
from resolvers.sensors.ingest_checks import check_batch
from resolvers.sensors.message import Reading, Rejected, parse
from resolvers.sensors.message_binary import HEADER_SIZE, encode, parse_binary
from resolvers.sensors.rollup import rollup_columns, rollups, vehicle_hash
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
from tests.sensors.test_message import CASES, NOW, body

NAMES = [m.name for m in metrics()]


def binary(payload: dict[str, object], **changes: object) -> bytes:
    """A valid JSON case in the binary encoding (speed and heading exact in float32)."""
    fields = {
        "device_id": payload["device_id"],
        "vehicle_id": payload["vehicle_id"],
        "ts": datetime.fromisoformat(str(payload["ts"])),
        "lat": payload["position"]["lat"],  # type: ignore[index]
        "lng": payload["position"]["lng"],  # type: ignore[index]
        "values": payload["metrics"],
        "speed_kmh": payload.get("speed_kmh"),
        "heading_deg": payload.get("heading_deg"),
    }
    return encode(**{**fields, **changes})  # type: ignore[arg-type]


def outcome(raw: bytes) -> tuple[object, ...]:
    try:
        r = parse(raw, NOW)
    except Rejected as exc:
        return ("rejected", exc.reason)
    return ("accepted", r.device_id, r.vehicle_id, r.ts, r.lat, r.lng, r.cell, r.speed_kmh,
            r.heading_deg, r.packed)  # fmt: skip


def batch_outcomes(raws: list[bytes]) -> list[tuple[object, ...]]:
    readings, rows, rejects = BatchDecoder().decode(raws, NOW)
    out: dict[int, tuple[object, ...]] = {i: ("rejected", exc.reason) for i, exc in rejects}
    for i, r in zip(rows.tolist(), readings.readings(), strict=True):
        assert i not in out
        out[i] = ("accepted", r.device_id, r.vehicle_id, r.ts, r.lat, r.lng, r.cell,
                  r.speed_kmh, r.heading_deg, r.packed)  # fmt: skip
    return [out[i] for i in range(len(raws))]


def test_a_binary_message_says_what_its_json_says() -> None:
    payload = body(metrics={"pm2_5": 17.5, "noise_laeq": 61.25, NAMES[-1]: 3})
    from_json, from_binary = outcome(json.dumps(payload).encode()), outcome(binary(payload))
    assert from_json == from_binary
    assert from_binary[0] == "accepted"
    assert len(binary(payload)) < 40 + HEADER_SIZE + 4 * len(NAMES)


def _vehicle_byte(raw: bytes, value: int) -> bytes:
    damaged = bytearray(raw)
    damaged[HEADER_SIZE + raw[3]] = value
    return bytes(damaged)


BINARY_REJECTS = {
    "malformed_binary": [
        b"\xffI",
        binary(body())[:-1],  # truncated
        binary(body())[:2] + b"\x02" + binary(body())[3:],  # version 2
        _vehicle_byte(binary(body(vehicle_id="\ud55c")), 0xFF),  # not UTF-8
    ],
    "schema": [binary(body(), lat=math.nan), binary(body(), values={})],
    "out_of_range": [
        binary(body(), values={"pm2_5": 1e9}),
        binary(body(), values={"pm2_5": math.inf}),
        binary(body(), speed_kmh=300.0),
    ],
    "stale_timestamp": [binary(body(), ts=NOW - timedelta(days=8))],
    "future_timestamp": [binary(body(), ts=NOW + timedelta(hours=1))],
    "outside_korea": [binary(body(), lat=35.68, lng=139.76)],
}


def test_binary_rejects_say_why() -> None:
    for reason, raws in BINARY_REJECTS.items():
        for raw in raws:
            with pytest.raises(Rejected) as caught:
                parse_binary(raw, NOW)
            assert caught.value.reason == reason, raw
    # More values than the catalog has: a metric this hub does not know.
    head = bytearray(binary(body(), values={"pm2_5": 1.0}))
    extra = len(NAMES) + 1 - head[5]
    head[5] = len(NAMES) + 1
    raw = bytes(head) + struct.pack(f"<{extra}f", *[math.nan] * extra)
    with pytest.raises(Rejected, match="unknown_metric"):
        parse_binary(raw, NOW)


def test_the_batch_decoder_agrees_with_the_reference_message_by_message() -> None:
    rng = random.Random(7)
    valid = [json.dumps(case).encode() for case in CASES.values()]
    raws: list[bytes] = [*valid, *(r for rs in BINARY_REJECTS.values() for r in rs)]
    for case in CASES.values():
        # A case the binary encoding cannot even express is left out.
        with contextlib.suppress(AttributeError, KeyError, TypeError, ValueError, struct.error):
            raws.append(binary(case))
    for _ in range(400):  # random damage to binary messages, and whole random batches
        raw = bytearray(rng.choice(raws[len(valid) :]) or binary(body()))
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        raws.append(bytes(raw))
    raws += [
        binary(body(device_id=f"unit-{i % 7}"), ts=NOW - timedelta(seconds=i)) for i in range(300)
    ]
    assert batch_outcomes(raws) == [outcome(raw) for raw in raws]
    rng.shuffle(raws)
    assert batch_outcomes(raws) == [outcome(raw) for raw in raws]
    accepted = Counter(o[0] for o in batch_outcomes(raws))
    assert accepted["accepted"] > 300 and accepted["rejected"] > 100


def readings_of(count: int, seed: int = 3) -> list[Reading]:
    rng = random.Random(seed)
    raws = []
    for i in range(count):
        values = {m.name: rng.uniform(m.min, m.max) for m in rng.sample(metrics()[:10], 4)}
        raws.append(
            binary(
                body(device_id=f"unit-{i % 9}", vehicle_id=f"차-{i % 9}"),
                ts=NOW - timedelta(seconds=i * 7),
                lat=37.5 + rng.uniform(-0.01, 0.01),
                lng=127.0 + rng.uniform(-0.01, 0.01),
                values=values,
                speed_kmh=rng.choice([None, 12.5]),
                heading_deg=rng.choice([None, 90.0]),
            )
        )
    return [parse(raw, NOW) for raw in raws]


def test_rollups_of_columns_are_those_of_readings() -> None:
    readings = readings_of(500)
    batch = ReadingBatch.of(readings)
    hashes = np.array([vehicle_hash(v) for v in batch.vehicle_ids], dtype=np.int64)
    columns = rollup_columns(batch.cell, batch.ts, batch.values, hashes)
    expected = {(row.cell, row.bucket): row for row in rollups(readings)}
    assert len(columns) == len(expected)
    for g in range(len(columns)):
        bucket = datetime.fromtimestamp(int(columns.minute[g]) * 60, UTC)
        row = expected[(int(columns.cell[g]), bucket)]
        assert columns.n[g].tolist() == row.n
        assert columns.sums[g].tolist() == pytest.approx(row.sum)
        assert columns.sums_sq[g].tolist() == pytest.approx(row.sum_sq)
        assert columns.mins[g].tolist() == row.min and columns.maxs[g].tolist() == row.max
        assert [v for v in columns.vehicles[g].tolist() if v != -1] == row.vehicles


def test_live_feed_rows_from_columns_decode_as_the_feed_reads_them() -> None:
    readings = readings_of(400)
    sent = [r for m in live_rows.encode(ReadingBatch.of(readings), 64) for r in live_feed.decode(m)]

    def key(r: Reading) -> tuple[object, ...]:
        return (r.device_id, r.vehicle_id, r.ts, r.lat, r.lng, r.cell, r.speed_kmh,
                r.heading_deg, r.packed)  # fmt: skip

    assert sorted(map(key, sent)) == sorted(map(key, readings))


@pytest.mark.db
async def test_copy_payloads_store_the_readings_as_they_are(migrated_url: str) -> None:
    readings = readings_of(300)
    batch = ReadingBatch.of(readings)
    states = {d: (v, False) for d, v in zip(batch.device_ids, batch.vehicle_ids, strict=True)}
    checked = check_batch(batch, np.ones(len(batch), dtype=bool), states)
    rows = checked.accepted
    columns = (batch.ts[rows], checked.codes[rows], batch.lat[rows], batch.lng[rows],
               batch.cell[rows], batch.speed_kmh[rows], batch.heading_deg[rows],
               batch.values[rows])  # fmt: skip
    conn = await asyncpg.connect(migrated_url)
    try:
        await ingest_store.prepare_connection(conn)
        name = f"copied_{uuid.uuid4().hex[:8]}"
        await conn.execute(f"CREATE TEMP TABLE {name} (LIKE sensor_readings)")
        payload = copy_binary.stored_readings(*columns, checked.devices, checked.vehicles)
        await conn.copy_to_table(
            name, source=ingest_store._chunks(payload), columns=ingest_store.READING_COLUMNS,
            format="binary",
        )  # fmt: skip
        async with conn.transaction():
            staged = copy_binary.readings(*columns[:1], columns[1] + 1, *columns[2:])
            await conn.copy_to_table(
                "ingest_rows", source=ingest_store._chunks(staged),
                columns=copy_binary.READINGS_COLUMNS, format="binary",
            )  # fmt: skip
            via_staging = await conn.fetch(
                "SELECT r.ts, d.device_id, d.vehicle_id, r.lat, r.lng, r.cell,"
                " nullif(r.speed_kmh, 'NaN') AS speed_kmh,"
                " nullif(r.heading_deg, 'NaN') AS heading_deg, r.metrics"
                " FROM ingest_rows r JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY"
                " AS d (device_id, vehicle_id, no) ON d.no = r.device_no",
                checked.devices,
                checked.vehicles,
            )
        copied = await conn.fetch(f"SELECT * FROM {name}")
    finally:
        await conn.close()

    expected = sorted(
        (r.device_id, r.vehicle_id, r.ts, r.lat, r.lng, r.cell, _real(r.speed_kmh),
         _real(r.heading_deg), r.packed)
        for r in readings
    )  # fmt: skip
    for stored in (copied, via_staging):
        assert sorted(
            (s["device_id"], s["vehicle_id"], s["ts"], s["lat"], s["lng"], s["cell"],
             s["speed_kmh"], s["heading_deg"], s["metrics"])
            for s in stored
        ) == expected  # fmt: skip


def _real(value: float | None) -> float | None:
    return None if value is None else struct.unpack("f", struct.pack("f", value))[0]


@pytest.mark.db
async def test_binary_messages_are_ingested_and_bad_ones_dead_lettered(
    auth_hub: Hub, migrated_url: str, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    owner = await partner(auth_hub.pool)
    fleet = [(f"b-{tag}-{i}", f"차{tag}-{i}") for i in range(3)]
    await register(auth_hub.pool, owner, fleet)
    start = recent_minute(20)
    sent = []
    for second in range(20):
        for device, vehicle in fleet:
            ts = start + timedelta(seconds=second)
            values = {"pm2_5": 10.0 + second, "noise_laeq": 50.0}
            sent.append((vehicle.encode(), encode(device, vehicle, ts, 37.5665, 126.978, values)))
    json_twin = message(*fleet[0], start + timedelta(minutes=1), 37.5665, 126.978, {"pm10": 5.0})
    bad = sent[0][1][:-3]  # truncated
    topic, group = new_topic(), f"g-{tag}"
    await produce(kafka_bootstrap, topic, [*sent, (b"k", bad), (b"k", json_twin)])
    async with workers(migrated_url, kafka_bootstrap, topic, group):
        await wait_ingested(auth_hub.pool, kafka_bootstrap, topic, group)
    stored = await auth_hub.pool.fetch(
        "SELECT device_id, count(*) AS n, count(speed_kmh) AS speeds FROM sensor_readings"
        " WHERE device_id = ANY($1::text[]) GROUP BY device_id",
        [device for device, _ in fleet],
    )
    counts = {row["device_id"]: row["n"] for row in stored}
    assert counts == {fleet[0][0]: 21, fleet[1][0]: 20, fleet[2][0]: 20}
    speeds = {row["device_id"]: row["speeds"] for row in stored}
    assert speeds == {fleet[0][0]: 1, fleet[1][0]: 0, fleet[2][0]: 0}  # not sent: NULL
    letters = await dead_letters(kafka_bootstrap, topic, 1)
    assert [dict(letter.headers)["reason"] for letter in letters] == [b"malformed_binary"]
    assert letters[0].value == bad
