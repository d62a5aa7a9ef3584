//! Partner statements: per partner, currency and calendar month (UTC), the opening balance,
//! every ledger transaction that moved the partner's payable (sales with their gross and
//! fee, refunds with the fee they returned, adjustments, payouts and returned payouts) and
//! the closing balance. The ledger's figures, so a statement rebuilt gives the same bytes;
//! entries are never changed and are posted at the time they are made, so a closed month's
//! statement never changes (a late correction is an adjustment in the month it is made).
//! opening + sales − fees − refunds + fees returned + adjustments − payouts = closing.
//!
//! A statement reads its month's lines from the partner's statement index and its opening
//! balance from the monthly rollups (`billing/rollups.rs`), both written with the postings
//! and reconciled with the entries by `ledger verify`: it costs the same in a partner's tenth
//! year as in its first.

use nexus_money::Currency;
use nexus_money::period::{self, Period};
use serde::Serialize;

use super::ledger::stored_currency;
use super::money_error;
use super::views::csv_row;
use crate::accounts::Caller;
use crate::error::MarketError;
use crate::market::Market;

/// One ledger transaction on a partner's statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatementLine {
    /// The ledger transaction and its place in the ledger.
    pub transaction: String,
    pub seq: i64,
    pub posted_at: i64,
    /// `collection` (a sale), `refund`, `adjustment`, `payout`, `payout-returned`.
    pub kind: String,
    pub charge: Option<String>,
    pub refund: Option<String>,
    pub payout: Option<String>,
    pub adjustment: Option<String>,
    pub plugin: Option<String>,
    /// The customer: the tenant of the charge a sale or refund is of.
    pub tenant: Option<String>,
    pub plan: Option<String>,
    /// The charge line (`usage:<meter>` lines list their invocations at
    /// `/v1/charges/{charge}/invocations`).
    pub line: Option<String>,
    /// What the tenant paid (a sale) or got back (a refund, negative).
    pub gross_minor: i64,
    /// The platform's fee (a sale), or the fee returned (a refund, negative).
    pub fee_minor: i64,
    /// What it did to the partner's balance.
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Statement {
    pub publisher: String,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    /// `YYYY-MM`.
    pub period: String,
    pub period_start: i64,
    pub period_end: i64,
    /// The month has ended: this statement will never change.
    pub closed: bool,
    pub opening_minor: i64,
    pub sales_minor: i64,
    pub fees_minor: i64,
    pub refunds_minor: i64,
    pub fees_returned_minor: i64,
    pub adjustments_minor: i64,
    pub payouts_minor: i64,
    pub closing_minor: i64,
    pub lines: Vec<StatementLine>,
}

/// Which of a partner's transactions to read.
pub enum Range {
    /// Posted within a period.
    Posted(Period),
    /// Ledger sequence after the first and up to the second.
    Seq(i64, i64),
}

/// The partner's transactions in a currency over `range`, in ledger order, from its statement
/// index (`partner_entries`).
pub async fn lines(
    market: &Market,
    publisher: &str,
    currency: Currency,
    range: Range,
) -> Result<Vec<StatementLine>, MarketError> {
    let (column, from, to) = match range {
        Range::Posted(period) => ("posted_at", period.start_ms, period.end_ms),
        // `seq > after AND seq <= through` as a half-open range.
        Range::Seq(after, through) => ("seq", after + 1, through + 1),
    };
    // Each line was written with the transaction it shows, from its entries and its charge
    // (and `ledger verify` computes it again from them): one index range.
    // The tenant of a sale or refund comes from its charge, by primary key.
    let rows = sqlx::query_as::<_, LineRow>(&format!(
        "SELECT e.seq, e.transaction_id AS id, e.kind, e.charge_id, e.refund_id, e.payout_id, e.adjustment_id, \
         e.posted_at, e.plugin_id, e.line, e.plan_key, e.amount_minor AS amount, e.fee_minor AS fee, \
         e.gross_minor AS gross, c.tenant_id \
         FROM partner_entries e LEFT JOIN charges c ON c.id = e.charge_id \
         WHERE e.publisher = $1 AND e.currency = $2 AND e.{column} >= $3 AND e.{column} < $4 ORDER BY e.seq"
    ))
    .bind(publisher)
    .bind(currency.code())
    .bind(from)
    .bind(to)
    .fetch_all(&market.db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| StatementLine {
            transaction: r.id,
            seq: r.seq,
            posted_at: r.posted_at,
            kind: r.kind,
            charge: r.charge_id,
            refund: r.refund_id,
            payout: r.payout_id,
            adjustment: r.adjustment_id,
            plugin: r.plugin_id,
            tenant: r.tenant_id,
            plan: r.plan_key,
            line: r.line,
            gross_minor: r.gross.unwrap_or(0),
            fee_minor: r.fee.unwrap_or(0),
            amount_minor: r.amount.unwrap_or(0),
        })
        .collect())
}

