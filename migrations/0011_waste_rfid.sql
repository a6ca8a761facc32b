-- waste: daily volumes imported from the national RFID volume-rate system (한국환경공단
-- RfidFoodWasteServiceNew, adapter kind rfid_volumes), so a district's totals count the
-- apartment complexes' RFID bins as well as the hub's own pickups.

-- The agency names cities with its own codes (W01 …), not 5-digit 시군구 codes. A city is
-- imported only when it is mapped here and the agency still calls it `agency_name`
-- (citySidoName and citySggName with a space), so a code reused for another city is
-- caught rather than booked to the wrong district. Seeded with the sandbox's cities: W01
-- and W07 are agency codes seen in public code; check the others against getCityList
-- before importing real data.
CREATE TABLE waste_rfid_cities (
    city_code     text PRIMARY KEY CHECK (city_code ~ '^W[0-9A-Z]{2}$'),
    district_code text NOT NULL CHECK (district_code ~ '^[0-9]{5}$'),
    agency_name   text NOT NULL
);
INSERT INTO waste_rfid_cities (city_code, district_code, agency_name) VALUES
    ('W01', '11140', '서울특별시 중구'),
    ('W07', '11260', '서울특별시 중랑구'),
    ('W2B', '26350', '부산광역시 해운대구'),
    ('W3C', '27260', '대구광역시 수성구');

-- Complexes whose volumes are also imported one by one (the service has no list of them).
CREATE TABLE waste_rfid_apartments (
    city_code text NOT NULL REFERENCES waste_rfid_cities,
    apt_code  text NOT NULL CHECK (apt_code <> ''),
    name      text NOT NULL,
    PRIMARY KEY (city_code, apt_code)
);
INSERT INTO waste_rfid_apartments (city_code, apt_code, name) VALUES
    ('W01', 'W01001', '신당 이음 1단지'),
    ('W01', 'W01002', '황학 이음 2단지'),
    ('W07', 'W07001', '면목 이음 1단지');

-- One Korean day of a city's complexes together (apt_code '') or of one complex. District
-- totals read the city rows only: a complex's row is part of its city's. Re-importing a
-- month rewrites only the days the agency revised (imported_at says when).
CREATE TABLE waste_rfid_volumes (
    district_code text NOT NULL CHECK (district_code ~ '^[0-9]{5}$'),
    city_code     text NOT NULL,
    apt_code      text NOT NULL,
    day           date NOT NULL,
    quantity_kg   numeric NOT NULL CHECK (quantity_kg >= 0),
    disposals     int NOT NULL CHECK (disposals >= 0),
    imported_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (city_code, apt_code, day)
);
CREATE INDEX waste_rfid_volumes_district_idx ON waste_rfid_volumes (district_code, day)
    WHERE apt_code = '';

-- Daily totals of the hub's own collections, by the Korean day they were collected.
CREATE INDEX waste_pickups_collected_idx ON waste_pickups (district_code, collected_at)
    WHERE status = 'collected';
