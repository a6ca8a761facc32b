-- bench/peer.py's own objects on the bench database (never a migration): what PostGraphile
-- needs to answer sensorSeries from the same rollups the hub reads, with the same answer.
--
-- The hub works out a district's H3 cells from its boundary in Python (h3), and knows its
-- metric catalog and bucket widths in Python; PostgreSQL has no h3 here, so the bench
-- writes those into the tables below, once, before either server is measured. The series
-- itself is the hub's SQL (resolvers/sensors/queries.py, _series_in_sql) with its
-- k-anonymity rule and the 7-significant-digit rounding of schema/sensors/types.py.
CREATE SCHEMA ieum_peer;

CREATE TABLE ieum_peer.district_cells (code text PRIMARY KEY, cells bigint[] NOT NULL);
CREATE TABLE ieum_peer.metrics (name text PRIMARY KEY, position integer NOT NULL);
CREATE TABLE ieum_peer.buckets (name text PRIMARY KEY, width interval NOT NULL);
INSERT INTO ieum_peer.buckets VALUES
    ('MINUTE', '1 minute'), ('FIVE_MINUTES', '5 minutes'), ('HOUR', '1 hour'), ('DAY', '1 day');

CREATE TYPE ieum_peer.series_point AS (
    bucket timestamptz,
    count integer,   -- null, with the rest, below the k-anonymity threshold
    mean double precision,
    min double precision,
    max double precision,
    stddev double precision
);

-- To 7 significant digits, as the hub's `measured` shows float32-stored values.
CREATE FUNCTION ieum_peer.measured(x double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN x = 0 THEN 0
                ELSE round(x::numeric, 6 - floor(log(abs(x::numeric)))::int)::double precision
           END
$$;

-- The minute at or after t: windows take the minutes that begin inside them.
CREATE FUNCTION ieum_peer.minute_ceiling(t timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN date_trunc('minute', t) = t THEN t
                ELSE date_trunc('minute', t) + interval '1 minute' END
$$;

CREATE FUNCTION ieum_peer.sensor_series(
    district text, metric text, "from" timestamptz, "to" timestamptz,
    bucket text DEFAULT 'HOUR'
) RETURNS SETOF ieum_peer.series_point
LANGUAGE plpgsql STABLE AS $$
DECLARE
    area bigint[];
    i integer;
    width interval;
    k constant integer := ieum_peer.k_anonymity();
BEGIN
    IF "to" <= "from" THEN
        RAISE EXCEPTION '''to'' must be after ''from''';
    END IF;
    SELECT b.width INTO width FROM ieum_peer.buckets b WHERE b.name = bucket;
    SELECT m.position INTO i FROM ieum_peer.metrics m WHERE m.name = metric;
    SELECT d.cells INTO area FROM ieum_peer.district_cells d WHERE d.code = district;
    IF width IS NULL OR i IS NULL OR area IS NULL THEN
        RAISE EXCEPTION 'unknown bucket, metric or district';
    END IF;
    IF ("to" - "from") > width * 2000 THEN
        RAISE EXCEPTION 'that is more than 2000 buckets';
    END IF;
    RETURN QUERY
    WITH r AS (
        SELECT date_bin(width, s.bucket, TIMESTAMPTZ '2000-01-01 00:00+00') AS b, s.n[i] AS n,
               s.sum[i] AS s, s.sum_sq[i] AS ss, s.min[i] AS lo, s.max[i] AS hi, s.vehicles
        FROM sensor_rollups s
        WHERE s.cell = ANY(area)
          AND s.bucket >= ieum_peer.minute_ceiling("from")
          AND s.bucket < ieum_peer.minute_ceiling("to") AND s.n[i] > 0),
    g AS (
        SELECT r.b, sum(r.n)::bigint AS n, sum(r.s) AS s, sum(r.ss) AS ss, min(r.lo) AS lo,
               max(r.hi) AS hi,
               greatest(max(cardinality(r.vehicles)), count(DISTINCT r.vehicles[1])) AS vmax
        FROM r GROUP BY r.b),
    v AS (
        SELECT r.b, count(DISTINCT x) AS vehicles
        FROM r JOIN g USING (b), unnest(r.vehicles) x WHERE g.vmax < k GROUP BY r.b)
    SELECT g.b,
           CASE WHEN ok THEN g.n::integer END,
           CASE WHEN ok THEN ieum_peer.measured(g.s / g.n) END,
           CASE WHEN ok THEN ieum_peer.measured(g.lo) END,
           CASE WHEN ok THEN ieum_peer.measured(g.hi) END,
           CASE WHEN ok THEN ieum_peer.measured(sqrt(greatest(g.ss / g.n - (g.s / g.n) ^ 2, 0)))
           END
    FROM g LEFT JOIN v USING (b), LATERAL (SELECT coalesce(v.vehicles, g.vmax) >= k) AS t(ok)
    ORDER BY g.b;
END
$$;
