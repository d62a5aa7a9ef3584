-- Money rollups (`billing/rollups.rs`): the figures the money reports read, kept beside the
-- ledger and written in the same transaction as the postings that change them, so that a
-- report reads a few rows per partner and period instead of every entry of its window. They
-- are rebuilt from the ledger by `rollups::rebuild` and checked against it by `ledger verify`.
--
-- A posting is rolled up under a partner: the one whose payable it moves, else its charge's
-- publisher, else its payout's ('' for none); and under its charge's plugin and plan ('' for
-- none). Postings that move no cash, fee revenue or payable (a charge billed) are not rolled up.

-- Per UTC day (`grain` 'day', `start_day` = posted_at / 86400000) and per UTC calendar month
-- (`grain` 'month', `start_day` = the month's first day), currency, partner, plugin and plan.
CREATE TABLE money_rollups (
    grain TEXT NOT NULL,
    start_day BIGINT NOT NULL,
    currency TEXT NOT NULL,
    publisher TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    plan_key TEXT NOT NULL,
    -- collections: how many, the cash they brought in (gross) and the fees they paid
    collections BIGINT NOT NULL,
    gross_minor BIGINT NOT NULL,
    fees_minor BIGINT NOT NULL,
    -- refunds and downgrade credits: how many, the cash they returned and the fees back
    refunds BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    fees_returned_minor BIGINT NOT NULL,
    -- the partner's share of collections less the shares refunds took back
    earned_minor BIGINT NOT NULL,
    -- what every posting did to the partner's payable (credit positive)
    payable_minor BIGINT NOT NULL,
    -- payouts the provider confirmed (cash out)
    paid_out_minor BIGINT NOT NULL,
    -- refunds of the charges collected in this day or month, whenever they were made
    sold_refunded_minor BIGINT NOT NULL,
    sold_fees_returned_minor BIGINT NOT NULL,
    PRIMARY KEY (grain, start_day, currency, publisher, plugin_id, plan_key)
);
CREATE INDEX money_rollups_partner ON money_rollups (publisher, currency, grain, start_day);

-- Per partner and currency, the same figures since the first posting: what the payout run
-- and `/metrics` read.
CREATE TABLE partner_balances (
    publisher TEXT NOT NULL,
    currency TEXT NOT NULL,
    collections BIGINT NOT NULL,
    gross_minor BIGINT NOT NULL,
    fees_minor BIGINT NOT NULL,
    refunds BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    fees_returned_minor BIGINT NOT NULL,
    earned_minor BIGINT NOT NULL,
    payable_minor BIGINT NOT NULL,
    paid_out_minor BIGINT NOT NULL,
    PRIMARY KEY (publisher, currency)
);

-- Each posting that moved a partner's payable, with what it did to it (credit positive), by
-- ledger order and by time: statements and payouts find a partner's lines here instead of
-- among all of its entries.
CREATE TABLE partner_entries (
    publisher TEXT NOT NULL,
    currency TEXT NOT NULL,
    seq BIGINT NOT NULL,
    posted_at BIGINT NOT NULL,
    transaction_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    PRIMARY KEY (publisher, currency, seq)
);
CREATE INDEX partner_entries_posted ON partner_entries (publisher, currency, posted_at);

-- The rollups of the ledger so far: the statements of `rollups::rebuild` (a unit test checks
-- they are the same). Day rows from the ledger, month rows from the day rows (each day's
-- first day of its month by the civil-from-days algorithm, in integers), running totals
-- from the day rows, the statement index from the partners' entries.
WITH per_tx AS (SELECT e.transaction_id, e.currency, MIN(CASE WHEN e.account >= 'partner:' AND e.account <
    'partner;' AND e.account LIKE '%:payable' THEN SUBSTR(e.account, 9, LENGTH(e.account) - 16) END) AS
    payee, SUM(CASE WHEN e.account = 'platform:cash' THEN 1 ELSE 0 END) AS cash_entries, SUM(CASE WHEN
    e.account = 'platform:cash' THEN e.amount_minor ELSE 0 END) AS cash, SUM(CASE WHEN e.account =
    'platform:fee-revenue' THEN e.amount_minor ELSE 0 END) AS fee, SUM(CASE WHEN e.account >= 'partner:' AND
    e.account < 'partner;' AND e.account LIKE '%:payable' THEN e.amount_minor ELSE 0 END) AS payable
FROM ledger_entries e
GROUP BY e.transaction_id, e.currency),
tx AS (SELECT t.kind, t.posted_at / 86400000 AS day, COALESCE(c.collected_at, t.posted_at) / 86400000 AS
    sold_day, x.currency, COALESCE(x.payee, c.publisher, p.publisher, '') AS publisher,
    COALESCE(c.plugin_id, '') AS plugin_id, COALESCE(pl.plan_key, '') AS plan_key, x.cash_entries, x.cash,
    x.fee, x.payable
FROM per_tx x JOIN ledger_transactions t ON t.id = x.transaction_id
LEFT JOIN charges c ON c.id = t.charge_id
LEFT JOIN plans pl ON pl.id = c.plan_id
LEFT JOIN payouts p ON p.id = t.payout_id),
figures AS (SELECT *
FROM ( SELECT day, currency, publisher, plugin_id, plan_key,
CASE WHEN kind = 'collection' THEN cash_entries ELSE 0 END AS collections,
CASE WHEN kind = 'collection' THEN cash ELSE 0 END AS gross_minor,
CASE WHEN kind = 'collection' THEN -fee ELSE 0 END AS fees_minor,
CASE WHEN kind = 'refund' THEN cash_entries ELSE 0 END AS refunds,
CASE WHEN kind = 'refund' THEN -cash ELSE 0 END AS refunded_minor,
CASE WHEN kind = 'refund' THEN fee ELSE 0 END AS fees_returned_minor,
CASE WHEN kind IN ('collection', 'refund') THEN -payable ELSE 0 END AS earned_minor, -payable AS
    payable_minor,
CASE WHEN kind = 'payout-paid' THEN -cash ELSE 0 END AS paid_out_minor, 0 AS sold_refunded_minor, 0 AS
    sold_fees_returned_minor
FROM tx
UNION ALL SELECT sold_day, currency, publisher, plugin_id, plan_key, 0, 0, 0, 0, 0, 0, 0, 0, 0, -cash, fee
FROM tx
WHERE kind = 'refund') AS f
WHERE f.collections <> 0 OR f.gross_minor <> 0 OR f.fees_minor <> 0 OR f.refunds <> 0 OR f.refunded_minor <>
    0 OR f.fees_returned_minor <> 0 OR f.earned_minor <> 0 OR f.payable_minor <> 0 OR f.paid_out_minor <> 0
    OR f.sold_refunded_minor <> 0 OR f.sold_fees_returned_minor <> 0),
day_rows AS (SELECT 'day' AS grain, day AS start_day, currency, publisher, plugin_id, plan_key,
    CAST(SUM(collections) AS BIGINT) AS collections, CAST(SUM(gross_minor) AS BIGINT) AS gross_minor,
    CAST(SUM(fees_minor) AS BIGINT) AS fees_minor, CAST(SUM(refunds) AS BIGINT) AS refunds,
    CAST(SUM(refunded_minor) AS BIGINT) AS refunded_minor, CAST(SUM(fees_returned_minor) AS BIGINT) AS
    fees_returned_minor, CAST(SUM(earned_minor) AS BIGINT) AS earned_minor, CAST(SUM(payable_minor) AS
    BIGINT) AS payable_minor, CAST(SUM(paid_out_minor) AS BIGINT) AS paid_out_minor,
    CAST(SUM(sold_refunded_minor) AS BIGINT) AS sold_refunded_minor, CAST(SUM(sold_fees_returned_minor) AS
    BIGINT) AS sold_fees_returned_minor
FROM figures
GROUP BY day, currency, publisher, plugin_id, plan_key)
INSERT INTO money_rollups (grain, start_day, currency, publisher, plugin_id, plan_key, collections,
    gross_minor, fees_minor, refunds, refunded_minor, fees_returned_minor, earned_minor, payable_minor,
    paid_out_minor, sold_refunded_minor, sold_fees_returned_minor) SELECT grain, start_day, currency,
    publisher, plugin_id, plan_key, collections, gross_minor, fees_minor, refunds, refunded_minor,
    fees_returned_minor, earned_minor, payable_minor, paid_out_minor, sold_refunded_minor,
    sold_fees_returned_minor
FROM day_rows;

WITH months AS (SELECT start_day, start_day - (doy - (153 * ((5 * doy + 2) / 153) + 2) / 5) AS month_day
FROM (SELECT start_day, doe - (365 * yoe + yoe / 4 - yoe / 100) AS doy
FROM (SELECT start_day, doe, (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365 AS yoe
FROM (SELECT DISTINCT start_day, start_day + 719468 - ((start_day + 719468) / 146097) * 146097 AS doe
FROM money_rollups
WHERE grain = 'day') AS a) AS b) AS c)
INSERT INTO money_rollups (grain, start_day, currency, publisher, plugin_id, plan_key, collections,
    gross_minor, fees_minor, refunds, refunded_minor, fees_returned_minor, earned_minor, payable_minor,
    paid_out_minor, sold_refunded_minor, sold_fees_returned_minor) SELECT 'month' AS grain, m.month_day AS
    start_day, r.currency, r.publisher, r.plugin_id, r.plan_key, CAST(SUM(r.collections) AS BIGINT) AS
    collections, CAST(SUM(r.gross_minor) AS BIGINT) AS gross_minor, CAST(SUM(r.fees_minor) AS BIGINT) AS
    fees_minor, CAST(SUM(r.refunds) AS BIGINT) AS refunds, CAST(SUM(r.refunded_minor) AS BIGINT) AS
    refunded_minor, CAST(SUM(r.fees_returned_minor) AS BIGINT) AS fees_returned_minor,
    CAST(SUM(r.earned_minor) AS BIGINT) AS earned_minor, CAST(SUM(r.payable_minor) AS BIGINT) AS
    payable_minor, CAST(SUM(r.paid_out_minor) AS BIGINT) AS paid_out_minor, CAST(SUM(r.sold_refunded_minor)
    AS BIGINT) AS sold_refunded_minor, CAST(SUM(r.sold_fees_returned_minor) AS BIGINT) AS
    sold_fees_returned_minor
FROM money_rollups r JOIN months m ON m.start_day = r.start_day
WHERE r.grain = 'day'
GROUP BY m.month_day, r.currency, r.publisher, r.plugin_id, r.plan_key;

INSERT INTO partner_balances (publisher, currency, collections, gross_minor, fees_minor, refunds,
    refunded_minor, fees_returned_minor, earned_minor, payable_minor, paid_out_minor) SELECT publisher,
    currency, CAST(SUM(collections) AS BIGINT) AS collections, CAST(SUM(gross_minor) AS BIGINT) AS
    gross_minor, CAST(SUM(fees_minor) AS BIGINT) AS fees_minor, CAST(SUM(refunds) AS BIGINT) AS refunds,
    CAST(SUM(refunded_minor) AS BIGINT) AS refunded_minor, CAST(SUM(fees_returned_minor) AS BIGINT) AS
    fees_returned_minor, CAST(SUM(earned_minor) AS BIGINT) AS earned_minor, CAST(SUM(payable_minor) AS
    BIGINT) AS payable_minor, CAST(SUM(paid_out_minor) AS BIGINT) AS paid_out_minor
FROM money_rollups
WHERE grain = 'day'
GROUP BY publisher, currency;

INSERT INTO partner_entries (publisher, currency, seq, posted_at, transaction_id, amount_minor) SELECT
    SUBSTR(e.account, 9, LENGTH(e.account) - 16) AS publisher, e.currency, t.seq, t.posted_at, t.id AS
    transaction_id, CAST(-SUM(e.amount_minor) AS BIGINT) AS amount_minor
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
WHERE e.account >= 'partner:' AND e.account < 'partner;' AND e.account LIKE '%:payable'
GROUP BY e.account, e.currency, t.seq, t.posted_at, t.id;
