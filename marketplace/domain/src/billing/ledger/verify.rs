//! `ledger verify`: every invariant recomputed from the entries and the rows they record
//! (charges, refunds, payouts, adjustments, partners' tier positions, the money rollups), and
//! the usage billing reads (`usage_hours` against the invocation rows it sums), each
//! a named check with its first differences. A full pass over the ledger; the report says how
//! long it took.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

pub use crate::checks::Check;
use crate::error::MarketError;
use crate::market::Market;

/// What `nexus ledger verify` reports: each invariant, recomputed from the entries and the
/// charges they record, with the first differences found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerReport {
    /// Every check passed.
    pub ok: bool,
    pub transactions: i64,
    pub entries: i64,
    pub checks: Vec<Check>,
    /// How long the whole check took (it reads every entry).
    pub elapsed_ms: u64,
}

const MAX_DIFFERENCES: usize = 20;

/// Recomputes every invariant of the ledger, and says how long that took.
pub async fn verify(market: &Market) -> Result<LedgerReport, MarketError> {
    let started = Instant::now();
    let mut checks = postings_and_charges(market).await?;
    checks.push(balances(market).await?);
    checks.push(payouts(market).await?);
    checks.push(refunds(market).await?);
    checks.push(tiers(market).await?);
    checks.extend(crate::billing::rollups::checks(market).await?);
    checks.push(crate::records::usage_hours::check(market).await?);
    let pool = &market.db.pool;
    let transactions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transactions").fetch_one(pool).await?;
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries").fetch_one(pool).await?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(LedgerReport { ok: checks.iter().all(|c| c.ok), transactions, entries, checks, elapsed_ms })
}

fn check(name: &'static str, differences: Vec<String>) -> Check {
    Check { name, ok: differences.is_empty(), differences }
}

/// Each row as a line, the first [`MAX_DIFFERENCES`] only.
fn lines<T>(rows: Vec<T>, describe: impl Fn(T) -> String) -> Vec<String> {
    rows.into_iter().take(MAX_DIFFERENCES).map(describe).collect()
}

/// Every transaction balances and has two legs; each charge is billed once, collected at
/// most once, and its collection brought in exactly its amount.
async fn postings_and_charges(market: &Market) -> Result<Vec<Check>, MarketError> {
    let pool = &market.db.pool;
    let mut checks = Vec::new();
    let mut check = |name: &'static str, differences: Vec<String>| checks.push(check(name, differences));

    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT transaction_id, currency, CAST(SUM(amount_minor) AS BIGINT) AS off FROM ledger_entries \
         GROUP BY transaction_id, currency HAVING SUM(amount_minor) <> 0",
    )
    .fetch_all(pool)
    .await?;
    check(
        "every transaction balances per currency",
        lines(rows, |(transaction, currency, off)| format!("{transaction} is off by {off} minor units of {currency}")),
    );

    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT t.id, COUNT(e.leg) AS legs FROM ledger_transactions t \
         LEFT JOIN ledger_entries e ON e.transaction_id = t.id GROUP BY t.id HAVING COUNT(e.leg) < 2",
    )
    .fetch_all(pool)
    .await?;
    check(
        "every transaction has at least two entries",
        lines(rows, |(transaction, legs)| format!("{transaction} has {legs} entries")),
    );

    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.id, c.status FROM charges c WHERE c.amount_minor > 0 AND ( \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.charge_id = c.id AND t.kind = 'charge') <> 1 \
         OR (CASE WHEN c.status = 'collected' THEN 1 ELSE 0 END) <> \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.charge_id = c.id AND t.kind = 'collection'))",
    )
    .fetch_all(pool)
    .await?;
    check(
        "each charge is billed once and, when collected, collected once",
        lines(rows, |(charge, status)| {
            format!("charge {charge} ({status}) has the wrong billing or collection transactions")
        }),
    );

    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT c.id, c.amount_minor, x.cash FROM charges c JOIN ( \
         SELECT t.charge_id, CAST(SUM(CASE WHEN e.account = 'platform:cash' THEN e.amount_minor ELSE 0 END) AS BIGINT) AS cash \
         FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id \
         WHERE t.kind = 'collection' GROUP BY t.charge_id) AS x ON x.charge_id = c.id WHERE x.cash <> c.amount_minor",
    )
    .fetch_all(pool)
    .await?;
    check(
        "each collection brought in exactly its charge",
        lines(rows, |(charge, amount, cash)| format!("charge {charge} of {amount} collected {cash}")),
    );

    Ok(checks)
}