/// A row of [`lines`]' statement.
#[derive(sqlx::FromRow)]
struct LineRow {
    seq: i64,
    id: String,
    kind: String,
    charge_id: Option<String>,
    refund_id: Option<String>,
    payout_id: Option<String>,
    adjustment_id: Option<String>,
    posted_at: i64,
    plugin_id: Option<String>,
    line: Option<String>,
    plan_key: Option<String>,
    amount: Option<i64>,
    fee: Option<i64>,
    gross: Option<i64>,
    tenant_id: Option<String>,
}

/// The partner's balance in a currency at the start of the UTC month starting at `month_ms`:
/// what the postings of the months before did to its payable, from their monthly rollups.
pub async fn opening(market: &Market, publisher: &str, currency: Currency, month_ms: i64) -> Result<i64, MarketError> {
    let sum: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(payable_minor) AS BIGINT) FROM money_rollups \
         WHERE publisher = $1 AND currency = $2 AND grain = 'month' AND start_day < $3",
    )
    .bind(publisher)
    .bind(currency.code())
    .bind(month_ms.div_euclid(super::DAY_MS))
    .fetch_one(&market.db.pool)
    .await?;
    Ok(sum.unwrap_or(0))
}

/// What the postings of each month did to the partner's payable in a currency, by the
/// month's first day, in order.
async fn monthly_moves(market: &Market, publisher: &str, currency: Currency) -> Result<Vec<(i64, i64)>, MarketError> {
    let rows = sqlx::query_as::<_, (i64, Option<i64>)>(
        "SELECT start_day, CAST(SUM(payable_minor) AS BIGINT) AS moved FROM money_rollups \
         WHERE publisher = $1 AND currency = $2 AND grain = 'month' GROUP BY start_day ORDER BY start_day",
    )
    .bind(publisher)
    .bind(currency.code())
    .fetch_all(&market.db.pool)
    .await?;
    Ok(rows.into_iter().map(|(start_day, moved)| (start_day, moved.unwrap_or(0))).collect())
}

/// The totals of a run of lines, from an opening balance.
pub fn totals(opening: i64, lines: &[StatementLine]) -> Totals {
    let mut t = Totals { opening_minor: opening, ..Totals::default() };
    for line in lines {
        match line.kind.as_str() {
            "collection" => {
                t.sales_minor += line.gross_minor;
                t.fees_minor += line.fee_minor;
            }
            "refund" => {
                t.refunds_minor -= line.gross_minor;
                t.fees_returned_minor -= line.fee_minor;
            }
            "adjustment" => t.adjustments_minor += line.amount_minor,
            _ => t.payouts_minor -= line.amount_minor,
        }
    }
    t.closing_minor = opening + lines.iter().map(|l| l.amount_minor).sum::<i64>();
    t
}

/// What a run of lines adds up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub opening_minor: i64,
    pub sales_minor: i64,
    pub fees_minor: i64,
    pub refunds_minor: i64,
    pub fees_returned_minor: i64,
    pub adjustments_minor: i64,
    pub payouts_minor: i64,
    pub closing_minor: i64,
}

/// The currencies a partner has entries in, in order: one index probe per currency.
pub async fn currencies(market: &Market, publisher: &str) -> Result<Vec<Currency>, MarketError> {
    let mut out: Vec<Currency> = Vec::new();
    loop {
        let after = out.last().map_or("", |c| c.code());
        let next: Option<String> =
            sqlx::query_scalar("SELECT MIN(currency) FROM partner_entries WHERE publisher = $1 AND currency > $2")
                .bind(publisher)
                .bind(after)
                .fetch_one(&market.db.pool)
                .await?;
        match next {
            Some(code) => out.push(stored_currency(&code)?),
            None => return Ok(out),
        }
    }
}

