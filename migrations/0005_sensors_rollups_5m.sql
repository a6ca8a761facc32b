-- sensors: a 5-minute level of rollups, compacted from the minute rows after the fact.
--
-- Queries over an hour read ~60 minute rows per cell; whole 5-minute periods let them
-- read ~12. Ingest does not write this level (that would double its upserts): it marks
-- the 5-minute periods it touched in sensor_rollup_changes, in the same transaction as
-- the minute rows, and the compactor rebuilds a marked period from its minute rows and
-- clears the mark only if nobody marked it again meanwhile (version unchanged). Readers
-- use a period's 5-minute rows only while it is unmarked, its minute rows otherwise, so
-- every answer equals the answer from minute rows alone.

CREATE TABLE sensor_rollups_5m (
    cell     bigint NOT NULL,
    bucket   timestamptz NOT NULL,  -- the period's start, date_bin('5 minutes', …, 2000-01-01)
    n        integer[] NOT NULL,
    sum      double precision[] NOT NULL,
    sum_sq   double precision[] NOT NULL,
    min      real[] NOT NULL,
    max      real[] NOT NULL,
    vehicles bigint[] NOT NULL,
    PRIMARY KEY (cell, bucket)
);

CREATE TABLE sensor_rollup_changes (
    period  timestamptz PRIMARY KEY,
    version bigint NOT NULL DEFAULT 1
);

-- Every period that has minute rows is to be compacted.
INSERT INTO sensor_rollup_changes (period)
SELECT DISTINCT date_bin('5 minutes', bucket, TIMESTAMPTZ '2000-01-01') FROM sensor_rollups;

-- Aggregates over rollup rows, from the element-wise merges. STRICT: the first row is
-- the starting state.
ALTER FUNCTION ieum_array_add(anyarray, anyarray) STRICT;
ALTER FUNCTION ieum_array_least(anyarray, anyarray) STRICT;
ALTER FUNCTION ieum_array_greatest(anyarray, anyarray) STRICT;
CREATE AGGREGATE ieum_array_sum(anyarray) (SFUNC = ieum_array_add, STYPE = anyarray);
CREATE AGGREGATE ieum_array_min(anyarray) (SFUNC = ieum_array_least, STYPE = anyarray);
CREATE AGGREGATE ieum_array_max(anyarray) (SFUNC = ieum_array_greatest, STYPE = anyarray);

-- Up to 16 distinct hashed vehicles, as in the minute rows (rollup.MAX_VEHICLES).
CREATE FUNCTION ieum_vehicles_merge(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT ieum_capped_union(a, b, 16) $$;
CREATE AGGREGATE ieum_vehicles_union(bigint[]) (SFUNC = ieum_vehicles_merge, STYPE = bigint[]);
