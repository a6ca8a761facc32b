-- platform: the shared District entity (시군구), keyed by its 5-digit administrative code.
CREATE TABLE districts (
    code          text PRIMARY KEY CHECK (code ~ '^[0-9]{5}$'),
    name          text NOT NULL,
    name_en       text NOT NULL,
    province      text NOT NULL,
    province_code text NOT NULL CHECK (province_code ~ '^[0-9]{2}$'),
    province_en   text NOT NULL,
    -- Codes this district had before a reorganisation (강원 42→51, 전북 45→52, …).
    legacy_codes  text[] NOT NULL DEFAULT '{}',
    -- GeoJSON geometry in WGS 84 (EPSG:4326).
    boundary      jsonb NOT NULL,
    source        text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX districts_province_idx ON districts (province_code);
CREATE INDEX districts_legacy_codes_idx ON districts USING gin (legacy_codes);
