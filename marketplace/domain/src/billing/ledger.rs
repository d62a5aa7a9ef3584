//! The ledger's storage: each [`Posting`] (balanced by construction in `nexus-money`) is one
//! row in `ledger_transactions` and its entries, written inside the caller's database
//! transaction so the ledger moves together with the charge or refund it records. Rows are
//! never updated or deleted (triggers refuse it on both backends; on PostgreSQL a deferred
//! constraint trigger also refuses an unbalanced transaction at commit). [`verify`]
//! recomputes every invariant from the entries.

use std::collections::BTreeMap;

use nexus_money::ledger::{Entry, Posting};
use nexus_money::{Currency, Money};
use serde::Serialize;
use sqlx::Row;

use super::ids::{ChargeId, RefundId, TransactionId};
use crate::error::MarketError;
use crate::market::Market;

/// The accounts money moves between. Debits are positive: a tenant's receivable is what it
/// owes (positive), a partner's payable what the platform owes it (negative, a credit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// What a tenant has been charged and not yet paid.
    TenantReceivable(String),
    /// What the platform owes a partner.
    PartnerPayable(String),
    /// Money the platform holds (collected from tenants, not yet paid out).
    PlatformCash,
    /// The platform's revenue share.
    PlatformFeeRevenue,
    /// Sales billed and not yet collected (split when collected).
    PlatformUnsettledSales,
    /// Payouts on their way to partners: out of their payable, not yet confirmed paid.
    PlatformPayoutsInTransit,
    /// What operators' adjustments of partners' balances cost (or returned to) the platform.
    PlatformAdjustments,
}

impl Account {
    pub fn name(&self) -> String {
        match self {
            Self::TenantReceivable(tenant) => format!("tenant:{tenant}:receivable"),
            Self::PartnerPayable(publisher) => format!("partner:{publisher}:payable"),
            Self::PlatformCash => "platform:cash".into(),
            Self::PlatformFeeRevenue => "platform:fee-revenue".into(),
            Self::PlatformUnsettledSales => "platform:unsettled-sales".into(),
            Self::PlatformPayoutsInTransit => "platform:payouts-in-transit".into(),
            Self::PlatformAdjustments => "platform:adjustments".into(),
        }
    }
}

/// Builds a posting from legs, leaving out zero legs.
pub fn posting(currency: Currency, legs: &[(Account, i64)]) -> Result<Posting, MarketError> {
    let entries = legs
        .iter()
        .filter(|(_, minor)| *minor != 0)
        .map(|(account, minor)| Entry { account: account.name(), amount: Money::new(*minor, currency) })
        .collect();
    Posting::new(entries).map_err(super::money_error)
}

/// What a ledger transaction records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A charge billed to a tenant.
    Charge,
    /// A charge collected, and split between the platform and the partner.
    Collection,
    /// A refund (or a downgrade's credit), with the fee it returns.
    Refund,
    /// A payout leaving the partner's payable.
    Payout,
    /// A payout the provider confirmed: it leaves the platform's cash.
    PayoutPaid,
    /// A payout the provider rejected: the money returns to the partner's payable.
    PayoutReturned,
    /// An operator's correction of a partner's balance.
    Adjustment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::Collection => "collection",
            Self::Refund => "refund",
            Self::Payout => "payout",
            Self::PayoutPaid => "payout-paid",
            Self::PayoutReturned => "payout-returned",
            Self::Adjustment => "adjustment",
        }
    }
}

/// A client's idempotency key and the hash of its request, stored with the transaction under
/// a unique constraint: the same key with another request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_sha256: String,
}

/// Everything about a transaction but its entries.
pub struct Head<'a> {
    pub kind: Kind,
    pub charge: Option<&'a ChargeId>,
    pub refund: Option<&'a RefundId>,
    pub payout: Option<&'a str>,
    pub adjustment: Option<&'a str>,
    pub idempotency: Option<&'a IdempotencyKey>,
    pub memo: String,
    pub at: i64,
}

