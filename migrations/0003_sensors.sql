-- sensors: devices on taxis, their readings, per-cell rollups and the ingest offsets.

CREATE TABLE sensor_devices (
    device_id       text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    vehicle_id      text NOT NULL CHECK (length(vehicle_id) BETWEEN 1 AND 64),
    owner_client_id text NOT NULL REFERENCES oauth_clients,
    description     text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz
);
CREATE INDEX sensor_devices_owner_idx ON sensor_devices (owner_client_id);

-- One row per accepted message, partitioned by day (partitions are made ahead by the
-- ingest workers and dropped after the retention period). `metrics` packs the values as
-- little-endian float32 in metric-catalog order, NaN where the message had none: one
-- narrow row per message keeps COPY fast.
CREATE TABLE sensor_readings (
    ts          timestamptz NOT NULL,
    device_id   text NOT NULL,
    vehicle_id  text NOT NULL,
    lat         double precision NOT NULL,
    lng         double precision NOT NULL,
    cell        bigint NOT NULL,          -- H3 resolution 9
    speed_kmh   real,
    heading_deg real,
    metrics     bytea NOT NULL,
    PRIMARY KEY (device_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX sensor_readings_cell_ts_idx ON sensor_readings (cell, ts);

-- Per H3 cell and minute: for each metric (array index = catalog position + 1) the count,
-- sum, sum of squares (for the standard deviation), min and max; and up to 16 distinct
-- hashed vehicle ids, enough to apply k-anonymity for k <= 16 when buckets are merged.
CREATE TABLE sensor_rollups (
    cell     bigint NOT NULL,
    bucket   timestamptz NOT NULL,
    n        integer[] NOT NULL,
    sum      double precision[] NOT NULL,
    sum_sq   double precision[] NOT NULL,
    min      real[] NOT NULL,
    max      real[] NOT NULL,
    vehicles bigint[] NOT NULL,
    PRIMARY KEY (cell, bucket)
);
CREATE INDEX sensor_rollups_bucket_idx ON sensor_rollups (bucket);

CREATE FUNCTION ieum_array_add(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(x + y ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;
CREATE FUNCTION ieum_array_least(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(least(x, y) ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;
CREATE FUNCTION ieum_array_greatest(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(greatest(x, y) ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;
CREATE FUNCTION ieum_capped_union(a bigint[], b bigint[], cap integer) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(v ORDER BY v), '{}')
    FROM (SELECT DISTINCT v FROM unnest(a || b) AS u(v) ORDER BY v LIMIT cap) AS capped
$$;

-- Consumer offsets, written in the same transaction as the data they cover.
CREATE TABLE ingest_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
