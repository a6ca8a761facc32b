-- sensors: the element-wise merges of rollup arrays, as PL/pgSQL loops.
--
-- The SQL versions (unnest … WITH ORDINALITY, array_agg ORDER BY) sorted every array on
-- every call; the ingest upsert calls them five times per rollup row it merges. A loop
-- over expanded arrays does the same work 2.5 to 3.5 times faster (measured on 10,000
-- rows of 54 elements: 22 µs → 8.5 µs per add, 22 µs → 6 µs per least/greatest).
-- Arrays of different lengths (a metric added to the catalog meets an older row) merge
-- to the longer length, an element missing on one side counting as no data.

CREATE OR REPLACE FUNCTION ieum_array_add(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    result a%TYPE := a;
BEGIN
    FOR i IN 1 .. greatest(cardinality(a), cardinality(b)) LOOP
        result[i] := coalesce(a[i], 0) + coalesce(b[i], 0);
    END LOOP;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION ieum_array_least(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    result a%TYPE := a;
BEGIN
    FOR i IN 1 .. greatest(cardinality(a), cardinality(b)) LOOP
        result[i] := least(a[i], b[i]);
    END LOOP;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION ieum_array_greatest(a anyarray, b anyarray) RETURNS anyarray
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    result a%TYPE := a;
BEGIN
    FOR i IN 1 .. greatest(cardinality(a), cardinality(b)) LOOP
        result[i] := greatest(a[i], b[i]);
    END LOOP;
    RETURN result;
END
$$;
