-- sensors: versions of the rollups by 10-minute slot, so a hub can keep rollups in memory.
--
-- A hub holds the rollups of one metric, slot and region it has read (resolvers/sensors/
-- segments.py) and checks this table before using them: every write to sensor_rollups
-- raises the version of the slots it touched in the same transaction, so a hub never
-- answers from rollups older than what has been committed.
CREATE TABLE sensor_rollup_slots (
    slot    timestamptz PRIMARY KEY,   -- start of a 10-minute slot (date_bin from the epoch)
    version bigint NOT NULL
);

-- Reading one slot of one region scans the slot's index entries, not every minute a cell
-- ever had: (bucket, cell) replaces the index on bucket alone.
CREATE INDEX sensor_rollups_bucket_cell_idx ON sensor_rollups (bucket, cell);
DROP INDEX sensor_rollups_bucket_idx;
