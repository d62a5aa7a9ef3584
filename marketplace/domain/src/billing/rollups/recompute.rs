//! The rollups recomputed from the ledger in SQL, by the rules [`figures`](super::figures)
//! applies to each posting: [`rebuild`] replaces the stored rows with them, [`checks`] (part
//! of `ledger verify`) reports every stored row that differs. Migrations 0014 (the rollups)
//! and 0015 (the statement lines) run the same statements once, over the ledger as it stood.

use std::sync::LazyLock;
use std::time::Instant;

use serde::Serialize;
use sqlx::Row;

use super::{BALANCE_FIGURES, FIGURES, KEY};
use crate::billing::ledger::Check;
use crate::error::MarketError;
use crate::market::Market;

/// An entry on a partner's payable (`partner:<publisher>:payable`), as an index range.
const PAYABLE: &str = "e.account >= 'partner:' AND e.account < 'partner;' AND e.account LIKE '%:payable'";

/// The CTEs up to `day_rows`: every day row the ledger implies, with its figures.
static DAY_ROWS: LazyLock<String> = LazyLock::new(|| {
    let sums = FIGURES.map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}")).join(", ");
    let touched = FIGURES.map(|c| format!("f.{c} <> 0")).join(" OR ");
    format!(
        "per_tx AS (SELECT e.transaction_id, e.currency, \
           MIN(CASE WHEN {PAYABLE} THEN SUBSTR(e.account, 9, LENGTH(e.account) - 16) END) AS payee, \
           SUM(CASE WHEN e.account = 'platform:cash' THEN 1 ELSE 0 END) AS cash_entries, \
           SUM(CASE WHEN e.account = 'platform:cash' THEN e.amount_minor ELSE 0 END) AS cash, \
           SUM(CASE WHEN e.account = 'platform:fee-revenue' THEN e.amount_minor ELSE 0 END) AS fee, \
           SUM(CASE WHEN {PAYABLE} THEN e.amount_minor ELSE 0 END) AS payable \
         FROM ledger_entries e GROUP BY e.transaction_id, e.currency), \
         tx AS (SELECT t.kind, t.posted_at / 86400000 AS day, \
           COALESCE(c.collected_at, t.posted_at) / 86400000 AS sold_day, x.currency, \
           COALESCE(x.payee, c.publisher, p.publisher, '') AS publisher, COALESCE(c.plugin_id, '') AS plugin_id, \
           COALESCE(pl.plan_key, '') AS plan_key, x.cash_entries, x.cash, x.fee, x.payable \
         FROM per_tx x JOIN ledger_transactions t ON t.id = x.transaction_id \
         LEFT JOIN charges c ON c.id = t.charge_id LEFT JOIN plans pl ON pl.id = c.plan_id \
         LEFT JOIN payouts p ON p.id = t.payout_id), \
         figures AS (SELECT * FROM ( \
           SELECT day, currency, publisher, plugin_id, plan_key, \
             CASE WHEN kind = 'collection' THEN cash_entries ELSE 0 END AS collections, \
             CASE WHEN kind = 'collection' THEN cash ELSE 0 END AS gross_minor, \
             CASE WHEN kind = 'collection' THEN -fee ELSE 0 END AS fees_minor, \
             CASE WHEN kind = 'refund' THEN cash_entries ELSE 0 END AS refunds, \
             CASE WHEN kind = 'refund' THEN -cash ELSE 0 END AS refunded_minor, \
             CASE WHEN kind = 'refund' THEN fee ELSE 0 END AS fees_returned_minor, \
             CASE WHEN kind IN ('collection', 'refund') THEN -payable ELSE 0 END AS earned_minor, \
             -payable AS payable_minor, \
             CASE WHEN kind = 'payout-paid' THEN -cash ELSE 0 END AS paid_out_minor, \
             0 AS sold_refunded_minor, 0 AS sold_fees_returned_minor \
           FROM tx \
           UNION ALL \
           SELECT sold_day, currency, publisher, plugin_id, plan_key, 0, 0, 0, 0, 0, 0, 0, 0, 0, -cash, fee \
           FROM tx WHERE kind = 'refund') AS f WHERE {touched}), \
         day_rows AS (SELECT 'day' AS grain, day AS start_day, currency, publisher, plugin_id, plan_key, {sums} \
           FROM figures GROUP BY day, currency, publisher, plugin_id, plan_key)"
    )
});

