-- payments: terminals, card payments of tax bills, refunds, idempotency keys, a
-- double-entry ledger, the event outbox, receipt notices to the tax system, gateway
-- webhooks and daily reconciliation. Money is integer won (bigint) everywhere.

-- An official's phone enrolled as a card terminal. `terminal_id` is the device's OAuth
-- client id (private_key_jwt); the terminal collects bills of its district only.
CREATE TABLE payment_terminals (
    terminal_id     text PRIMARY KEY,
    district_code   text NOT NULL CHECK (district_code ~ '^[0-9]{5}$'),
    department      text NOT NULL,
    official        text NOT NULL,
    daily_limit     bigint NOT NULL CHECK (daily_limit > 0),
    enrolled_by     text NOT NULL,
    enrolled_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    disabled_reason text
);

-- One attempt to collect one bill. Stored before any outside call; `status` moves
--   requested → confirming → confirmed | failed | unknown
--   unknown → confirmed | failed          (status lookup, recovery job or webhook)
--   confirmed → partially_refunded → refunded
--   requested → expired                   (never confirmed within the gateway's window)
CREATE TABLE payments (
    payment_id      uuid PRIMARY KEY,
    order_id        text NOT NULL UNIQUE CHECK (length(order_id) BETWEEN 6 AND 64),
    -- What is paid: a tax system's bill (its 전자납부번호), or another domain's charge
    -- (`source` is the domain, `reference` its own id, e.g. a waste pickup).
    source          text NOT NULL DEFAULT 'tax_bill' CHECK (source ~ '^[a-z_]{2,40}$'),
    reference       text,
    epay_no         text CHECK (length(epay_no) = 19),
    tax_kind        smallint NOT NULL CHECK (tax_kind IN (1, 2, 3)),
    tax_no          text NOT NULL,
    district_code   text NOT NULL CHECK (district_code ~ '^[0-9]{5}$'),
    item_code       text NOT NULL,
    item            text NOT NULL,
    payer_masked    text NOT NULL,  -- the hub keeps only the masked name
    due_date        date NOT NULL,
    base_amount     bigint NOT NULL CHECK (base_amount >= 0),
    late_fee        bigint NOT NULL CHECK (late_fee >= 0),
    amount          bigint NOT NULL CHECK (amount > 0 AND amount = base_amount + late_fee),
    channel         text NOT NULL CHECK (channel IN ('terminal', 'online')),
    client_id       text NOT NULL,
    user_id         uuid,
    terminal_id     text REFERENCES payment_terminals,
    collect_day     date NOT NULL,  -- Korean local date of the request (daily limits)
    status          text NOT NULL CHECK (status IN (
        'requested', 'confirming', 'confirmed', 'failed', 'unknown',
        'partially_refunded', 'refunded', 'expired')),
    payment_key     text UNIQUE,
    method          text,
    card_number     text,  -- masked by the gateway; the hub never sees a card number
    approve_no      text,
    failure_code    text,
    failure_message text,
    refunded_amount bigint NOT NULL DEFAULT 0
        CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    receipt_no      text UNIQUE,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((channel = 'terminal') = (terminal_id IS NOT NULL)),
    CHECK ((source = 'tax_bill') = (epay_no IS NOT NULL)),
    CHECK ((source = 'tax_bill') = (reference IS NULL)),
    CHECK (status NOT IN ('confirmed', 'partially_refunded', 'refunded')
           OR (receipt_no IS NOT NULL AND confirmed_at IS NOT NULL))
);
-- A bill has at most one payment that holds, or may yet hold, its money.
CREATE UNIQUE INDEX payments_one_live_per_bill ON payments (epay_no)
    WHERE status IN ('requested', 'confirming', 'unknown', 'confirmed', 'partially_refunded');
CREATE UNIQUE INDEX payments_one_live_per_charge ON payments (source, reference)
    WHERE status IN ('requested', 'confirming', 'unknown', 'confirmed', 'partially_refunded');
CREATE INDEX payments_terminal_day_idx ON payments (terminal_id, collect_day);
CREATE INDEX payments_unsettled_idx ON payments (updated_at)
    WHERE status IN ('requested', 'confirming', 'unknown');
CREATE INDEX payments_confirmed_day_idx ON payments (((confirmed_at AT TIME ZONE 'Asia/Seoul')::date));

-- Receipt numbers: <district>-<KST date>-<number>, the number from this sequence.
CREATE SEQUENCE payment_receipt_seq;

CREATE TABLE payment_refunds (
    refund_id       uuid PRIMARY KEY,
    payment_id      uuid NOT NULL REFERENCES payments,
    amount          bigint NOT NULL CHECK (amount > 0),
    reason          text NOT NULL,
    status          text NOT NULL CHECK (status IN ('requested', 'done', 'failed', 'unknown')),
    requested_by    text NOT NULL,  -- the supervisor's client id, or 'hub' when automatic
    automatic       boolean NOT NULL DEFAULT false,
    transaction_key text,
    failure_code    text,
    failure_message text,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz
);
CREATE INDEX payment_refunds_payment_idx ON payment_refunds (payment_id);
CREATE INDEX payment_refunds_unsettled_idx ON payment_refunds (requested_at)
    WHERE status IN ('requested', 'unknown');

-- Stripe-style idempotency keys, per client: the first response is kept and replayed;
-- the same key with another request is refused. `response` is null while it runs.
CREATE TABLE payment_idempotency_keys (
    owner        text NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    operation    text NOT NULL,
    request_hash text NOT NULL,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX payment_idempotency_keys_expiry_idx ON payment_idempotency_keys (expires_at);

-- The double-entry ledger: append-only; each transaction's entries balance (checked by
-- the database at commit, whatever code wrote them).
CREATE TABLE ledger_transactions (
    transaction_id bigserial PRIMARY KEY,
    kind           text NOT NULL,
    reference      text NOT NULL UNIQUE,  -- what it books, once: 'payment:<id>', 'refund:<id>'
    payment_id     uuid REFERENCES payments,
    memo           text NOT NULL DEFAULT '',
    posted_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ledger_entries (
    entry_id       bigserial PRIMARY KEY,
    transaction_id bigint NOT NULL REFERENCES ledger_transactions,
    account        text NOT NULL CHECK (account ~ '^[a-z_]+(:[0-9a-z_]+)*$'),
    debit          bigint NOT NULL DEFAULT 0 CHECK (debit >= 0),
    credit         bigint NOT NULL DEFAULT 0 CHECK (credit >= 0),
    CHECK ((debit = 0) <> (credit = 0))
);
CREATE INDEX ledger_entries_transaction_idx ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account);

CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tx bigint := NEW.transaction_id;
    debits bigint;
    credits bigint;
    lines int;
BEGIN
    SELECT coalesce(sum(debit), 0), coalesce(sum(credit), 0), count(*)
      INTO debits, credits, lines
      FROM ledger_entries WHERE transaction_id = tx;
    IF lines < 2 OR debits <> credits THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: % entries, debits %, credits %',
            tx, lines, debits, credits
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

-- Deferred to commit, so a transaction's entries may be inserted one by one.
CREATE CONSTRAINT TRIGGER ledger_entries_balance
    AFTER INSERT ON ledger_entries DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();
CREATE CONSTRAINT TRIGGER ledger_transactions_balance
    AFTER INSERT ON ledger_transactions DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: book a reversal instead of % on %',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Events written in the same transaction as the change they announce; a relay sends them
-- to Kafka at least once (consumers deduplicate by event_id).
CREATE TABLE payment_outbox (
    event_id   uuid PRIMARY KEY,
    event_type text NOT NULL,
    key        text NOT NULL,  -- the partition key: the payment id
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    relayed_at timestamptz
);
CREATE INDEX payment_outbox_pending_idx ON payment_outbox (created_at) WHERE relayed_at IS NULL;

-- 수납 통지 and 수납 취소 통지 owed to the tax system: sent until acknowledged.
CREATE TABLE payment_tax_notices (
    notice_id       uuid PRIMARY KEY,
    payment_id      uuid NOT NULL REFERENCES payments,
    refund_id       uuid REFERENCES payment_refunds,
    kind            text NOT NULL CHECK (kind IN ('receipt', 'cancel')),
    receipt_no      text NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'already_paid', 'rejected')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    answered_at     timestamptz,
    CHECK ((kind = 'cancel') = (refund_id IS NOT NULL))
);
CREATE UNIQUE INDEX payment_tax_notices_once_idx ON payment_tax_notices (kind, receipt_no);
CREATE INDEX payment_tax_notices_pending_idx ON payment_tax_notices (next_attempt_at)
    WHERE status = 'pending';

