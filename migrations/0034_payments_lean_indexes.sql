-- payments: a payment's row is written three times (requested, confirming, confirmed), and
-- none of those updates can be HOT (each changes `status`, which the partial indexes'
-- predicates read), so each version is inserted into every index of the table: 29 index
-- entries a payment with the ten indexes of 0007 and 0021. Four of them indexed NULLs
-- nobody looks up: a receipt number and a confirmation day exist only once confirmed, a
-- payment key once confirming, a tax bill has no charge reference and a charge no
-- 전자납부번호. As partial indexes WHERE the column IS NOT NULL they answer the same
-- lookups (each lookup's `column = value` implies it) and enforce the same uniqueness
-- (NULLs never conflicted): 21 entries a tax bill's payment.
ALTER TABLE payments DROP CONSTRAINT payments_payment_key_key;
CREATE UNIQUE INDEX payments_payment_key_key ON payments (payment_key)
    WHERE payment_key IS NOT NULL;
ALTER TABLE payments DROP CONSTRAINT payments_receipt_no_key;
CREATE UNIQUE INDEX payments_receipt_no_key ON payments (receipt_no)
    WHERE receipt_no IS NOT NULL;

DROP INDEX payments_one_live_per_bill;
CREATE UNIQUE INDEX payments_one_live_per_bill ON payments (epay_no)
    WHERE epay_no IS NOT NULL
      AND status IN ('requested', 'confirming', 'unknown', 'confirmed', 'partially_refunded');
DROP INDEX payments_one_live_per_charge;
CREATE UNIQUE INDEX payments_one_live_per_charge ON payments (source, reference)
    WHERE reference IS NOT NULL
      AND status IN ('requested', 'confirming', 'unknown', 'confirmed', 'partially_refunded');

DROP INDEX payments_confirmed_day_idx;
CREATE INDEX payments_confirmed_day_idx
    ON payments (((confirmed_at AT TIME ZONE 'Asia/Seoul')::date))
    WHERE confirmed_at IS NOT NULL;

-- Nothing reads the ledger's entries by account through an index: balances sum every
-- entry (or those of an account and the accounts below it, `account = $1 OR
-- starts_with(account, $1 || ':')`, which a btree cannot serve) in one scan. Each entry
-- (two a payment) was inserted into it for nothing.
DROP INDEX ledger_entries_account_idx;
