-- sensors: a marker that keeps a query out of parallel workers.
--
-- A cache-missing series reads about two thousand rollup rows by index from three ranges
-- (resolvers/sensors/queries.py: minutes, 5-minute slots, minutes); PostgreSQL planned a
-- Parallel Append and started two workers per request to share 2 ms of work, and their
-- start-up cost about as much CPU again (bench/peer.py, series_nocache). A hub runs many
-- requests at once, which keep the cores busy without them. A query that calls a
-- PARALLEL UNSAFE function is planned without workers; this one is only called as a
-- one-time filter (STABLE, no arguments: evaluated once per query).
CREATE FUNCTION ieum_serial() RETURNS boolean
LANGUAGE sql STABLE PARALLEL UNSAFE AS $$ SELECT true $$;
