-- mobility: train bookings made by private apps for citizens who consented (mobility:book).
-- A booking is stored before each outside call it precedes, so a crash at any point leaves
-- a row the mobility worker finishes: a hold looked up by our reference, a paid hold
-- ticketed (or its payment refunded when the ticket cannot be issued), an unpaid hold
-- released when it lapses.

CREATE TABLE mobility_bookings (
    booking_id       uuid PRIMARY KEY,  -- also the operator's partner reference
    client_id        text NOT NULL,     -- the app that booked: the only app that sees it
    user_id          uuid NOT NULL,     -- the citizen it is for (personal data: audited)
    idempotency_key  text NOT NULL,
    request          jsonb NOT NULL,    -- what was asked, to refuse a reused key
    operator         text NOT NULL,     -- the booking adapter's name
    train_no         text NOT NULL,
    grade            text NOT NULL,
    run_date         date NOT NULL,
    dep_station      text NOT NULL,
    arr_station      text NOT NULL,
    departs_at       timestamptz NOT NULL,
    arrives_at       timestamptz NOT NULL,
    seat_class       text NOT NULL CHECK (seat_class IN ('general', 'special')),
    passengers       int NOT NULL CHECK (passengers BETWEEN 1 AND 9),
    status           text NOT NULL CHECK (status IN (
        'holding',    -- hold sent, answer not yet stored
        'held',       -- seats held until pay_by; payment open
        'paying',     -- the citizen's card is being confirmed
        'ticketed',   -- paid and ticket issued
        'released',   -- unpaid hold given back (cancelled or lapsed)
        'failed',     -- the operator refused the hold (sold out …)
        'refunding',  -- ticket cancelled or not issuable; refund under way
        'refunded'    -- money given back (all, or all but the operator's fee)
    )),
    pnr              text,
    seats            jsonb NOT NULL DEFAULT '[]',  -- [{"car": "5", "seat": "12A"}]
    amount           int CHECK (amount >= 0),      -- won for all seats
    pay_by           timestamptz,
    payment_id       uuid,             -- the payments domain's payment of this booking
    order_id         text,
    sale_no          text,
    cancel_fee       int NOT NULL DEFAULT 0 CHECK (cancel_fee >= 0),
    refunded_amount  int NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    failure_code     text,
    failure          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, idempotency_key)
);
CREATE INDEX mobility_bookings_citizen_idx
    ON mobility_bookings (user_id, client_id, created_at DESC);
-- What the worker still has to finish.
CREATE INDEX mobility_bookings_open_idx ON mobility_bookings (status, updated_at)
    WHERE status IN ('holding', 'held', 'paying', 'refunding');