/// A CTE mapping each day of the day rows to the first day of its month, in integers only
/// (the civil-from-days algorithm; [`month_of_day`](super::month_of_day) in Rust).
const MONTHS: &str = "months AS (SELECT start_day, start_day - (doy - (153 * ((5 * doy + 2) / 153) + 2) / 5) AS month_day \
     FROM (SELECT start_day, doe - (365 * yoe + yoe / 4 - yoe / 100) AS doy \
       FROM (SELECT start_day, doe, (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365 AS yoe \
         FROM (SELECT DISTINCT start_day, start_day + 719468 - ((start_day + 719468) / 146097) * 146097 AS doe \
           FROM money_rollups WHERE grain = 'day') AS a) AS b) AS c)";

/// The month rows the day rows add up to.
static MONTH_ROWS: LazyLock<String> = LazyLock::new(|| {
    let sums = FIGURES.map(|c| format!("CAST(SUM(r.{c}) AS BIGINT) AS {c}")).join(", ");
    format!(
        "SELECT 'month' AS grain, m.month_day AS start_day, r.currency, r.publisher, r.plugin_id, r.plan_key, {sums} \
         FROM money_rollups r JOIN months m ON m.start_day = r.start_day WHERE r.grain = 'day' \
         GROUP BY m.month_day, r.currency, r.publisher, r.plugin_id, r.plan_key"
    )
});

/// The running totals the day rows add up to.
static BALANCE_ROWS: LazyLock<String> = LazyLock::new(|| {
    let sums =
        FIGURES[..BALANCE_FIGURES].iter().map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}")).collect::<Vec<_>>();
    format!(
        "SELECT publisher, currency, {} FROM money_rollups WHERE grain = 'day' GROUP BY publisher, currency",
        sums.join(", ")
    )
});

/// Every posting on a partner's payable as its statement line, from the ledger: each
/// (transaction, partner account, currency) once, summed over every entry of the transaction
/// in that currency (what a statement computed from the entries before it read this index).
static ENTRY_ROWS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT SUBSTR(x.account, 9, LENGTH(x.account) - 16) AS publisher, x.currency, t.seq, t.posted_at, \
         t.id AS transaction_id, t.kind, t.charge_id, t.refund_id, t.payout_id, t.adjustment_id, c.plugin_id, \
         pl.plan_key, c.line, \
         CAST(SUM(CASE WHEN e.account = x.account THEN -e.amount_minor ELSE 0 END) AS BIGINT) AS amount_minor, \
         CAST(SUM(CASE WHEN e.account = 'platform:cash' AND t.kind IN ('collection', 'refund') \
           THEN e.amount_minor ELSE 0 END) AS BIGINT) AS gross_minor, \
         CAST(SUM(CASE WHEN e.account = 'platform:fee-revenue' THEN -e.amount_minor ELSE 0 END) AS BIGINT) AS fee_minor \
         FROM (SELECT DISTINCT e.transaction_id, e.account, e.currency FROM ledger_entries e WHERE {PAYABLE}) AS x \
         JOIN ledger_transactions t ON t.id = x.transaction_id \
         JOIN ledger_entries e ON e.transaction_id = x.transaction_id AND e.currency = x.currency \
         LEFT JOIN charges c ON c.id = t.charge_id LEFT JOIN plans pl ON pl.id = c.plan_id \
         GROUP BY x.account, x.currency, t.seq, t.posted_at, t.id, t.kind, t.charge_id, t.refund_id, t.payout_id, \
         t.adjustment_id, c.plugin_id, pl.plan_key, c.line"
    )
});

/// A statement line's columns: what identifies it, then its figures.
const ENTRY_KEY: [&str; 13] = [
    "publisher",
    "currency",
    "seq",
    "posted_at",
    "transaction_id",
    "kind",
    "charge_id",
    "refund_id",
    "payout_id",
    "adjustment_id",
    "plugin_id",
    "plan_key",
    "line",
];
const ENTRY_FIGURES: [&str; 3] = ["amount_minor", "gross_minor", "fee_minor"];

/// The statements that replace the rollups with the ledger's, in order: the rollups' (also
/// migration 0014's), then the statement lines' (also migration 0015's, the last).
pub fn rebuild_statements() -> Vec<String> {
    let rollup_columns = format!("{}, {}", KEY.join(", "), FIGURES.join(", "));
    let balance_columns = format!("publisher, currency, {}", FIGURES[..BALANCE_FIGURES].join(", "));
    vec![
        format!(
            "WITH {} INSERT INTO money_rollups ({rollup_columns}) SELECT {rollup_columns} FROM day_rows",
            *DAY_ROWS
        ),
        format!("WITH {MONTHS} INSERT INTO money_rollups ({rollup_columns}) {}", *MONTH_ROWS),
        format!("INSERT INTO partner_balances ({balance_columns}) {}", *BALANCE_ROWS),
        format!("INSERT INTO partner_entries ({}, {}) {}", ENTRY_KEY.join(", "), ENTRY_FIGURES.join(", "), *ENTRY_ROWS),
    ]
}

