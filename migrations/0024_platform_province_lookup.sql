-- A province is asked for by its Korean name, its 2-digit code or its English name (any
-- case): one index each, so listing a province's districts reads those rows only (the
-- three-way OR read all 253 and lowered each English name: 0.45 ms against 0.08 ms).
CREATE INDEX districts_province_name_idx ON districts (province);
CREATE INDEX districts_province_en_idx ON districts (lower(province_en));
