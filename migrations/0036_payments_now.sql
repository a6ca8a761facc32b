-- payments: a payment as it is now, read with a snapshot of its own. A plpgsql function's
-- statements each take a fresh snapshot (READ COMMITTED), so a statement that waited for
-- another transaction's lock on the payment and then found nothing to change (the
-- webhook and the confirm's answer both confirming it) reads through this what the other
-- committed, in the same round trip; its own snapshot is from before the wait. VOLATILE,
-- as it must be: a STABLE function reads with its caller's snapshot.
CREATE FUNCTION payment_now(p_payment uuid) RETURNS SETOF payments
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY SELECT * FROM payments WHERE payment_id = p_payment;
END $$;
