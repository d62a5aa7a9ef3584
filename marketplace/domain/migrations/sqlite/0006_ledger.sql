-- The ledger: double-entry, integer, per currency. A transaction's entries sum to zero in
-- every currency (the domain refuses to post anything else); entries and transactions are
-- never updated or deleted: a correction is a new transaction that names what it corrects.
CREATE TABLE ledger_transactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are never updated: post a correcting transaction'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are never deleted: post a correcting transaction'); END;
CREATE TRIGGER ledger_transactions_no_update BEFORE UPDATE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger transactions are never updated: post a correcting transaction'); END;
CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
BEGIN SELECT RAISE(ABORT, 'ledger transactions are never deleted: post a correcting transaction'); END;
