-- waste: the connections' sort keys, so a page is an index range, not a sort of the table:
-- generators newest first, sites by name, pickups by day then request, newest first.
CREATE INDEX waste_generators_listing_idx ON waste_generators (registered_at DESC, generator_id DESC);
CREATE INDEX waste_sites_listing_idx ON waste_sites (name, site_id);
CREATE INDEX waste_pickups_listing_idx
    ON waste_pickups (pickup_day DESC, requested_at DESC, pickup_id DESC);