/// Balances against what the charges, refunds, adjustments and payouts say they should be.
async fn balances(market: &Market) -> Result<Check, MarketError> {
    let expected_receivable = grouped(
        market,
        "SELECT 'tenant:' || tenant_id || ':receivable' AS account, currency, CAST(SUM(amount_minor) AS BIGINT) AS minor \
         FROM charges WHERE status IN ('pending', 'collecting', 'failed') GROUP BY tenant_id, currency",
    )
    .await?;
    // A partner's payable: shares of collected charges less refunded shares, plus
    // adjustments, less payouts not returned (a credit, so negative).
    let expected_payable = grouped(
        market,
        "SELECT 'partner:' || publisher || ':payable' AS account, currency, CAST(-SUM(minor) AS BIGINT) AS minor FROM ( \
         SELECT publisher, currency, amount_minor - fee_minor - (refunded_minor - fee_refunded_minor) AS minor \
         FROM charges WHERE status = 'collected' \
         UNION ALL SELECT publisher, currency, amount_minor FROM adjustments \
         UNION ALL SELECT publisher, currency, -amount_minor FROM payouts WHERE status IN ('pending', 'paid') \
         ) AS owed GROUP BY publisher, currency",
    )
    .await?;
    let expected_in_transit = grouped(
        market,
        "SELECT 'platform:payouts-in-transit' AS account, currency, CAST(-SUM(amount_minor) AS BIGINT) AS minor \
         FROM payouts WHERE status = 'pending' GROUP BY currency",
    )
    .await?;
    let expected_fees = grouped(
        market,
        "SELECT 'platform:fee-revenue' AS account, currency, CAST(-SUM(fee_minor - fee_refunded_minor) AS BIGINT) AS minor \
         FROM charges WHERE status = 'collected' GROUP BY currency",
    )
    .await?;
    let actual = grouped(
        market,
        "SELECT account, currency, CAST(SUM(amount_minor) AS BIGINT) AS minor FROM ledger_entries \
         WHERE account LIKE 'tenant:%' OR account LIKE 'partner:%' OR account = 'platform:fee-revenue' \
         OR account = 'platform:payouts-in-transit' GROUP BY account, currency",
    )
    .await?;
    let mut expected = expected_receivable;
    expected.extend(expected_payable);
    expected.extend(expected_fees);
    expected.extend(expected_in_transit);
    Ok(check(
        "tenant, partner, fee and in-transit balances match the charges, refunds, adjustments and payouts",
        compare(&expected, &actual),
    ))
}

async fn payouts(market: &Market) -> Result<Check, MarketError> {
    let rows = sqlx::query_as::<_, PayoutTransactionsRow>(
        "SELECT p.id, p.status, \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.payout_id = p.id AND t.kind = 'payout') AS out, \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.payout_id = p.id AND t.kind = 'payout-paid') AS paid, \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.payout_id = p.id AND t.kind = 'payout-returned') AS back \
         FROM payouts p",
    )
    .fetch_all(&market.db.pool)
    .await?;
    let mut differences = Vec::new();
    for PayoutTransactionsRow { id, status, out, paid, back } in rows {
        let expected = match status.as_str() {
            "pending" => (1, 0, 0),
            "paid" => (1, 1, 0),
            _ => (1, 0, 1),
        };
        if (out, paid, back) != expected {
            differences
                .push(format!("payout {id} ({status}) has {out} payout, {paid} paid and {back} returned transactions"));
        }
    }
    differences.truncate(MAX_DIFFERENCES);
    Ok(check("each payout left the payable once and was paid or returned at most once", differences))
}

