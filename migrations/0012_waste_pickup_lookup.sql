-- waste: a scan looks up its bin's pickup of the day; without this it read every pickup of
-- the day (bench/waste.py: PostgreSQL CPU per scan grew with the day's pickups).
CREATE INDEX waste_pickups_bin_day_idx ON waste_pickups (bin_id, pickup_day);
