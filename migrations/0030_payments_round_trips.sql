-- payments: two steps that each took several round trips, as functions. Each statement in
-- a plpgsql function takes a fresh snapshot (READ COMMITTED), so what it reads after a
-- lock wait includes what the lock's previous holder committed; one plain statement would
-- read from before the wait.

-- An idempotency key's lock, then its live stored answer (no row: none, or expired). The
-- lock is a session lock, held until the caller unlocks it after storing the answer.
CREATE FUNCTION payment_idempotency_lock(p_lock bigint, p_owner text, p_key text)
RETURNS TABLE (operation text, request_hash text, response jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock(p_lock);
    RETURN QUERY
        SELECT k.operation, k.request_hash, k.response FROM payment_idempotency_keys k
         WHERE k.owner = p_owner AND k.key = p_key AND k.expires_at > now();
END $$;

-- A terminal locked until the caller's transaction ends, and what it collected on a day
-- (payments that did not fail or expire, refunds not deducted): concurrent collections
-- of one terminal check and raise its daily total one after the other. No row: no such
-- terminal.
CREATE FUNCTION payment_terminal_day(p_terminal text, p_day date)
RETURNS TABLE (daily_limit bigint, active boolean, used bigint)
LANGUAGE plpgsql AS $$
DECLARE
    terminal payment_terminals;
BEGIN
    SELECT * INTO terminal FROM payment_terminals WHERE terminal_id = p_terminal FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT terminal.daily_limit, terminal.disabled_at IS NULL, coalesce(sum(p.amount), 0)::bigint
          FROM payments p
         WHERE p.terminal_id = p_terminal AND p.collect_day = p_day
           AND p.status NOT IN ('failed', 'expired');
END $$;
