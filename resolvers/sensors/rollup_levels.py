"""The coarser rollup level: per cell and 5-minute slot (sensor_rollups_5min, 0025).

A series in 5-minute, hourly or daily buckets sums whole slots, and a slot read from its
own row is up to five minute rows fewer for PostgreSQL to fetch and aggregate: the usual
multi-resolution answer (TimescaleDB's continuous aggregates). The ingest worker keeps it
by merging each batch's minute rollups into it in the same transaction as the minutes
(rollup_merge.slots, ingest_store.merge_rollups; MERGE_STAGED for the SQL path of
upsert_rollups), so a slot holds exactly the sum of its minutes, once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from resolvers.sensors.copy_binary import NO_VEHICLE
from resolvers.sensors.rollup import MAX_VEHICLES

SLOT = timedelta(minutes=5)
# Slots are binned from the epoch; buckets from 2000-01-01, a whole number of slots later.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The staged batch (ingest_rollups, one row per cell and minute, vehicle slots padded with
# NO_VEHICLE) grouped by cell and slot and merged as the minutes are; in (cell, slot)
# order, so two workers cannot deadlock.
MERGE_STAGED = (
    "INSERT INTO sensor_rollups_5min AS r"
    " (cell, bucket, n, sum, sum_sq, min, max, vehicles, partial)"
    " SELECT cell, date_bin('5 minutes', bucket, TIMESTAMPTZ 'epoch'), ieum_array_sum(n),"
    " ieum_array_sum(sum), ieum_array_sum(sum_sq), ieum_array_min(min), ieum_array_max(max),"
    f" ieum_vehicles_union(array_remove(vehicles, {NO_VEHICLE}::bigint)),"
    " bit_or(ieum_rollup_lacking(n))"
    " FROM ingest_rollups GROUP BY 1, 2 ORDER BY 1, 2"
    " ON CONFLICT (cell, bucket) DO UPDATE SET"
    " n = ieum_array_add(r.n, EXCLUDED.n),"
    " sum = ieum_array_add(r.sum, EXCLUDED.sum),"
    " sum_sq = ieum_array_add(r.sum_sq, EXCLUDED.sum_sq),"
    " min = ieum_array_least(r.min, EXCLUDED.min),"
    " max = ieum_array_greatest(r.max, EXCLUDED.max),"
    f" vehicles = ieum_capped_union(r.vehicles, EXCLUDED.vehicles, {MAX_VEHICLES}),"
    " partial = r.partial | EXCLUDED.partial;"
)


def lacking_bit(index: int) -> int:
    """The bit of `partial` saying a slot merged rows without the metric at `index`
    (from 1, as in the arrays)."""
    return 1 << min(index - 1, 62)


# For rollups written into sensor_rollups directly (benches): every slot again.
REBUILD = "SELECT ieum_sensor_rollups_5min_rebuild()"


def slots_within(start: datetime, end: datetime, bucket: timedelta) -> tuple[datetime, datetime]:
    """The whole slots [first, last) inside the window [start, end) (whole minutes) that
    a series in `bucket`s can take from the slot rows: none (an empty span at `end`)
    unless each bucket is a whole number of slots. The minutes before `first` and from
    `last` come from the minute rows."""
    if bucket % SLOT:
        return end, end
    first = EPOCH + -((EPOCH - start) // SLOT) * SLOT  # start rounded up to a slot
    last = EPOCH + (end - EPOCH) // SLOT * SLOT
    return (first, last) if first < last else (end, end)
