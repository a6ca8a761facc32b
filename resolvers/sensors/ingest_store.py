"""The SQL of the ingest path: partitions, device states, and one batch in one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

import asyncpg

from resolvers.sensors import copy_binary, rollup_levels, rollup_merge
from resolvers.sensors.rollup import MAX_VEHICLES, RollupColumns, RollupRow
from resolvers.sensors.rollup_merge import Level

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
        # A batch's rollups (copy_binary.STAGED_COLUMNS): as merged by the worker, and
        # the batch's alone (d_*), looked up by key when the SQL merge needs them. A row
        # is about 3.6 kB: kept whole in its page, not compressed into TOAST (which cost
        # more than the merge saved).
        f"CREATE TEMP TABLE IF NOT EXISTS ingest_rollups (LIKE sensor_rollups INCLUDING"
        f" DEFAULTS, {_STAGED}, PRIMARY KEY (cell, bucket)) WITH ({_WHOLE})"
        " ON COMMIT DELETE ROWS;"
        f"CREATE TEMP TABLE IF NOT EXISTS ingest_rollups_5min (LIKE sensor_rollups_5min"
        f" INCLUDING DEFAULTS, {_STAGED}, d_partial bigint, PRIMARY KEY (cell, bucket))"
        f" WITH ({_WHOLE}) ON COMMIT DELETE ROWS"
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


async def merge_rollups(
    conn: asyncpg.Connection, minutes: RollupColumns, slots: Level | None = None
) -> None:
    """A batch's rollups into sensor_rollups and sensor_rollups_5min, merged with the
    stored rows by the worker (rollup_merge.py), and the versions of their 10-minute
    slots. Each table in one INSERT … ON CONFLICT in key order, as the SQL merge was (so
    two workers cannot deadlock): a stored row still the version the worker read (its
    xmin) takes the worker's values, any other the SQL merge of the batch's own. `slots`:
    the 5-minute rows of these minutes (rollup_merge.slots), if made ahead."""
    if not len(minutes):
        return
    await _merge_level(conn, "sensor_rollups", "ingest_rollups", Level(minutes, None))
    slots = slots or rollup_merge.slots(minutes)
    await _merge_level(conn, "sensor_rollups_5min", "ingest_rollups_5min", slots)
    await conn.execute(_SLOT_VERSIONS)


async def _merge_level(conn: asyncpg.Connection, table: str, staging: str, level: Level) -> None:
    has_partial = level.partial is not None
    padded = f"array_fill({copy_binary.NO_VEHICLE}::bigint, ARRAY[greatest(0,"
    stored = await conn.fetch(
        "SELECT k.i, r.xmin::text::bigint AS seen, array_send(r.n) AS n,"
        " array_send(r.sum) AS sum, array_send(r.sum_sq) AS sum_sq, array_send(r.min) AS min,"
        " array_send(r.max) AS max,"
        f" array_send(r.vehicles || {padded} {MAX_VEHICLES} - cardinality(r.vehicles))]))"
        f" AS vehicles{', r.partial' if has_partial else ''}"
        " FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS k (cell, minute, i)"
        f" JOIN {table} r ON r.cell = k.cell"
        " AND r.bucket = TIMESTAMPTZ 'epoch' + k.minute * INTERVAL '1 minute'",
        level.rows.cell.tolist(),
        level.rows.minute.tolist(),
    )
    merged, seen = rollup_merge.merged(level, rollup_merge.stored(stored, has_partial))
    columns = copy_binary.STAGED_SLOT_COLUMNS if has_partial else copy_binary.STAGED_COLUMNS
    await conn.copy_to_table(
        staging,
        source=_chunks(copy_binary.rollups(merged, seen, level)),
        columns=columns,
        format="binary",
    )
    names = [*copy_binary.ROLLUPS_COLUMNS, *(["partial"] if has_partial else [])]
    unpadded = f"array_remove(s.vehicles, {copy_binary.NO_VEHICLE}::bigint)"
    same = "s.seen = r.xmin::text::bigint"  # the stored row is the version merged
    sql_merge = [
        f"CASE WHEN {same} THEN EXCLUDED.{name} ELSE {merge} END"
        for name, merge in _SQL_MERGES.items()
        if name != "partial" or has_partial
    ]
    await conn.execute(
        f"INSERT INTO {table} AS r ({', '.join(names)})"
        f" SELECT {', '.join(unpadded if n == 'vehicles' else 's.' + n for n in names)}"
        f" FROM {staging} s ORDER BY cell, bucket"
        f" ON CONFLICT (cell, bucket) DO UPDATE SET ({', '.join(names[2:])}) ="
        f" (SELECT {', '.join(sql_merge)} FROM {staging} s"
        " WHERE s.cell = EXCLUDED.cell AND s.bucket = EXCLUDED.bucket)"
    )


_WHOLE = "toast_tuple_target = 8160"  # the most PostgreSQL allows: rows up to a page
_STAGED = (
    f"seen bigint NOT NULL DEFAULT {rollup_merge.NOT_SEEN}, d_n integer[],"
    " d_sum double precision[], d_sum_sq double precision[], d_min real[], d_max real[],"
    " d_vehicles bigint[]"
)
# The SQL merge of a stored row (r) and the batch's own (s.d_*), in the functions of 0004.
_SQL_MERGES = {
    "n": "ieum_array_add(r.n, s.d_n)",
    "sum": "ieum_array_add(r.sum, s.d_sum)",
    "sum_sq": "ieum_array_add(r.sum_sq, s.d_sum_sq)",
    "min": "ieum_array_least(r.min, s.d_min)",
    "max": "ieum_array_greatest(r.max, s.d_max)",
    "vehicles": (
        f"ieum_capped_union(r.vehicles, array_remove(s.d_vehicles,"
        f" {copy_binary.NO_VEHICLE}::bigint), {MAX_VEHICLES})"
    ),
    "partial": "r.partial | s.d_partial",
}


async def upsert_rollups(conn: asyncpg.Connection, rows: Sequence[RollupRow]) -> None:
    """Rollup rows merged by the SQL functions (0004), for callers holding RollupRow
    objects (benches and tests loading rollups); the worker uses merge_rollups."""
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
        f" ON CONFLICT (cell, bucket) DO UPDATE SET {_SQL_MERGE};"
        f"{rollup_levels.MERGE_STAGED}{_SLOT_VERSIONS}"
    )


# A staged row merged into the stored one by the SQL functions (0004).
_SQL_MERGE = (
    "n = ieum_array_add(r.n, EXCLUDED.n),"
    " sum = ieum_array_add(r.sum, EXCLUDED.sum),"
    " sum_sq = ieum_array_add(r.sum_sq, EXCLUDED.sum_sq),"
    " min = ieum_array_least(r.min, EXCLUDED.min),"
    " max = ieum_array_greatest(r.max, EXCLUDED.max),"
    f" vehicles = ieum_capped_union(r.vehicles, EXCLUDED.vehicles, {MAX_VEHICLES})"
)
# Hubs keep rollups in memory by 10-minute slot (segments.py): a new version tells them
# to read the slot again. In slot order, so two workers cannot deadlock.
_SLOT_VERSIONS = (
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
