-- sensors: ieum_rollup_lacking (0025) without unnesting the counts of a row that has
-- every metric, the usual case (devices send the whole catalog): 0 = ANY(n) first. The
-- ingest worker calls it on each staged rollup row of every batch.
CREATE OR REPLACE FUNCTION ieum_rollup_lacking(n integer[]) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(n) < 63 THEN -(1::bigint << cardinality(n)) ELSE 0 END
           | CASE WHEN 0 = ANY(n)
                  THEN (SELECT bit_or(1::bigint << least(i::int - 1, 62))
                        FROM unnest(n) WITH ORDINALITY AS u(x, i) WHERE x = 0)
                  ELSE 0 END
$$;