/// Writes `posting` as one transaction on `conn` (inside the caller's database transaction).
pub async fn post(
    conn: &mut sqlx::AnyConnection,
    head: Head<'_>,
    posting: &Posting,
) -> Result<TransactionId, MarketError> {
    let id = TransactionId::random()?;
    sqlx::query(
        "INSERT INTO ledger_transactions (id, kind, charge_id, refund_id, payout_id, adjustment_id, idempotency_key, \
         request_sha256, memo, posted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.as_str())
    .bind(head.kind.as_str())
    .bind(head.charge.map(ChargeId::as_str))
    .bind(head.refund.map(RefundId::as_str))
    .bind(head.payout)
    .bind(head.adjustment)
    .bind(head.idempotency.map(|k| k.key.as_str()))
    .bind(head.idempotency.map(|k| k.request_sha256.as_str()))
    .bind(&head.memo)
    .bind(head.at)
    .execute(&mut *conn)
    .await?;
    // All legs in one statement: one round trip per transaction, whatever its size.
    let values: Vec<String> = (0..posting.entries().len())
        .map(|leg| {
            let n = leg * 3;
            format!("($1, {leg}, ${}, ${}, ${})", n + 2, n + 3, n + 4)
        })
        .collect();
    let sql = format!(
        "INSERT INTO ledger_entries (transaction_id, leg, account, currency, amount_minor) VALUES {}",
        values.join(", ")
    );
    let mut insert = sqlx::query(&sql).bind(id.as_str());
    for entry in posting.entries() {
        insert = insert.bind(&entry.account).bind(entry.amount.currency.code()).bind(entry.amount.minor);
    }
    insert.execute(&mut *conn).await?;
    Ok(id)
}

/// The transaction an idempotency key was stored with: its id, its request hash and the
/// refund or adjustment it recorded.
pub async fn by_idempotency_key(
    conn: &mut sqlx::AnyConnection,
    key: &str,
) -> Result<Option<(TransactionId, String, Option<String>)>, MarketError> {
    let row = sqlx::query(
        "SELECT id, request_sha256, COALESCE(refund_id, adjustment_id) AS recorded FROM ledger_transactions \
         WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok((
            row.try_get::<String, _>("id")?.parse()?,
            row.try_get::<Option<String>, _>("request_sha256")?.unwrap_or_default(),
            row.try_get("recorded")?,
        ))
    })
    .transpose()
}

/// An account's balance in a currency (debits positive).
pub async fn balance(market: &Market, account: &Account, currency: Currency) -> Result<i64, MarketError> {
    let sum: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(amount_minor) AS BIGINT) FROM ledger_entries WHERE account = $1 AND currency = $2",
    )
    .bind(account.name())
    .bind(currency.code())
    .fetch_one(&market.db.pool)
    .await?;
    Ok(sum.unwrap_or(0))
}

/// One transaction with its entries, as `GET /v1/ledger/transactions/...` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerTransaction {
    pub id: String,
    pub kind: String,
    pub charge: Option<String>,
    pub refund: Option<String>,
    pub memo: String,
    pub posted_at: i64,
    pub entries: Vec<LedgerEntry>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    pub account: String,
    pub currency: String,
    pub amount_minor: i64,
}

/// The ledger transactions of one charge (its billing, collection and refunds), in order.
pub async fn of_charge(market: &Market, charge: &ChargeId) -> Result<Vec<LedgerTransaction>, MarketError> {
    let rows = sqlx::query(
        "SELECT t.id, t.kind, t.charge_id, t.refund_id, t.memo, t.posted_at, e.account, e.currency, e.amount_minor \
         FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id \
         WHERE t.charge_id = $1 ORDER BY t.seq, e.leg",
    )
    .bind(charge.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    let mut out: Vec<LedgerTransaction> = Vec::new();
    for row in rows {
        let id: String = row.try_get("id")?;
        if out.last().is_none_or(|t| t.id != id) {
            out.push(LedgerTransaction {
                id,
                kind: row.try_get("kind")?,
                charge: row.try_get("charge_id")?,
                refund: row.try_get("refund_id")?,
                memo: row.try_get("memo")?,
                posted_at: row.try_get("posted_at")?,
                entries: Vec::new(),
            });
        }
        if let Some(last) = out.last_mut() {
            last.entries.push(LedgerEntry {
                account: row.try_get("account")?,
                currency: row.try_get("currency")?,
                amount_minor: row.try_get("amount_minor")?,
            });
        }
    }
    Ok(out)
}

/// What `nexus ledger verify` reports: each invariant, recomputed from the entries and the
/// charges they record, with the first differences found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LedgerReport {
    /// Every check passed.
    pub ok: bool,
    pub transactions: i64,
    pub entries: i64,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// Up to 20 differences, each naming what differs and by how much.
    pub differences: Vec<String>,
}

