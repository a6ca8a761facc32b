-- payments: the `payments` connection pages newest first by (requested_at, payment_id);
-- without this index each page sorted every payment the filters let through.
CREATE INDEX payments_listing_idx ON payments (requested_at DESC, payment_id DESC);
