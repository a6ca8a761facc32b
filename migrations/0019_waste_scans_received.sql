-- waste: the scans recorded after a point, in the order they were recorded, without reading
-- a day of scans each time: what `scans.collections_since` (the notices domain's poll of
-- collected pickups, every 2 s) asks for.
CREATE INDEX waste_scans_received_idx ON waste_scans (received_at, scan_id);
