-- notices: agencies by their 행정표준코드 (how their systems sign in through the agency
-- adapter), citizens by the pseudonym agencies address them by, and what an agency's
-- notice carries beyond its text: English values, a bill to pay, an expiry.

ALTER TABLE notice_agencies ADD COLUMN org_code text UNIQUE CHECK (org_code ~ '^[0-9A-Z]{7}$');
UPDATE notice_agencies SET org_code = '6110000' WHERE agency = 'city';    -- 서울특별시
UPDATE notice_agencies SET org_code = '1320000' WHERE agency = 'police';  -- 경찰청
-- Local taxes and parking fines are the city's own notices (its tax and traffic offices).
UPDATE notice_types SET agency = 'city' WHERE type_code IN ('tax_due', 'fine_issued');

-- base64url(HMAC-SHA256(linking key, CI)): made when the citizen verifies their identity
-- through an app; the CI itself is never kept.
CREATE TABLE notice_citizen_refs (
    citizen_ref text PRIMARY KEY CHECK (citizen_ref ~ '^[A-Za-z0-9_-]{43}$'),
    user_id     uuid NOT NULL UNIQUE,
    linked_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE notices
    ADD COLUMN citizen_ref text,          -- as the agency named the citizen
    ADD COLUMN params_en   jsonb,         -- English values where they differ
    ADD COLUMN payment     jsonb,         -- {"amount", "epayNo", "dueDate"}
    ADD COLUMN expires_at  timestamptz;   -- not delivered after this

-- A report about a notice that reached nobody has no delivery.
ALTER TABLE notice_reports ALTER COLUMN event_id DROP NOT NULL;
CREATE UNIQUE INDEX notice_reports_undelivered_idx ON notice_reports (notice_id, kind)
    WHERE event_id IS NULL;
