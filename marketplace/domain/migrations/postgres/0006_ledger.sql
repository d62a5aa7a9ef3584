-- The ledger: double-entry, integer, per currency. A transaction's entries sum to zero in
-- every currency: the domain refuses to post anything else, and a deferred constraint
-- trigger refuses it again at commit. Entries and transactions are never updated or
-- deleted: a correction is a new transaction that names what it corrects.
CREATE TABLE ledger_transactions (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    -- charge | collection | refund | adjustment
    kind TEXT NOT NULL,
    charge_id TEXT REFERENCES charges (id),
    refund_id TEXT REFERENCES refunds (id),
    corrects TEXT REFERENCES ledger_transactions (id),
    idempotency_key TEXT UNIQUE,
    request_sha256 TEXT,
    memo TEXT NOT NULL,
    posted_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX ledger_one_issue_and_collection ON ledger_transactions (charge_id, kind)
    WHERE kind IN ('charge', 'collection');
CREATE TABLE ledger_entries (
    transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
    leg BIGINT NOT NULL,
    account TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor <> 0),
    PRIMARY KEY (transaction_id, leg)
);
CREATE INDEX ledger_entries_account ON ledger_entries (account, currency);

CREATE FUNCTION ledger_transaction_balances() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM ledger_entries WHERE transaction_id = NEW.transaction_id
        GROUP BY currency HAVING SUM(amount_minor) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', NEW.transaction_id USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER ledger_entries_balance AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();

CREATE FUNCTION ledger_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are never updated or deleted: post a correcting transaction';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_transactions_immutable BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