/// The statements of a partner for one month, one per currency it has entries in (or the one
/// asked for).
pub async fn statements(
    market: &Market,
    caller: &Caller,
    publisher: &str,
    label: &str,
    currency: Option<&str>,
) -> Result<Vec<Statement>, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    super::payouts::known_publisher(market, publisher).await?;
    let now = market.billing.clock.now_ms();
    let bounds = super::views::month(label, now)?;
    let codes = match currency {
        Some(code) => vec![Currency::from_code(code).map_err(money_error)?],
        None => currencies(market, publisher).await?,
    };
    let mut out = Vec::new();
    for code in codes {
        let opening = opening(market, publisher, code, bounds.start_ms).await?;
        let lines = lines(market, publisher, code, Range::Posted(bounds)).await?;
        let t = totals(opening, &lines);
        out.push(Statement {
            publisher: publisher.to_string(),
            currency: code,
            period: label.to_string(),
            period_start: bounds.start_ms,
            period_end: bounds.end_ms,
            closed: bounds.end_ms <= now,
            opening_minor: t.opening_minor,
            sales_minor: t.sales_minor,
            fees_minor: t.fees_minor,
            refunds_minor: t.refunds_minor,
            fees_returned_minor: t.fees_returned_minor,
            adjustments_minor: t.adjustments_minor,
            payouts_minor: t.payouts_minor,
            closing_minor: t.closing_minor,
            lines,
        });
    }
    Ok(out)
}

/// One month in the list of a partner's statements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatementSummary {
    pub period: String,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub closed: bool,
    pub opening_minor: i64,
    pub closing_minor: i64,
}

/// Every month with a statement, newest first: from the partner's first entry to now.
pub async fn list(market: &Market, caller: &Caller, publisher: &str) -> Result<Vec<StatementSummary>, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    super::payouts::known_publisher(market, publisher).await?;
    let now = market.billing.clock.now_ms();
    let codes = currencies(market, publisher).await?;
    let mut first: Option<i64> = None;
    let mut moves = Vec::new();
    for code in &codes {
        let earliest: Option<i64> =
            sqlx::query_scalar("SELECT MIN(posted_at) FROM partner_entries WHERE publisher = $1 AND currency = $2")
                .bind(publisher)
                .bind(code.code())
                .fetch_one(&market.db.pool)
                .await?;
        first = first.into_iter().chain(earliest).min();
        moves.push(monthly_moves(market, publisher, *code).await?);
    }
    let Some(first) = first else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    let mut month = period::parse_month(&period::month_label(first)).map_err(money_error)?;
    while month.start_ms <= now {
        let label = period::month_label(month.start_ms);
        let (start_day, end_day) = (month.start_ms / super::DAY_MS, month.end_ms / super::DAY_MS);
        for (code, moves) in codes.iter().zip(&moves) {
            let before = |day: i64| moves.iter().filter(|(start, _)| *start < day).map(|(_, moved)| moved).sum();
            out.push(StatementSummary {
                period: label.clone(),
                currency: *code,
                closed: month.end_ms <= now,
                opening_minor: before(start_day),
                closing_minor: before(end_day),
            });
        }
        month = Period { start_ms: month.end_ms, end_ms: period::add_months(month.end_ms, 1).map_err(money_error)? };
    }
    out.reverse();
    Ok(out)
}

/// The opening or closing row of a statement's CSV: only the balance column is filled.
fn balance_row(s: &Statement, kind: &str, balance: i64) -> String {
    let (minor, decimal) = (balance.to_string(), super::views::decimal(balance, s.currency));
    let mut fields = vec![s.currency.code(), s.period.as_str(), kind];
    fields.extend([""; 12]);
    fields.push(&decimal);
    fields.extend([""; 3]);
    fields.push(&minor);
    csv_row(&fields)
}

/// Statements as CSV: per currency an opening row, one row per line, a closing row.
pub fn csv(statements: &[Statement]) -> String {
    let mut out = String::from(
        "currency,period,kind,transaction,posted_at,plugin,plan,line,charge,refund,payout,adjustment,\
         gross,fee,amount,balance,gross_minor,fee_minor,amount_minor,balance_minor\n",
    );
    for s in statements {
        let decimal = |minor: i64| super::views::decimal(minor, s.currency);
        let mut balance = s.opening_minor;
        out.push_str(&balance_row(s, "opening", s.opening_minor));
        for l in &s.lines {
            balance += l.amount_minor;
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            out.push_str(&csv_row(&[
                s.currency.code(),
                &s.period,
                &l.kind,
                &l.transaction,
                &super::views::iso(l.posted_at),
                &text(&l.plugin),
                &text(&l.plan),
                &text(&l.line),
                &text(&l.charge),
                &text(&l.refund),
                &text(&l.payout),
                &text(&l.adjustment),
                &decimal(l.gross_minor),
                &decimal(l.fee_minor),
                &decimal(l.amount_minor),
                &decimal(balance),
                &l.gross_minor.to_string(),
                &l.fee_minor.to_string(),
                &l.amount_minor.to_string(),
                &balance.to_string(),
            ]));
        }
        out.push_str(&balance_row(s, "closing", s.closing_minor));
    }
    out
}
