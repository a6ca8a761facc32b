-- waste: food-waste collection without paper stickers. Businesses (generators) with their
-- sites and bins, district tariffs, pickups paid through the payments domain, collector
-- companies, the scans of tagged bins at pickup, and volumes from the national RFID system.
-- Tags and their keys: 0010_waste_tags.sql.

-- A business that produces food waste, registered with its 사업자등록번호 (10 digits,
-- checksum validated by the hub). `owner_*` is who registered it (its app and user).
CREATE TABLE waste_generators (
    generator_id   uuid PRIMARY KEY,
    business_no    text NOT NULL UNIQUE CHECK (business_no ~ '^[0-9]{10}$'),
    name           text NOT NULL,
    representative text NOT NULL,  -- personal data: reads are audited
    phone          text NOT NULL,  -- personal data: reads are audited
    owner_client   text NOT NULL,
    owner_user     uuid,
    registered_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE waste_sites (
    site_id       uuid PRIMARY KEY,
    generator_id  uuid NOT NULL REFERENCES waste_generators,
    name          text NOT NULL,
    address       text NOT NULL,
    lat           double precision NOT NULL CHECK (lat BETWEEN 33 AND 39),
    lng           double precision NOT NULL CHECK (lng BETWEEN 124 AND 132),
    district_code text NOT NULL CHECK (district_code ~ '^[0-9]{5}$'),
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX waste_sites_generator_idx ON waste_sites (generator_id);
CREATE INDEX waste_sites_district_idx ON waste_sites (district_code);

CREATE TABLE waste_bins (
    bin_id        uuid PRIMARY KEY,
    site_id       uuid NOT NULL REFERENCES waste_sites,
    volume_litres int NOT NULL CHECK (volume_litres BETWEEN 1 AND 2000),
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz
);
CREATE INDEX waste_bins_site_idx ON waste_bins (site_id);

-- A district's fee: per litre of bin volume (bin_volume_litres: for bins of that size, or
-- any size when null) or per kilogram weighed, from a date (to a date).
CREATE TABLE waste_tariffs (
    tariff_id         bigserial PRIMARY KEY,
    district_code     text NOT NULL CHECK (district_code ~ '^[0-9]{5}$'),
    basis             text NOT NULL CHECK (basis IN ('litre', 'kg')),
    unit_price        int NOT NULL CHECK (unit_price > 0),  -- won per litre or per kg
    bin_volume_litres int CHECK (bin_volume_litres > 0),
    effective_from    date NOT NULL,
    effective_to      date,
    CHECK (effective_to IS NULL OR effective_to > effective_from)
);
CREATE INDEX waste_tariffs_district_idx ON waste_tariffs (district_code, effective_from);

-- A collector company: an OAuth partner (its client id) allowed in some districts.
CREATE TABLE waste_collectors (
    collector_id text PRIMARY KEY,
    name         text NOT NULL,
    districts    text[] NOT NULL CHECK (cardinality(districts) > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- A pickup of one bin:
--   requested → paid → scheduled → collected | missed;  requested | paid | scheduled →
--   cancelled (a paid one refunded through payments). `payment_id` is the payments
--   domain's payment (its Python API, not its table).
CREATE TABLE waste_pickups (
    pickup_id      uuid PRIMARY KEY,
    bin_id         uuid NOT NULL REFERENCES waste_bins,
    site_id        uuid NOT NULL REFERENCES waste_sites,
    district_code  text NOT NULL,
    status         text NOT NULL CHECK (status IN (
        'requested', 'paid', 'scheduled', 'collected', 'missed', 'cancelled')),
    basis          text NOT NULL CHECK (basis IN ('litre', 'kg')),
    unit_price     int NOT NULL CHECK (unit_price > 0),
    quoted_amount  int NOT NULL CHECK (quoted_amount > 0),
    settled_amount int CHECK (settled_amount >= 0),  -- after weighing (kg tariffs)
    payment_id     uuid,
    top_up_payment_id uuid,
    pickup_day     date NOT NULL,
    requested_by   text NOT NULL,
    requested_user uuid,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    paid_at        timestamptz,
    collected_at   timestamptz,
    collector_id   text REFERENCES waste_collectors,
    weight_kg      numeric(8, 2) CHECK (weight_kg >= 0),
    volume_litres  int,
    cancelled_at   timestamptz,
    cancel_reason  text
);
-- A bin has at most one pickup waiting on a day.
CREATE UNIQUE INDEX waste_pickups_one_open_idx ON waste_pickups (bin_id, pickup_day)
    WHERE status IN ('requested', 'paid', 'scheduled');
CREATE INDEX waste_pickups_day_idx ON waste_pickups (district_code, pickup_day, status);
CREATE INDEX waste_pickups_payment_idx ON waste_pickups (payment_id);

-- Scans of a bin's tag by a collector's phone; `scan_id` is made on the phone, so a scan
-- uploaded twice (offline, then again) is stored once and keeps its own scan time.
CREATE TABLE waste_scans (
    scan_id      uuid PRIMARY KEY,
    collector_id text NOT NULL,
    bin_id       uuid,
    pickup_id    uuid REFERENCES waste_pickups,
    tag_kind     text NOT NULL CHECK (tag_kind IN ('qr', 'nfc')),
    scanned_at   timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    lat          double precision,
    lng          double precision,
    distance_m   double precision,
    weight_kg    numeric(8, 2),
    outcome      text NOT NULL,  -- 'collected', or the reason it was refused or flagged
    flagged      boolean NOT NULL DEFAULT false
);
CREATE INDEX waste_scans_pickup_idx ON waste_scans (pickup_id);
CREATE INDEX waste_scans_time_idx ON waste_scans (scanned_at);
