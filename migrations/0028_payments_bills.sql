-- payments: how far the hub has read the tax system's feed of issued bills (one row per
-- tax adapter). It moves in the transaction that writes those bills' bill.created events
-- to the outbox, so a worker stopped at any point goes on from the last page announced.
CREATE TABLE payment_bill_feed (
    adapter text PRIMARY KEY,
    after_seq bigint NOT NULL DEFAULT 0 CHECK (after_seq >= 0),
    read_at timestamptz NOT NULL DEFAULT now()
);
