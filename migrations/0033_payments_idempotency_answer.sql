-- payments: an idempotency key's answer stored and its lock released in one round trip.
-- The session lock (payment_idempotency_lock, 0032) is taken again at transaction level
-- and then released: the transaction lock, which the session holds already, is granted
-- at once and keeps a waiter out until this transaction's commit, so the waiter finds
-- the answer committed (released before the commit, it would find none and run again).
CREATE FUNCTION payment_idempotency_answer(
    p_lock bigint, p_owner text, p_key text, p_response jsonb
)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    UPDATE payment_idempotency_keys SET response = p_response
     WHERE owner = p_owner AND key = p_key;
    PERFORM pg_advisory_unlock(p_lock);
END $$;
