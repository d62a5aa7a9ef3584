-- The smallest payable balance paid out, per currency (absent: 25 whole units).
CREATE TABLE payout_minimums (
    currency TEXT PRIMARY KEY,
    minimum_minor BIGINT NOT NULL CHECK (minimum_minor >= 0),
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Holds: an operator stops a partner's payouts until the hold is released.
CREATE TABLE payout_holds (
    id TEXT PRIMARY KEY,
    publisher TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    released_at BIGINT
);
CREATE INDEX payout_holds_publisher ON payout_holds (publisher, released_at);

-- Payouts: at most one per partner, currency and payout period, so a second run in the
-- period (on any node, after any crash) pays nothing. `pending` from the moment the money
-- leaves the partner's payable (in the same transaction as this row) until the provider
-- says `paid` or `failed` (a failed payout's money returns to the payable). It settles the
-- partner's ledger entries after `settles_after_seq` up to `settles_through_seq`.
CREATE TABLE payouts (
    id TEXT PRIMARY KEY,
    publisher TEXT NOT NULL,
    currency TEXT NOT NULL,
    period_key TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    status TEXT NOT NULL,
    carried_minor BIGINT NOT NULL,
    settles_after_seq BIGINT NOT NULL,
    settles_through_seq BIGINT NOT NULL,
    provider_reference TEXT,
    failure_reason TEXT,
    claimed_until BIGINT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    UNIQUE (publisher, currency, period_key)
);
CREATE INDEX payouts_status ON payouts (status, claimed_until);
CREATE INDEX payouts_publisher ON payouts (publisher, currency, created_at);

-- Operator adjustments of a partner's balance (a late correction of a closed period shows
-- in the period it is made), each under the operator's idempotency key.
CREATE TABLE adjustments (
    id TEXT PRIMARY KEY,
    publisher TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor <> 0),
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Ledger transactions that move a payout or record an adjustment name it; each payout has
-- one transaction per step (out of the payable, then paid or returned).
ALTER TABLE ledger_transactions ADD COLUMN payout_id TEXT REFERENCES payouts (id);
ALTER TABLE ledger_transactions ADD COLUMN adjustment_id TEXT REFERENCES adjustments (id);
CREATE UNIQUE INDEX ledger_payout_steps ON ledger_transactions (payout_id, kind) WHERE payout_id IS NOT NULL;
CREATE INDEX ledger_transactions_posted ON ledger_transactions (posted_at);
-- The ledger check finds each charge's transactions by it.
CREATE INDEX ledger_transactions_charge ON ledger_transactions (charge_id, kind);
