-- sensors: fixed public air-quality stations (AirKorea …) fed by station adapters.
-- Public data about places, not people: shown per station, without k-anonymity.

CREATE TABLE sensor_stations (
    station_id  text PRIMARY KEY,          -- '<adapter>:<the network's station name>'
    adapter     text NOT NULL,
    name        text NOT NULL,
    address     text NOT NULL DEFAULT '',
    lat         double precision NOT NULL,
    lng         double precision NOT NULL,
    cell        bigint NOT NULL,           -- H3 resolution 9, as readings use
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensor_stations_cell_idx ON sensor_stations (cell);

CREATE TABLE sensor_station_readings (
    station_id  text NOT NULL REFERENCES sensor_stations ON DELETE CASCADE,
    measured_at timestamptz NOT NULL,      -- the end of the hour the values average
    pm10        double precision,
    pm25        double precision,
    o3          double precision,
    no2         double precision,
    co          double precision,
    so2         double precision,
    khai        double precision,
    flags       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (station_id, measured_at)
);