/// A payout and how many of each of its ledger transactions there are.
#[derive(sqlx::FromRow)]
struct PayoutTransactionsRow {
    id: String,
    status: String,
    out: i64,
    paid: i64,
    back: i64,
}

async fn refunds(market: &Market) -> Result<Check, MarketError> {
    let rows = sqlx::query_as::<_, RefundedChargeRow>(
        "SELECT c.id, c.amount_minor, c.refunded_minor, c.fee_minor, c.fee_refunded_minor, \
         CAST(COALESCE((SELECT SUM(amount_minor) FROM refunds r WHERE r.charge_id = c.id), 0) AS BIGINT) AS refunds, \
         CAST(COALESCE((SELECT SUM(fee_minor) FROM refunds r WHERE r.charge_id = c.id), 0) AS BIGINT) AS fees \
         FROM charges c WHERE c.refunded_minor > 0 OR EXISTS (SELECT 1 FROM refunds r WHERE r.charge_id = c.id)",
    )
    .fetch_all(&market.db.pool)
    .await?;
    let mut differences = Vec::new();
    for r in rows {
        let (amount, refunded, refunds) = (r.amount_minor, r.refunded_minor, r.refunds);
        let (fee, fee_refunded, fees) = (r.fee_minor, r.fee_refunded_minor, r.fees);
        if refunded != refunds || fee_refunded != fees || refunded > amount || fee_refunded > fee.unwrap_or(0) {
            differences.push(format!(
                "charge {}: amount {amount}, refunded {refunded} (refunds sum {refunds}), fee {fee:?}, fee returned \
                 {fee_refunded} (refunds sum {fees})",
                r.id
            ));
        }
    }
    differences.truncate(MAX_DIFFERENCES);
    Ok(check("refunds never exceed their charge or its fee", differences))
}

/// A charge with refunds, beside what its refund rows sum to.
#[derive(sqlx::FromRow)]
struct RefundedChargeRow {
    id: String,
    amount_minor: i64,
    refunded_minor: i64,
    fee_minor: Option<i64>,
    fee_refunded_minor: i64,
    refunds: i64,
    fees: i64,
}

async fn tiers(market: &Market) -> Result<Check, MarketError> {
    let expected = grouped(
        market,
        "SELECT publisher AS account, currency, CAST(SUM(amount_minor) AS BIGINT) AS minor FROM charges \
         WHERE status = 'collected' GROUP BY publisher, currency",
    )
    .await?;
    let actual =
        grouped(market, "SELECT publisher AS account, currency, lifetime_gross_minor AS minor FROM partner_totals")
            .await?;
    Ok(check("each partner's tier position is its lifetime gross collected", compare(&expected, &actual)))
}

type Grouped = BTreeMap<(String, String), i64>;

async fn grouped(market: &Market, sql: &str) -> Result<Grouped, MarketError> {
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(sql).fetch_all(&market.db.pool).await?;
    let mut out = Grouped::new();
    for (account, currency, minor) in rows {
        out.insert((account, currency), minor.unwrap_or(0));
    }
    Ok(out)
}

/// Differences between two sets of balances (zero and absent are the same).
fn compare(expected: &Grouped, actual: &Grouped) -> Vec<String> {
    let keys: std::collections::BTreeSet<_> = expected.keys().chain(actual.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (want, have) = (expected.get(key).copied().unwrap_or(0), actual.get(key).copied().unwrap_or(0));
            (want != have).then(|| format!("{} in {}: expected {want}, the ledger has {have}", key.0, key.1))
        })
        .take(MAX_DIFFERENCES)
        .collect()
}