/// What a rebuild wrote.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RebuildReport {
    pub rollup_rows: i64,
    pub balance_rows: i64,
    pub partner_entries: i64,
    /// Rows of `usage_hours`, rebuilt from the invocation rows in the same transaction.
    pub usage_hours: i64,
    pub elapsed_ms: u64,
}

/// Replaces every rollup with what the ledger says, and the usage hours with what the
/// invocation rows say, in one write transaction. On PostgreSQL
/// it first takes the ledger's write lock, so no posting commits between the recomputation
/// and the commit (postings wait for it; readers do not).
pub async fn rebuild(market: &Market) -> Result<RebuildReport, MarketError> {
    let started = Instant::now();
    let mut tx = market.db.write_tx().await?;
    if market.db.backend == nexus_registry::Backend::Postgres {
        sqlx::query("LOCK TABLE ledger_transactions IN EXCLUSIVE MODE").execute(&mut *tx).await?;
    }
    for table in ["money_rollups", "partner_balances", "partner_entries"] {
        sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
    }
    for statement in rebuild_statements() {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    let count = |table: &str| format!("SELECT COUNT(*) FROM {table}");
    let rollup_rows: i64 = sqlx::query_scalar(&count("money_rollups")).fetch_one(&mut *tx).await?;
    let balance_rows: i64 = sqlx::query_scalar(&count("partner_balances")).fetch_one(&mut *tx).await?;
    let partner_entries: i64 = sqlx::query_scalar(&count("partner_entries")).fetch_one(&mut *tx).await?;
    let usage_hours = crate::records::usage_hours::rebuild(&mut tx, market.db.backend).await?;
    tx.commit().await?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(RebuildReport { rollup_rows, balance_rows, partner_entries, usage_hours, elapsed_ms })
}

const MAX_DIFFERENCES: usize = 20;

/// Rows of `expected` less rows of `stored` (both `key…, figure…`), summed per key: the keys
/// where they differ, with by how much (a row absent on one side counts as zeros).
fn reconcile(ctes: &str, expected: &str, stored: &str, key: &[&str], figures: &[&str]) -> String {
    let sums = figures.iter().map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}")).collect::<Vec<_>>();
    let differs = figures.iter().map(|c| format!("SUM({c}) <> 0")).collect::<Vec<_>>();
    let negated = figures.iter().map(|c| format!("-{c} AS {c}")).collect::<Vec<_>>();
    format!(
        "{ctes} SELECT {key}, {sums} FROM (SELECT {key}, {columns} FROM ({expected}) AS expected \
         UNION ALL SELECT {key}, {negated} FROM ({stored}) AS stored) AS diff \
         GROUP BY {key} HAVING {differs} ORDER BY {key} LIMIT {MAX_DIFFERENCES}",
        key = key.join(", "),
        sums = sums.join(", "),
        columns = figures.join(", "),
        negated = negated.join(", "),
        differs = differs.join(" OR "),
    )
}

/// Each row of a reconciliation as a line: its key, then each figure the ledger has more of
/// than the rollup (negative: less). Read by column name with `try_get`, not a `FromRow`
/// struct: each check chooses its key and figure columns at run time (the rollups', the
/// partner balances', the statement index's), so no one struct has them.
async fn differences(market: &Market, sql: &str, key: &[&str], figures: &[&str]) -> Result<Vec<String>, MarketError> {
    let rows = sqlx::query(sql).fetch_all(&market.db.pool).await?;
    rows.iter()
        .map(|row| {
            let mut parts = Vec::new();
            for column in key {
                parts.push(match *column {
                    "start_day" => day_label(row.try_get(*column)?),
                    "seq" | "posted_at" => row.try_get::<i64, _>(*column)?.to_string(),
                    _ => match row.try_get::<Option<String>, _>(*column)? {
                        Some(text) => format!("`{text}`"),
                        None => "-".into(),
                    },
                });
            }
            let deltas = figures
                .iter()
                .map(|c| Ok((*c, row.try_get::<Option<i64>, _>(*c)?.unwrap_or(0))))
                .collect::<Result<Vec<_>, MarketError>>()?
                .into_iter()
                .filter(|(_, delta)| *delta != 0)
                .map(|(c, delta)| format!("{c} {delta:+}"))
                .collect::<Vec<_>>();
            Ok(format!("{}: the ledger says {} against the rollup", parts.join(" "), deltas.join(", ")))
        })
        .collect()
}

