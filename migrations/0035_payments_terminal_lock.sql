-- payments: a terminal's collect and confirm read its row (enrolled? disabled?) in the call
-- that takes the idempotency key's lock, instead of a round trip of their own before it.
-- A terminal missing or disabled takes no lock and claims no key (as when it was refused
-- before the call); `locked` says which.
DROP FUNCTION payment_idempotency_lock(bigint, text, text, text, text, interval);

-- `terminal` null: the caller is no terminal. Else its row (null if not enrolled) and,
-- when it is active, what payment_idempotency_lock answered: the key's lock taken, then
-- its live stored row (response null: claimed, not answered) or, claimed now for this
-- request (new, or expired), nulls. The lock is a session lock, held until the caller
-- stores the answer (payment_idempotency_answer, 0033) or unlocks it.
CREATE FUNCTION payment_idempotency_lock(
    p_lock bigint, p_owner text, p_key text, p_operation text, p_hash text, p_keep interval,
    p_terminal text
)
RETURNS TABLE (locked boolean, terminal payment_terminals, operation text,
               request_hash text, response jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    t payment_terminals;  -- stays NULL for a caller that is no terminal
BEGIN
    IF p_terminal IS NOT NULL THEN
        SELECT * INTO t FROM payment_terminals WHERE terminal_id = p_terminal;
        IF NOT FOUND OR t.disabled_at IS NOT NULL THEN
            RETURN QUERY SELECT false, t, NULL::text, NULL::text, NULL::jsonb;
            RETURN;
        END IF;
    END IF;
    PERFORM pg_advisory_lock(p_lock);
    RETURN QUERY
        SELECT true, t, k.operation, k.request_hash, k.response
          FROM payment_idempotency_keys k
         WHERE k.owner = p_owner AND k.key = p_key AND k.expires_at > now();
    IF NOT FOUND THEN
        INSERT INTO payment_idempotency_keys AS k
            (owner, key, operation, request_hash, expires_at)
        VALUES (p_owner, p_key, p_operation, p_hash, now() + p_keep)
        ON CONFLICT (owner, key) DO UPDATE SET operation = excluded.operation,
            request_hash = excluded.request_hash, response = NULL,
            created_at = now(), expires_at = excluded.expires_at;
        RETURN QUERY SELECT true, t, NULL::text, NULL::text, NULL::jsonb;
    END IF;
END $$;