-- Gateway webhooks seen, by the gateway's event id: a redelivery is answered, not applied.
CREATE TABLE payment_webhook_events (
    event_id    text PRIMARY KEY,
    event_type  text NOT NULL,
    payment_key text NOT NULL,
    status      text NOT NULL,
    outcome     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Daily reconciliation against the gateway's settlement file: one run per day (a rerun
-- replaces it), with every discrepancy explained.
CREATE TABLE payment_reconciliations (
    day                date PRIMARY KEY,
    ran_at             timestamptz NOT NULL DEFAULT now(),
    matched            int NOT NULL,
    missing_in_hub     int NOT NULL,
    missing_at_gateway int NOT NULL,
    amount_mismatch    int NOT NULL,
    gateway_amount     bigint NOT NULL,
    hub_amount         bigint NOT NULL,
    gateway_fees       bigint NOT NULL
);
CREATE TABLE payment_reconciliation_items (
    day             date NOT NULL REFERENCES payment_reconciliations ON DELETE CASCADE,
    kind            text NOT NULL
        CHECK (kind IN ('missing_in_hub', 'missing_at_gateway', 'amount_mismatch')),
    order_id        text NOT NULL,
    payment_key     text,
    transaction_key text,
    hub_amount      bigint,
    gateway_amount  bigint,
    explanation     text NOT NULL
);
CREATE INDEX payment_reconciliation_items_day_idx ON payment_reconciliation_items (day);
