-- sensors: rollups per 5-minute slot beside the per-minute ones.
--
-- A series in 5-minute, hourly or daily buckets sums whole 5-minute slots: read from
-- here, a slot is one row per cell instead of up to five, and a cache-missing series
-- costs PostgreSQL less than half the rows (resolvers/sensors/queries.py reads the slots
-- wholly inside a window here and the minutes at its two ends from sensor_rollups).
-- The ingest worker merges each batch's staged rollups into both tables in the same
-- transaction (resolvers/sensors/rollup_levels.py, MERGE_STAGED), so a slot is always
-- the sum of its minutes. Same columns and meaning as sensor_rollups; `bucket` is the
-- slot's start (date_bin from the epoch, which also bins 5 minutes from 2000-01-01).
--
-- A rollup's vehicles are those of all its readings, whatever metrics they carried, and
-- a series counts those of the rows with the metric: a slot merging a minute without
-- the metric would count that minute's vehicles too. `partial` has bit min(i, 62) set
-- (i = catalog position) once some merged rows lacked metric i (and bits 54.. of arrays
-- shorter than that, from an older catalog); the series recomputes the buckets of such
-- slots from their minutes.
CREATE TABLE sensor_rollups_5min (
    cell     bigint NOT NULL,
    bucket   timestamptz NOT NULL,
    n        integer[] NOT NULL,
    sum      double precision[] NOT NULL,
    sum_sq   double precision[] NOT NULL,
    min      real[] NOT NULL,
    max      real[] NOT NULL,
    vehicles bigint[] NOT NULL,
    partial  bigint NOT NULL,
    PRIMARY KEY (cell, bucket)
);

-- The metrics a rollup row has no readings of, as `partial` marks them.
CREATE FUNCTION ieum_rollup_lacking(n integer[]) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(bit_or(1::bigint << least(i::int - 1, 62)), 0)
           | CASE WHEN cardinality(n) < 63 THEN -(1::bigint << cardinality(n)) ELSE 0 END
    FROM unnest(n) WITH ORDINALITY AS u(x, i) WHERE x = 0
$$;

-- Element-wise aggregates of rollup arrays. The steps are strict, so a group of one row
-- (the usual case: one minute of a cell in a batch) takes that row as it is, with no call.
CREATE FUNCTION ieum_array_add_step(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN ieum_array_add(a, b);
END
$$;
CREATE FUNCTION ieum_array_least_step(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN ieum_array_least(a, b);
END
$$;
CREATE FUNCTION ieum_array_greatest_step(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN ieum_array_greatest(a, b);
END
$$;
-- The 16 smallest distinct vehicle hashes of the rows (rollup.MAX_VEHICLES).
CREATE FUNCTION ieum_vehicles_step(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ieum_capped_union(a, b, 16)
$$;
CREATE AGGREGATE ieum_array_sum(anyarray) (SFUNC = ieum_array_add_step, STYPE = anyarray);
CREATE AGGREGATE ieum_array_min(anyarray) (SFUNC = ieum_array_least_step, STYPE = anyarray);
CREATE AGGREGATE ieum_array_max(anyarray) (SFUNC = ieum_array_greatest_step, STYPE = anyarray);
CREATE AGGREGATE ieum_vehicles_union(bigint[]) (SFUNC = ieum_vehicles_step, STYPE = bigint[]);

-- Every slot again from the minutes: here for the rollups written before this table,
-- and for whoever writes sensor_rollups other than through the ingest worker (benches
-- loading rollups in one statement). Not while a worker writes: it would miss its batch.
CREATE FUNCTION ieum_sensor_rollups_5min_rebuild() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    made bigint;
BEGIN
    DELETE FROM sensor_rollups_5min;
    INSERT INTO sensor_rollups_5min (cell, bucket, n, sum, sum_sq, min, max, vehicles,
                                     partial)
    SELECT cell, date_bin('5 minutes', bucket, TIMESTAMPTZ 'epoch'), ieum_array_sum(n),
           ieum_array_sum(sum), ieum_array_sum(sum_sq), ieum_array_min(min),
           ieum_array_max(max), ieum_vehicles_union(vehicles), bit_or(ieum_rollup_lacking(n))
    FROM sensor_rollups
    GROUP BY 1, 2;
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
END
$$;

SELECT ieum_sensor_rollups_5min_rebuild();