fn day_label(day: i64) -> String {
    let (year, month, date) = nexus_money::period::civil(day * crate::billing::DAY_MS);
    format!("{year:04}-{month:02}-{date:02}")
}

/// The rollups' checks for `ledger verify`: each stored figure equals what the entries say.
pub async fn checks(market: &Market) -> Result<Vec<Check>, MarketError> {
    let mut out = Vec::new();
    for check in rollup_reconciliations().into_iter().chain(entry_reconciliations()) {
        let differences = differences(market, &check.sql, &check.key, &check.figures).await?;
        out.push(Check { name: check.name, ok: differences.is_empty(), differences });
    }
    Ok(out)
}

/// One check of [`checks`]: its name, its [`reconcile`] query, and the key and figure
/// columns of that query's rows.
struct Reconciliation {
    name: &'static str,
    sql: String,
    key: Vec<&'static str>,
    figures: Vec<&'static str>,
}

/// The daily and monthly rollups, and the partners' running totals, against the ledger.
fn rollup_reconciliations() -> [Reconciliation; 3] {
    let rollup_key = KEY.to_vec();
    let figure_list = FIGURES.to_vec();
    let balance_figures = FIGURES[..BALANCE_FIGURES].to_vec();
    let stored_days =
        format!("SELECT {}, {} FROM money_rollups WHERE grain = 'day'", KEY.join(", "), FIGURES.join(", "));
    let stored_months =
        format!("SELECT {}, {} FROM money_rollups WHERE grain = 'month'", KEY.join(", "), FIGURES.join(", "));
    let stored_balances = format!("SELECT publisher, currency, {} FROM partner_balances", balance_figures.join(", "));
    let payable_key = vec!["publisher", "currency"];
    [
        Reconciliation {
            name: "the daily money rollups equal the ledger's collections, refunds, fees, payables and payouts",
            sql: reconcile(
                &format!("WITH {}", *DAY_ROWS),
                "SELECT * FROM day_rows",
                &stored_days,
                &rollup_key,
                &figure_list,
            ),
            key: rollup_key.clone(),
            figures: figure_list.clone(),
        },
        Reconciliation {
            name: "the monthly money rollups add up the daily ones",
            sql: reconcile(&format!("WITH {MONTHS}"), &MONTH_ROWS, &stored_months, &rollup_key, &figure_list),
            key: rollup_key,
            figures: figure_list,
        },
        Reconciliation {
            name: "each partner's running totals add up its daily rollups",
            sql: reconcile("", &BALANCE_ROWS, &stored_balances, &payable_key, &balance_figures),
            key: payable_key,
            figures: balance_figures,
        },
    ]
}

/// The partners' statement index and running balances against the ledger.
fn entry_reconciliations() -> [Reconciliation; 2] {
    let entry_key = ENTRY_KEY.to_vec();
    let entry_figures = vec!["amount_minor", "gross_minor", "fee_minor", "postings"];
    let entries = |from: &str| {
        format!("SELECT {}, {}, 1 AS postings FROM ({from}) AS e", ENTRY_KEY.join(", "), ENTRY_FIGURES.join(", "))
    };
    let payable_key = vec!["publisher", "currency"];
    [
        Reconciliation {
            name: "each partner's statement index lists exactly the postings on its payable",
            sql: reconcile(
                "",
                &entries(&ENTRY_ROWS),
                &entries("SELECT * FROM partner_entries"),
                &entry_key,
                &entry_figures,
            ),
            key: entry_key,
            figures: entry_figures,
        },
        Reconciliation {
            name: "each partner's running balance is its payable account's balance",
            sql: reconcile(
                "",
                "SELECT publisher, currency, SUM(amount_minor) AS payable_minor FROM partner_entries \
                 GROUP BY publisher, currency",
                "SELECT publisher, currency, payable_minor FROM partner_balances",
                &payable_key,
                &["payable_minor"],
            ),
            key: payable_key,
            figures: vec!["payable_minor"],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_backfill_with_the_rebuild_statements() {
        let flat = |sql: &str| sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let rollups = flat(include_str!("../../../migrations/common/0014_money_rollups.sql"));
        let lines = flat(include_str!("../../../migrations/common/0015_statement_lines.sql"));
        if std::env::var_os("NEXUS_PRINT_REBUILD").is_some() {
            rebuild_statements().iter().for_each(|s| eprintln!("<<<{s}>>>"));
        }
        let statements = rebuild_statements();
        let (entries, rest) = statements.split_last().unwrap();
        for statement in rest {
            assert!(rollups.contains(&flat(statement)), "migration 0014 lacks: {}", flat(statement));
        }
        assert!(lines.contains(&flat(entries)), "migration 0015 lacks: {}", flat(entries));
    }
}