const MAX_DIFFERENCES: usize = 20;

/// Recomputes every invariant of the ledger.
pub async fn verify(market: &Market) -> Result<LedgerReport, MarketError> {
    let pool = &market.db.pool;
    let mut checks = Vec::new();
    let lines = |rows: Vec<sqlx::any::AnyRow>, describe: &dyn Fn(&sqlx::any::AnyRow) -> Result<String, MarketError>| {
        rows.iter().take(MAX_DIFFERENCES).map(describe).collect::<Result<Vec<_>, _>>()
    };
    let mut check = |name: &'static str, differences: Vec<String>| {
        checks.push(Check { name, ok: differences.is_empty(), differences });
    };

    let rows = sqlx::query(
        "SELECT transaction_id, currency, CAST(SUM(amount_minor) AS BIGINT) AS off FROM ledger_entries \
         GROUP BY transaction_id, currency HAVING SUM(amount_minor) <> 0",
    )
    .fetch_all(pool)
    .await?;
    check(
        "every transaction balances per currency",
        lines(rows, &|r| {
            Ok(format!(
                "{} is off by {} minor units of {}",
                r.try_get::<String, _>("transaction_id")?,
                r.try_get::<i64, _>("off")?,
                r.try_get::<String, _>("currency")?
            ))
        })?,
    );

    let rows = sqlx::query(
        "SELECT t.id, COUNT(e.leg) AS legs FROM ledger_transactions t \
         LEFT JOIN ledger_entries e ON e.transaction_id = t.id GROUP BY t.id HAVING COUNT(e.leg) < 2",
    )
    .fetch_all(pool)
    .await?;
    check(
        "every transaction has at least two entries",
        lines(rows, &|r| {
            Ok(format!("{} has {} entries", r.try_get::<String, _>("id")?, r.try_get::<i64, _>("legs")?))
        })?,
    );

    let rows = sqlx::query(
        "SELECT c.id, c.status FROM charges c WHERE c.amount_minor > 0 AND ( \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.charge_id = c.id AND t.kind = 'charge') <> 1 \
         OR (CASE WHEN c.status = 'collected' THEN 1 ELSE 0 END) <> \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.charge_id = c.id AND t.kind = 'collection'))",
    )
    .fetch_all(pool)
    .await?;
    check(
        "each charge is billed once and, when collected, collected once",
        lines(rows, &|r| {
            Ok(format!(
                "charge {} ({}) has the wrong billing or collection transactions",
                r.try_get::<String, _>("id")?,
                r.try_get::<String, _>("status")?
            ))
        })?,
    );

    let rows = sqlx::query(
        "SELECT c.id, c.amount_minor, x.cash FROM charges c JOIN ( \
         SELECT t.charge_id, CAST(SUM(CASE WHEN e.account = 'platform:cash' THEN e.amount_minor ELSE 0 END) AS BIGINT) AS cash \
         FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id \
         WHERE t.kind = 'collection' GROUP BY t.charge_id) AS x ON x.charge_id = c.id WHERE x.cash <> c.amount_minor",
    )
    .fetch_all(pool)
    .await?;
    check(
        "each collection brought in exactly its charge",
        lines(rows, &|r| {
            Ok(format!(
                "charge {} of {} collected {}",
                r.try_get::<String, _>("id")?,
                r.try_get::<i64, _>("amount_minor")?,
                r.try_get::<i64, _>("cash")?
            ))
        })?,
    );

    // Balances against what the charges and refunds say they should be.
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
    check(
        "tenant, partner, fee and in-transit balances match the charges, refunds, adjustments and payouts",
        compare(&expected, &actual),
    );

    let rows = sqlx::query(
        "SELECT p.id, p.status, \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.payout_id = p.id AND t.kind = 'payout') AS out, \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.payout_id = p.id AND t.kind = 'payout-paid') AS paid, \
         (SELECT COUNT(*) FROM ledger_transactions t WHERE t.payout_id = p.id AND t.kind = 'payout-returned') AS back \
         FROM payouts p",
    )
    .fetch_all(pool)
    .await?;
    let mut differences = Vec::new();
    for r in &rows {
        let (status, out, paid, back): (String, i64, i64, i64) =
            (r.try_get("status")?, r.try_get("out")?, r.try_get("paid")?, r.try_get("back")?);
        let expected = match status.as_str() {
            "pending" => (1, 0, 0),
            "paid" => (1, 1, 0),
            _ => (1, 0, 1),
        };
        if (out, paid, back) != expected {
            differences.push(format!(
                "payout {} ({status}) has {out} payout, {paid} paid and {back} returned transactions",
                r.try_get::<String, _>("id")?
            ));
        }
    }
    differences.truncate(MAX_DIFFERENCES);
    check("each payout left the payable once and was paid or returned at most once", differences);

    let rows = sqlx::query(
        "SELECT c.id, c.amount_minor, c.refunded_minor, c.fee_minor, c.fee_refunded_minor, \
         CAST(COALESCE((SELECT SUM(amount_minor) FROM refunds r WHERE r.charge_id = c.id), 0) AS BIGINT) AS refunds, \
         CAST(COALESCE((SELECT SUM(fee_minor) FROM refunds r WHERE r.charge_id = c.id), 0) AS BIGINT) AS fees \
         FROM charges c WHERE c.refunded_minor > 0 OR EXISTS (SELECT 1 FROM refunds r WHERE r.charge_id = c.id)",
    )
    .fetch_all(pool)
    .await?;
    let mut differences = Vec::new();
    for r in &rows {
        let (amount, refunded, refunds): (i64, i64, i64) =
            (r.try_get("amount_minor")?, r.try_get("refunded_minor")?, r.try_get("refunds")?);
        let (fee, fee_refunded, fees): (Option<i64>, i64, i64) =
            (r.try_get("fee_minor")?, r.try_get("fee_refunded_minor")?, r.try_get("fees")?);
        if refunded != refunds || fee_refunded != fees || refunded > amount || fee_refunded > fee.unwrap_or(0) {
            differences.push(format!(
                "charge {}: amount {amount}, refunded {refunded} (refunds sum {refunds}), fee {fee:?}, fee returned \
                 {fee_refunded} (refunds sum {fees})",
                r.try_get::<String, _>("id")?
            ));
        }
    }
    differences.truncate(MAX_DIFFERENCES);
    check("refunds never exceed their charge or its fee", differences);

    let expected = grouped(
        market,
        "SELECT publisher AS account, currency, CAST(SUM(amount_minor) AS BIGINT) AS minor FROM charges \
         WHERE status = 'collected' GROUP BY publisher, currency",
    )
    .await?;
    let actual =
        grouped(market, "SELECT publisher AS account, currency, lifetime_gross_minor AS minor FROM partner_totals")
            .await?;
    check("each partner's tier position is its lifetime gross collected", compare(&expected, &actual));

    let transactions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_transactions").fetch_one(pool).await?;
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries").fetch_one(pool).await?;
    Ok(LedgerReport { ok: checks.iter().all(|c| c.ok), transactions, entries, checks })
}

type Grouped = BTreeMap<(String, String), i64>;

async fn grouped(market: &Market, sql: &str) -> Result<Grouped, MarketError> {
    let rows = sqlx::query(sql).fetch_all(&market.db.pool).await?;
    let mut out = Grouped::new();
    for row in rows {
        let minor: Option<i64> = row.try_get("minor")?;
        out.insert((row.try_get("account")?, row.try_get("currency")?), minor.unwrap_or(0));
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
