-- Statement lines (`billing/statements.rs`): each row of `partner_entries` (migration 0014)
-- carries the whole line a statement shows, so that a statement reads one index range of the
-- partner's rows with no join to the ledger, its charges or its plans. Written by
-- `rollups::apply` with each posting, checked against the ledger by `ledger verify`.
--
-- Each posting that moved a partner's payable, by ledger order and by time, as its statement
-- line: the transaction (kind and what it records), the charge's plugin, plan and line, what
-- it did to the payable (credit positive), the gross of a sale or refund (cash in, or out as
-- negative) and the fee (charged, or returned as negative).
DROP TABLE partner_entries;
CREATE TABLE partner_entries (
    publisher TEXT NOT NULL,
    currency TEXT NOT NULL,
    seq BIGINT NOT NULL,
    posted_at BIGINT NOT NULL,
    transaction_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    charge_id TEXT,
    refund_id TEXT,
    payout_id TEXT,
    adjustment_id TEXT,
    plugin_id TEXT,
    plan_key TEXT,
    line TEXT,
    amount_minor BIGINT NOT NULL,
    gross_minor BIGINT NOT NULL,
    fee_minor BIGINT NOT NULL,
    PRIMARY KEY (publisher, currency, seq)
);
CREATE INDEX partner_entries_posted ON partner_entries (publisher, currency, posted_at);

-- The lines of the ledger so far: the last statement of `rollups::rebuild` (a unit test
-- checks they are the same). Each (transaction, partner account, currency) once, summed over
-- every entry of the transaction in that currency.
INSERT INTO partner_entries (publisher, currency, seq, posted_at, transaction_id, kind, charge_id,
    refund_id, payout_id, adjustment_id, plugin_id, plan_key, line, amount_minor, gross_minor, fee_minor)
SELECT SUBSTR(x.account, 9, LENGTH(x.account) - 16) AS publisher, x.currency, t.seq, t.posted_at,
    t.id AS transaction_id, t.kind, t.charge_id, t.refund_id, t.payout_id, t.adjustment_id, c.plugin_id,
    pl.plan_key, c.line,
    CAST(SUM(CASE WHEN e.account = x.account THEN -e.amount_minor ELSE 0 END) AS BIGINT) AS amount_minor,
    CAST(SUM(CASE WHEN e.account = 'platform:cash' AND t.kind IN ('collection', 'refund')
        THEN e.amount_minor ELSE 0 END) AS BIGINT) AS gross_minor,
    CAST(SUM(CASE WHEN e.account = 'platform:fee-revenue' THEN -e.amount_minor ELSE 0 END) AS BIGINT) AS fee_minor
FROM (SELECT DISTINCT e.transaction_id, e.account, e.currency FROM ledger_entries e
    WHERE e.account >= 'partner:' AND e.account < 'partner;' AND e.account LIKE '%:payable') AS x
JOIN ledger_transactions t ON t.id = x.transaction_id
JOIN ledger_entries e ON e.transaction_id = x.transaction_id AND e.currency = x.currency
LEFT JOIN charges c ON c.id = t.charge_id LEFT JOIN plans pl ON pl.id = c.plan_id
GROUP BY x.account, x.currency, t.seq, t.posted_at, t.id, t.kind, t.charge_id, t.refund_id, t.payout_id,
    t.adjustment_id, c.plugin_id, pl.plan_key, c.line;
