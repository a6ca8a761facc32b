"""The SQL of the ingest path: partitions, device states, and one batch in one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

import asyncpg

from resolvers.sensors import copy_binary, rollup_levels
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


async def prepare_connection(
    conn: asyncpg.Connection, statement_timeout: float | None = None
) -> None:
    """Session-local staging tables of this worker's connection, and a server-side limit
    on each statement (the worker's own limit covers a network that drops packets)."""
    await conn.execute(
        # A batch's readings as the worker copies them: the device by its number in the
        # batch (fixed-width rows, copy_binary.py), NaN for a speed or heading not sent.
        "CREATE TEMP TABLE IF NOT EXISTS ingest_rows (ts timestamptz NOT NULL,"
        " device_no integer NOT NULL, lat double precision NOT NULL,"
        " lng double precision NOT NULL, cell bigint NOT NULL, speed_kmh real,"
        " heading_deg real, metrics bytea NOT NULL) ON COMMIT DELETE ROWS;"
        "CREATE TEMP TABLE IF NOT EXISTS ingest_rollups"
        " (LIKE sensor_rollups INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    if statement_timeout is not None:
        await conn.execute(f"SET statement_timeout = {int(statement_timeout * 1000)}")


async def copy_new_readings(conn: asyncpg.Connection, payload: bytes) -> bool:
    """COPY readings straight into sensor_readings (copy_binary.stored_readings), inside
    a savepoint: True if every one was new, which is the rule; False, with nothing
    written, if some were stored before (a redelivery after a crash or a rebalance), and
    then `insert_batch` sorts them out. The staging table, the sort and ON CONFLICT cost
    the database about as much again as the rows themselves."""
    try:
        async with conn.transaction():
            await conn.copy_to_table(
                "sensor_readings", source=_chunks(payload), columns=READING_COLUMNS, format="binary"
            )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def insert_batch(
    conn: asyncpg.Connection,
    payload: bytes,
    rows: int,
    devices: Sequence[str],
    vehicles: Sequence[str],
) -> dict[tuple[str, datetime], bool]:
    """Store readings not stored before, from a batch in binary COPY form
    (copy_binary.readings): each row names its device by its number in `devices` (from
    1), registered on the vehicle at the same place in `vehicles`. For the readings that
    were already stored (usually none, and then not even looked for: a one-time filter
    on the count inserted): (device, ts) → whether the stored row has the same content,
    i.e. the same message delivered again rather than a conflicting one."""
    if not rows:
        return {}
    await conn.copy_to_table(
        "ingest_rows",
        source=_chunks(payload),
        columns=copy_binary.READINGS_COLUMNS,
        format="binary",
    )
    columns = ", ".join(READING_COLUMNS)
    content = [c for c in READING_COLUMNS if c not in ("device_id", "ts")]
    stored_before = await conn.fetch(
        "WITH staged AS (SELECT r.ts, d.device_id, d.vehicle_id, r.lat, r.lng, r.cell,"
        " nullif(r.speed_kmh, 'NaN') AS speed_kmh, nullif(r.heading_deg, 'NaN') AS heading_deg,"
        " r.metrics FROM ingest_rows r"
        " JOIN unnest($1::text[], $2::text[]) WITH ORDINALITY AS d (device_id, vehicle_id, no)"
        " ON d.no = r.device_no),"
        f" inserted AS (INSERT INTO sensor_readings ({columns}) SELECT {columns} FROM staged"
        # A stable lock order: two workers overlapping in a rebalance cannot deadlock.
        " ORDER BY device_id, ts ON CONFLICT (device_id, ts) DO NOTHING"
        " RETURNING device_id, ts)"
        # The statement's snapshot predates its own inserts: it sees only older rows.
        " SELECT k.device_id, k.ts, EXISTS (SELECT 1 FROM sensor_readings s"
        " JOIN staged i USING (device_id, ts) WHERE s.device_id = k.device_id AND s.ts = k.ts"
        f" AND ({', '.join('s.' + c for c in content)})"
        f" IS NOT DISTINCT FROM ({', '.join('i.' + c for c in content)})) AS same"
        " FROM (SELECT device_id, ts FROM staged EXCEPT SELECT device_id, ts FROM inserted) k"
        " WHERE (SELECT count(*) FROM inserted) < $3",
        list(devices),
        list(vehicles),
        rows,
    )
    return {(row["device_id"], row["ts"]): row["same"] for row in stored_before}


async def _chunks(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


async def merge_rollup_payload(conn: asyncpg.Connection, payload: bytes, rows: int) -> None:
    """`upsert_rollups` for rows already in binary COPY form (copy_binary.rollups)."""
    if not rows:
        return
    await conn.copy_to_table(
        "ingest_rollups",
        source=_chunks(payload),
        columns=copy_binary.ROLLUPS_COLUMNS,
        format="binary",
    )
    await _merge_rollups(conn)


async def upsert_rollups(conn: asyncpg.Connection, rows: Sequence[RollupRow]) -> None:
    if not rows:
        return
    await conn.copy_records_to_table(
        "ingest_rollups",
        columns=ROLLUP_COLUMNS,
        records=[(r.cell, r.bucket, r.n, r.sum, r.sum_sq, r.min, r.max, r.vehicles) for r in rows],
    )
    await _merge_rollups(conn)


async def _merge_rollups(conn: asyncpg.Connection) -> None:
    """The staged rollups into sensor_rollups (slots padded with NO_VEHICLE dropped)."""
    staged = ", ".join(ROLLUP_COLUMNS[:-1])
    await conn.execute(
        f"INSERT INTO sensor_rollups AS r ({', '.join(ROLLUP_COLUMNS)})"
        f" SELECT {staged}, array_remove(vehicles, {copy_binary.NO_VEHICLE}::bigint)"
        " FROM ingest_rollups ORDER BY cell, bucket"
        " ON CONFLICT (cell, bucket) DO UPDATE SET"
        " n = ieum_array_add(r.n, EXCLUDED.n),"
        " sum = ieum_array_add(r.sum, EXCLUDED.sum),"
        " sum_sq = ieum_array_add(r.sum_sq, EXCLUDED.sum_sq),"
        " min = ieum_array_least(r.min, EXCLUDED.min),"
        " max = ieum_array_greatest(r.max, EXCLUDED.max),"
        f" vehicles = ieum_capped_union(r.vehicles, EXCLUDED.vehicles, {MAX_VEHICLES});"
        f"{rollup_levels.MERGE_STAGED}"
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


async def lock_offsets(
    conn: asyncpg.Connection, group_id: str, topic: str, partitions: Iterable[int]
) -> dict[int, int]:
    """The stored next offsets of these partitions, locked until the transaction ends, so
    a batch already committed (by us before a lost answer, or by another worker during a
    rebalance) is recognised and not written or dead-lettered twice."""
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM ingest_offsets"
        " WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])"
        " ORDER BY partition FOR UPDATE",
        group_id,
        topic,
        sorted(set(partitions)),
    )
    return {row["partition"]: row["next_offset"] for row in rows}


async def rewind_offset(
    conn: asyncpg.Connection, group_id: str, topic: str, partition: int, next_offset: int
) -> None:
    """Set a partition's stored offset back: only after its topic was recreated or
    truncated, when the stored one points beyond the partition's end."""
    await conn.execute(
        "UPDATE ingest_offsets SET next_offset = $4, updated_at = now()"
        " WHERE group_id = $1 AND topic = $2 AND partition = $3",
        group_id,
        topic,
        partition,
        next_offset,
    )
