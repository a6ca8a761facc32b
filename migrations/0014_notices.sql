-- notices: government notices to citizens through the private apps they choose (국민비서's
-- "agency → relay → app inbox"). Agencies and the hub's own domains publish; a citizen opts
-- in per notice type and per app; each app receives its citizens' notices by signed
-- webhooks, retried with backoff for more than a day, and can read them through GraphQL.
-- Taxi-top display messages: 0015_notices_displays.sql.

-- The catalogue: what a notice of each type says (templates with {placeholders}), who owns
-- it, and whether it may wake a citizen at night (urgent) or carry a payment link.
CREATE TABLE notice_agencies (
    agency  text PRIMARY KEY CHECK (agency ~ '^[a-z][a-z0-9-]{1,40}$'),
    name_ko text NOT NULL,
    name_en text NOT NULL
);

CREATE TABLE notice_types (
    type_code    text PRIMARY KEY CHECK (type_code ~ '^[a-z][a-z0-9_]{1,62}$'),
    agency       text NOT NULL REFERENCES notice_agencies,
    title_ko     text NOT NULL,
    title_en     text NOT NULL,
    body_ko      text NOT NULL,
    body_en      text NOT NULL,
    urgent       boolean NOT NULL,
    payment_link boolean NOT NULL,
    by_district  boolean NOT NULL DEFAULT false  -- addressed to a district: a choice names one
);

-- OAuth clients that publish for an agency through GraphQL (registered by a city operator).
CREATE TABLE notice_publishers (
    client_id     text PRIMARY KEY,
    agency        text NOT NULL REFERENCES notice_agencies,
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- A notice as accepted: rendered once, kept as sent. `dedupe_key` makes a resubmission
-- (the same agency id, the same source event) the same notice.
CREATE TABLE notices (
    notice_id        uuid PRIMARY KEY,
    dedupe_key       text NOT NULL UNIQUE,  -- '<agency>/<agency notice id>' or 'event/<domain>/<id>'
    type_code        text NOT NULL REFERENCES notice_types,
    agency           text NOT NULL REFERENCES notice_agencies,
    agency_notice_id text,                  -- the agency's own id (agency notices only)
    source           text NOT NULL,         -- 'agency' or the publishing domain's name
    user_id          uuid,                  -- the citizen; null: everyone who chose it
    district_code    text CHECK (district_code ~ '^[0-9]{5}$'),
    params           jsonb NOT NULL,
    title_ko         text NOT NULL,
    title_en         text NOT NULL,
    body_ko          text NOT NULL,
    body_en          text NOT NULL,
    urgent           boolean NOT NULL,
    payment_url      text,
    recipients       int NOT NULL,          -- deliveries made when it was accepted
    accepted_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notices_agency_idx ON notices (agency, accepted_at);

-- A citizen's choice: notices of this type through this app (of this district, for types
-- addressed by district). Withdrawn choices stay, dated, so a citizen's history is whole.
CREATE TABLE notice_choices (
    user_id       uuid NOT NULL,
    client_id     text NOT NULL,
    type_code     text NOT NULL REFERENCES notice_types,
    district_code text CHECK (district_code ~ '^[0-9]{5}$'),
    chosen_at     timestamptz NOT NULL DEFAULT now(),
    withdrawn_at  timestamptz,
    PRIMARY KEY (user_id, client_id, type_code)
);
CREATE INDEX notice_choices_type_idx ON notice_choices (type_code, district_code)
    WHERE withdrawn_at IS NULL;

-- An app's webhook and its signing secrets (HMAC keys, needed in clear to sign): the
-- previous one stays valid until `previous_until` after a rotation.
CREATE TABLE notice_webhooks (
    client_id       text PRIMARY KEY,
    url             text NOT NULL,
    secret          bytea NOT NULL CHECK (length(secret) BETWEEN 24 AND 64),
    previous_secret bytea,
    previous_until  timestamptz,
    secret_key      text NOT NULL,  -- idempotency key of the call that made `secret`
    registered_at   timestamptz NOT NULL DEFAULT now(),
    rotated_at      timestamptz NOT NULL DEFAULT now()
);

-- One notice to one citizen through one app. `event_id` is the webhook-id, the same on
-- every attempt; `delivery_id` is the order of acceptance, which a citizen's deliveries
-- through an app keep. A claimed delivery's `next_attempt_at` is its lease: if the worker
-- dies, the delivery is due again then.
CREATE TABLE notice_deliveries (
    delivery_id     bigserial PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    notice_id       uuid NOT NULL REFERENCES notices,
    client_id       text NOT NULL,
    user_id         uuid NOT NULL,
    type_code       text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'withdrawn')),
    release_at      timestamptz NOT NULL,  -- quiet hours: not sent before
    next_attempt_at timestamptz NOT NULL,
    attempts        int NOT NULL DEFAULT 0,
    last_error      text,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    read_at         timestamptz,           -- acknowledged by the citizen in the app
    UNIQUE (notice_id, client_id, user_id)
);
CREATE INDEX notice_deliveries_due_idx ON notice_deliveries (next_attempt_at, delivery_id)
    WHERE status = 'pending';
