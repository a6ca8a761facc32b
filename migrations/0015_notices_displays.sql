-- notices, taxi-top displays: public messages a city shows on the displays of the taxis
-- inside an area for a time window; the show/withdraw commands the hub sent each unit; the
-- units' acknowledgements; where the units showing a message were seen (coverage).
-- Device and vehicle ids never leave these tables except through an operator's audited read.

CREATE TABLE display_messages (
    message_id      uuid PRIMARY KEY,
    publisher       text NOT NULL,  -- the operator's OAuth client id
    idempotency_key text NOT NULL,
    request         jsonb NOT NULL,  -- what was asked, to refuse a reused key
    text_ko         text NOT NULL,
    text_en         text NOT NULL,
    priority        text NOT NULL
        CHECK (priority IN ('EMERGENCY', 'MISSING_PERSON', 'WARNING', 'INFORMATION')),
    area_kind       text NOT NULL CHECK (area_kind IN ('district', 'polygon', 'cells')),
    district_code   text CHECK (district_code ~ '^[0-9]{5}$'),
    area_cells      bigint[] NOT NULL,  -- H3, compacted; resolution 9 when expanded
    cell_count      integer NOT NULL CHECK (cell_count > 0),
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    withdrawn_at    timestamptz,
    CHECK (ends_at > starts_at),
    UNIQUE (publisher, idempotency_key)
);
-- The targeting worker reads the messages not yet over.
CREATE INDEX display_messages_open_idx ON display_messages (ends_at) WHERE withdrawn_at IS NULL;
CREATE INDEX display_messages_created_idx ON display_messages (created_at DESC);

-- The hub's decision per (message, unit): the last command it sent. `generation` counts
-- the unit's entries into the area (a unit that leaves and comes back is shown it again);
-- the command is stored before it is sent and `sent_at` set once the broker has it, so a
-- worker restarted in between sends the same command (same id) again, and nothing else.
CREATE TABLE display_targets (
    message_id  uuid NOT NULL REFERENCES display_messages,
    device_id   text NOT NULL,
    vehicle_id  text NOT NULL,
    generation  integer NOT NULL CHECK (generation > 0),
    action      text NOT NULL CHECK (action IN ('show', 'withdraw')),
    reason      text CHECK (reason IN ('left_area', 'window_ended', 'withdrawn')),
    command_id  uuid NOT NULL UNIQUE,
    decided_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    PRIMARY KEY (message_id, device_id)
);
CREATE INDEX display_targets_unsent_idx ON display_targets (decided_at) WHERE sent_at IS NULL;

-- What units said: each acknowledgement once (units resend until the broker has it).
CREATE TABLE display_acks (
    ack_id      uuid PRIMARY KEY,
    message_id  uuid NOT NULL REFERENCES display_messages,
    device_id   text NOT NULL,
    command_id  uuid,  -- null when the unit acted on its own (left the area, window ended)
    state       text NOT NULL CHECK (state IN ('shown', 'hidden')),
    reason      text CHECK (reason IN ('left_area', 'window_ended', 'withdrawn', 'outranked')),
    at          timestamptz NOT NULL,  -- the unit's clock
    lat         double precision,
    lng         double precision,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX display_acks_message_idx ON display_acks (message_id, device_id, at);

-- Where units showing a message were seen: one row per unit, resolution-9 cell and minute.
CREATE TABLE display_presence (
    message_id uuid NOT NULL REFERENCES display_messages,
    device_id  text NOT NULL,
    cell       bigint NOT NULL,
    minute     timestamptz NOT NULL,
    PRIMARY KEY (message_id, device_id, cell, minute)
);
