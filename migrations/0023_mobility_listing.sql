-- mobility: a citizen's bookings through one app page newest first by (created_at,
-- booking_id); the citizen index had no id to break ties in the order.
DROP INDEX mobility_bookings_citizen_idx;
CREATE INDEX mobility_bookings_citizen_idx
    ON mobility_bookings (user_id, client_id, created_at DESC, booking_id DESC);
