-- waste: several bins of one business in one district, picked up on one day and paid with
-- one payment. The order is the payment's reference in the payments domain; each of its
-- pickups carries the order's payment (`payment_id`) and its own share of it
-- (`quoted_amount`), so a pickup cancelled is refunded its share, a weighed one settled
-- against its share, and the order's payment confirmed pays every pickup still requested.
CREATE TABLE waste_pickup_orders (
    pickup_order_id uuid PRIMARY KEY,
    generator_id    uuid NOT NULL REFERENCES waste_generators,
    district_code   text NOT NULL,
    pickup_day      date NOT NULL,
    bin_ids         uuid[] NOT NULL CHECK (cardinality(bin_ids) > 0),  -- sorted
    amount          int NOT NULL CHECK (amount > 0),  -- the pickups' quotes added up
    payment_id      uuid,  -- the payment open now (a new one after a failed card)
    requested_by    text NOT NULL,
    requested_user  uuid,
    requested_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX waste_pickup_orders_generator_idx ON waste_pickup_orders (generator_id);

-- `refund_id`: the payments domain's refund asked for a cancelled pickup (its share, or
-- what was left of the payment once every pickup it paid was cancelled): asked once.
ALTER TABLE waste_pickups
    ADD COLUMN pickup_order_id uuid REFERENCES waste_pickup_orders,
    ADD COLUMN refund_id uuid;
CREATE INDEX waste_pickups_order_idx ON waste_pickups (pickup_order_id)
    WHERE pickup_order_id IS NOT NULL;