CREATE INDEX notice_deliveries_queue_idx ON notice_deliveries (client_id, user_id, delivery_id)
    WHERE status = 'pending';
CREATE INDEX notice_deliveries_inbox_idx ON notice_deliveries (user_id, client_id, delivery_id);
CREATE INDEX notice_deliveries_notice_idx ON notice_deliveries (notice_id);
CREATE INDEX notice_deliveries_failed_idx ON notice_deliveries (client_id, failed_at)
    WHERE status = 'failed';

-- What an agency is told about its notices (delivered, failed, read), sent through its
-- adapter until acknowledged: an outbox, so a report is never lost nor made twice.
CREATE TABLE notice_reports (
    report_id       bigserial PRIMARY KEY,
    notice_id       uuid NOT NULL REFERENCES notices,
    event_id        uuid NOT NULL,          -- the delivery's
    kind            text NOT NULL CHECK (kind IN ('delivered', 'failed', 'read')),
    detail          text NOT NULL DEFAULT '',
    occurred_at     timestamptz NOT NULL,
    sent_at         timestamptz,
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    UNIQUE (event_id, kind)
);
CREATE INDEX notice_reports_due_idx ON notice_reports (next_attempt_at) WHERE sent_at IS NULL;

-- Reference data: agencies and the notice types the hub knows.
INSERT INTO notice_agencies (agency, name_ko, name_en) VALUES
    ('local-tax', '지방세 담당 부서', 'Local tax office'),
    ('police', '경찰청', 'Korean National Police Agency'),
    ('nhis', '국민건강보험공단', 'National Health Insurance Service'),
    ('city', '시청', 'City hall'),
    ('korail', '한국철도공사', 'Korail');

INSERT INTO notice_types
    (type_code, agency, title_ko, title_en, body_ko, body_en, urgent, payment_link, by_district)
VALUES
    ('tax_due', 'local-tax', '지방세 납부 안내', 'Local tax due',
     '{item} {amount}원의 납부기한은 {due_date}입니다.',
     '{item}: {amount} won is due on {due_date}.', false, true, false),
    ('fine_issued', 'police', '과태료 부과 안내', 'Fine issued',
     '{reason}로 과태료 {amount}원이 부과되었습니다. 납부기한: {due_date}.',
     'A fine of {amount} won was issued for {reason}. Due on {due_date}.', false, true, false),
    ('licence_renewal', 'police', '운전면허 적성검사 안내', 'Driving licence renewal',
     '운전면허 적성검사 기간이 {deadline}에 끝납니다.',
     'Your driving licence renewal period ends on {deadline}.', false, false, false),
    ('health_checkup', 'nhis', '건강검진 안내', 'Health check-up',
     '{year}년 건강검진 대상자입니다.',
     'You are due a health check-up in {year}.', false, false, false),
    ('payment_received', 'local-tax', '납부 완료', 'Payment received',
     '{item} {amount}원이 납부되었습니다. 영수증 번호 {receipt_no}.',
     '{amount} won for {item} was received. Receipt {receipt_no}.', false, false, false),
    ('refund_issued', 'local-tax', '환불 안내', 'Refund issued',
     '{item} {amount}원이 환불되었습니다.',
     '{amount} won for {item} was refunded.', false, false, false),
    ('pickup_collected', 'city', '음식물 쓰레기 수거 완료', 'Food waste collected',
     '{site}의 음식물 쓰레기가 {collected_at}에 수거되었습니다.',
     'Food waste at {site} was collected at {collected_at}.', false, false, false),
    ('train_delayed', 'korail', '열차 지연 안내', 'Train delayed',
     '{train} 열차가 {minutes}분 지연됩니다.',
     'Train {train} is {minutes} minutes late.', true, false, false),
    ('train_cancelled', 'korail', '열차 운행 취소', 'Train cancelled',
     '{train} 열차({run_date}) 운행이 취소되었습니다.',
     'Train {train} of {run_date} is cancelled.', true, false, false),
    ('fine_dust_warning', 'city', '미세먼지 경보', 'Fine dust warning',
     '{district}의 초미세먼지(PM2.5)가 한 시간 동안 나쁨 수준({pm25}㎍/㎥)입니다.',
     'PM2.5 in {district} has been bad for an hour ({pm25} µg/m³).', true, false, true);
