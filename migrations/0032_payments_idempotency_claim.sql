-- payments: an idempotency key is claimed for its request (its hash, no answer yet) in the
-- call that takes its lock, as before 0030: a key whose first request never got an answer
-- (a process killed, an upstream away) still refuses another request, and runs the same
-- one again. Still one round trip.
DROP FUNCTION payment_idempotency_lock(bigint, text, text);

-- An idempotency key's lock, then its live stored row (response null: claimed, not
-- answered), or no row after claiming it for this request (new, or expired). The lock is
-- a session lock, held until the caller unlocks it after storing the answer.
CREATE FUNCTION payment_idempotency_lock(
    p_lock bigint, p_owner text, p_key text, p_operation text, p_hash text, p_keep interval
)
RETURNS TABLE (operation text, request_hash text, response jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock(p_lock);
    RETURN QUERY
        SELECT k.operation, k.request_hash, k.response FROM payment_idempotency_keys k
         WHERE k.owner = p_owner AND k.key = p_key AND k.expires_at > now();
    IF NOT FOUND THEN
        INSERT INTO payment_idempotency_keys AS k
            (owner, key, operation, request_hash, expires_at)
        VALUES (p_owner, p_key, p_operation, p_hash, now() + p_keep)
        ON CONFLICT (owner, key) DO UPDATE SET operation = excluded.operation,
            request_hash = excluded.request_hash, response = NULL,
            created_at = now(), expires_at = excluded.expires_at;
    END IF;
END $$;
