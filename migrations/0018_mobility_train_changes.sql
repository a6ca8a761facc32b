-- mobility: what the operator announced of a ticketed booking's train. The mobility worker
-- asks the operator about trains leaving soon; a new expected delay or a cancellation is
-- stored with the time it was seen (changed_at), which the notices domain polls to tell the
-- citizen. A cancelled train's ticket is refunded in full (failure_code TRAIN_CANCELLED).

ALTER TABLE mobility_bookings
    ADD COLUMN delay_minutes      int NOT NULL DEFAULT 0 CHECK (delay_minutes >= 0),
    ADD COLUMN train_cancelled_at timestamptz,  -- when the hub saw the train cancelled
    ADD COLUMN changed_at         timestamptz;  -- the last delay or cancellation seen
CREATE INDEX mobility_bookings_changed_idx ON mobility_bookings (changed_at)
    WHERE changed_at IS NOT NULL;
-- Tickets whose train the worker checks, by departure.
CREATE INDEX mobility_bookings_ticketed_idx ON mobility_bookings (departs_at)
    WHERE status = 'ticketed';
