"""The SQL of the ingest path: partitions, device states, and one batch in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

import asyncpg

from resolvers.sensors.message import Reading
from resolvers.sensors.rollup import MAX_VEHICLES, RollupRow

READING_COLUMNS = (
    "ts",
    "device_id",
    "vehicle_id",
    "lat",
    "lng",
    "cell",
    "speed_kmh",
    "heading_deg",
    "metrics",
)
ROLLUP_COLUMNS = ("cell", "bucket", "n", "sum", "sum_sq", "min", "max", "vehicles")


def partition_name(day: date) -> str:
    return f"sensor_readings_{day:%Y%m%d}"


async def ensure_partitions(conn: asyncpg.Connection, first: date, last: date) -> None:
    """Daily partitions of sensor_readings for every day from `first` to `last`."""
    day = first
    while day <= last:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF sensor_readings"
            f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
        day += timedelta(days=1)


async def drop_partitions_before(conn: asyncpg.Connection, day: date) -> list[str]:
    """Drop raw-reading partitions wholly older than `day` (rollups are kept)."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'sensor_readings'::regclass ORDER BY 1"
    )
    dropped = []
    for row in names:
        name = row["relname"]
        if name < partition_name(day):
            await conn.execute(f"DROP TABLE {name}")
            dropped.append(name)
    return dropped


async def device_states(
    conn: asyncpg.Connection, device_ids: Iterable[str]
) -> dict[str, tuple[str, bool]]:
    """device id → (registered vehicle id, disabled?) for the known devices among these."""
    rows = await conn.fetch(
        "SELECT device_id, vehicle_id, disabled_at IS NOT NULL AS disabled"
        " FROM sensor_devices WHERE device_id = ANY($1::text[])",
        list(set(device_ids)),
    )
    return {row["device_id"]: (row["vehicle_id"], row["disabled"]) for row in rows}


async def stored_offsets(
    conn: asyncpg.Connection | asyncpg.Pool, group_id: str, topic: str
) -> dict[int, int]:
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM ingest_offsets WHERE group_id = $1 AND topic = $2",
        group_id,
        topic,
    )
    return {row["partition"]: row["next_offset"] for row in rows}


async def prepare_connection(conn: asyncpg.Connection) -> None:
    """Session-local staging tables of this worker's connection."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS ingest_readings"
        " (LIKE sensor_readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
        "CREATE TEMP TABLE IF NOT EXISTS ingest_rollups"
        " (LIKE sensor_rollups INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )


async def insert_readings(
    conn: asyncpg.Connection, readings: Sequence[Reading]
) -> set[tuple[str, datetime]]:
    """Store readings not stored before; return the (device, ts) of those that were
    already stored (usually none, so only they cross the wire, not every new key)."""
    if not readings:
        return set()
    await conn.copy_records_to_table(
        "ingest_readings",
        columns=READING_COLUMNS,
        records=[
            (
                r.ts,
                r.device_id,
                r.vehicle_id,
                r.lat,
                r.lng,
                r.cell,
                r.speed_kmh,
                r.heading_deg,
                r.packed,
            )
            for r in readings
        ],
    )
    stored_before = await conn.fetch(
        "WITH inserted AS ("
        f" INSERT INTO sensor_readings ({', '.join(READING_COLUMNS)})"
        f" SELECT {', '.join(READING_COLUMNS)} FROM ingest_readings"
        # A stable lock order: two workers overlapping in a rebalance cannot deadlock.
        " ORDER BY device_id, ts ON CONFLICT (device_id, ts) DO NOTHING"
        " RETURNING device_id, ts)"
        " SELECT device_id, ts FROM ingest_readings"
        " EXCEPT ALL SELECT device_id, ts FROM inserted"
    )
    return {(row["device_id"], row["ts"]) for row in stored_before}


async def upsert_rollups(conn: asyncpg.Connection, rows: Sequence[RollupRow]) -> None:
    if not rows:
        return
    await conn.copy_records_to_table(
        "ingest_rollups",
        columns=ROLLUP_COLUMNS,
        records=[(r.cell, r.bucket, r.n, r.sum, r.sum_sq, r.min, r.max, r.vehicles) for r in rows],
    )
    await conn.execute(
        f"INSERT INTO sensor_rollups AS r ({', '.join(ROLLUP_COLUMNS)})"
        f" SELECT {', '.join(ROLLUP_COLUMNS)} FROM ingest_rollups ORDER BY cell, bucket"
        " ON CONFLICT (cell, bucket) DO UPDATE SET"
        " n = ieum_array_add(r.n, EXCLUDED.n),"
        " sum = ieum_array_add(r.sum, EXCLUDED.sum),"
        " sum_sq = ieum_array_add(r.sum_sq, EXCLUDED.sum_sq),"
        " min = ieum_array_least(r.min, EXCLUDED.min),"
        " max = ieum_array_greatest(r.max, EXCLUDED.max),"
        f" vehicles = ieum_capped_union(r.vehicles, EXCLUDED.vehicles, {MAX_VEHICLES});"
        # Hubs keep rollups in memory by 10-minute slot (segments.py): a new version tells
        # them to read the slot again. In slot order, so two workers cannot deadlock.
        "INSERT INTO sensor_rollup_slots AS s (slot, version)"
        " SELECT DISTINCT date_bin('10 minutes', bucket, TIMESTAMPTZ 'epoch'), 1"
        " FROM ingest_rollups ORDER BY 1"
        " ON CONFLICT (slot) DO UPDATE SET version = s.version + 1"
    )


async def store_offsets(
    conn: asyncpg.Connection, group_id: str, topic: str, next_offsets: dict[int, int]
) -> None:
    """Offsets only move forward, so a late duplicate batch cannot rewind them."""
    await conn.executemany(
        "INSERT INTO ingest_offsets (group_id, topic, partition, next_offset)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, partition) DO UPDATE"
        " SET next_offset = greatest(ingest_offsets.next_offset, EXCLUDED.next_offset),"
        " updated_at = now()",
        [(group_id, topic, partition, offset) for partition, offset in next_offsets.items()],
    )
