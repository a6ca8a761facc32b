-- waste: where several collector companies serve one district, city staff give each site
-- to one of them. A site given to a company is on that company's route only, and another
-- company's scan of its bins is refused (ASSIGNED_TO_ANOTHER_COLLECTOR); a site given to
-- none is any company's of its district, as before. A company moved out of the site's
-- district loses the site (resolvers/waste/collectors.py).
CREATE TABLE waste_site_collectors (
    site_id      uuid PRIMARY KEY REFERENCES waste_sites,
    collector_id text NOT NULL REFERENCES waste_collectors,
    assigned_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX waste_site_collectors_collector_idx ON waste_site_collectors (collector_id);
