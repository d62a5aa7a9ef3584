//! What each role reads about money: a tenant's bill for a month (its charges and refunds,
//! JSON or CSV) and a partner's sales (gross, fee, share and refunds per plugin, plan and
//! currency) with its balance from the ledger.

use std::collections::BTreeMap;

use nexus_money::{Currency, period};
use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};

use super::charges::{self, Charge};
use crate::accounts::{Caller, TenantId};
use crate::error::MarketError;
use crate::market::Market;
pub use crate::timestamps::iso;

/// A tenant's bill: the charges billed in a calendar month (UTC) and the refunds made in it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Bill {
    #[schema(value_type = String)]
    pub tenant: TenantId,
    /// `YYYY-MM`.
    pub period: String,
    pub lines: Vec<Charge>,
    pub refunds: Vec<super::refunds::Refund>,
    /// Per currency: charged, collected, outstanding, refunded (minor units).
    pub totals: Vec<BillTotal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BillTotal {
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub charged_minor: i64,
    pub collected_minor: i64,
    pub outstanding_minor: i64,
    pub refunded_minor: i64,
}

impl BillTotal {
    fn zero(currency: Currency) -> Self {
        Self { currency, charged_minor: 0, collected_minor: 0, outstanding_minor: 0, refunded_minor: 0 }
    }
}

/// Checks a `YYYY-MM` period that has started.
pub fn month(label: &str, now: i64) -> Result<period::Period, MarketError> {
    let bounds =
        period::parse_month(label).map_err(|e| MarketError::invalid(ErrorCode::InvalidPeriod, e.to_string()))?;
    if bounds.start_ms > now {
        return Err(MarketError::invalid(ErrorCode::FuturePeriod, format!("{label} has not started yet")));
    }
    Ok(bounds)
}

pub async fn bill(market: &Market, caller: &Caller, tenant: Option<&str>, label: &str) -> Result<Bill, MarketError> {
    let tenant = charges::reader_tenant(caller, tenant)?
        .ok_or_else(|| MarketError::invalid(ErrorCode::InvalidQuery, "operators name the tenant: ?tenant=<id>"))?;
    let bounds = month(label, market.billing.clock.now_ms())?;
    let rows = sqlx::query(&format!(
        "SELECT {} FROM charges WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at, id",
        charges::COLUMNS
    ))
    .bind(tenant.as_str())
    .bind(bounds.start_ms)
    .bind(bounds.end_ms)
    .fetch_all(&market.db.pool)
    .await?;
    let lines = rows.iter().map(charges::charge).collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query(&format!(
        "SELECT {} FROM refunds r JOIN charges c ON c.id = r.charge_id \
         WHERE c.tenant_id = $1 AND r.created_at >= $2 AND r.created_at < $3 ORDER BY r.created_at, r.id",
        super::refunds::COLUMNS
    ))
    .bind(tenant.as_str())
    .bind(bounds.start_ms)
    .bind(bounds.end_ms)
    .fetch_all(&market.db.pool)
    .await?;
    let refunds = rows.iter().map(super::refunds::refund_row).collect::<Result<Vec<_>, _>>()?;
    // By code: totals list in the order of their codes.
    let mut totals: BTreeMap<&'static str, BillTotal> = BTreeMap::new();
    for line in &lines {
        let total = totals.entry(line.currency.code()).or_insert_with(|| BillTotal::zero(line.currency));
        total.charged_minor = total.charged_minor.saturating_add(line.amount_minor);
        match line.status {
            charges::ChargeStatus::Collected => total.collected_minor += line.amount_minor,
            charges::ChargeStatus::NothingDue => {}
            _ => total.outstanding_minor += line.amount_minor,
        }
    }
    for refund in &refunds {
        let total = totals.entry(refund.currency.code()).or_insert_with(|| BillTotal::zero(refund.currency));
        total.refunded_minor += refund.amount_minor;
    }
    Ok(Bill { tenant, period: label.to_string(), lines, refunds, totals: totals.into_values().collect() })
}

/// A bill as CSV: one row per charge, then one per refund (negative amounts).
pub fn bill_csv(bill: &Bill) -> String {
    let mut out =
        String::from("kind,id,charge,plugin,plan,line,period_start,period_end,currency,amount,amount_minor,status\n");
    for line in &bill.lines {
        out.push_str(&csv_row(&[
            "charge",
            line.id.as_str(),
            line.id.as_str(),
            &line.plugin,
            &format!("{}@{}", line.detail.plan_key, line.detail.plan_revision),
            &line.line,
            &iso(line.period_start),
            &iso(line.period_end),
            line.currency.code(),
            &decimal(line.amount_minor, line.currency),
            &line.amount_minor.to_string(),
            line.status.as_str(),
        ]));
    }
    for refund in &bill.refunds {
        out.push_str(&csv_row(&[
            &refund.kind,
            refund.id.as_str(),
            &refund.charge,
            "",
            "",
            "",
            "",
            "",
            refund.currency.code(),
            &decimal(-refund.amount_minor, refund.currency),
            &(-refund.amount_minor).to_string(),
            "refunded",
        ]));
    }
    out
}

/// An amount as CSVs write it beside its currency column: decimal in major units, `60.00`,
/// `-12.50`, `3000` (JPY); the minor units as they are beside a code that is no currency.
pub fn decimal(minor: i64, currency: impl TryInto<Currency>) -> String {
    match currency.try_into() {
        Ok(code) => {
            let text = nexus_money::Money::new(minor, code).to_string();
            text.rsplit_once(' ').map_or(text.clone(), |(amount, _)| amount.to_string())
        }
        Err(_) => minor.to_string(),
    }
}

/// `-12`, `-12.50`: a number a spreadsheet reads as one, not a formula.
fn is_decimal_number(field: &str) -> bool {
    let digits = field.strip_prefix('-').unwrap_or(field);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// One CSV row: fields with a comma, quote or line break are quoted (RFC 4180); a field
/// that a spreadsheet would run as a formula is prefixed with `'`.
pub fn csv_row(fields: &[&str]) -> String {
    let mut row = fields
        .iter()
        .map(|field| {
            let safe = if field.starts_with(['=', '+', '@']) || (field.starts_with('-') && !is_decimal_number(field)) {
                format!("'{field}")
            } else {
                (*field).to_string()
            };
            if safe.contains([',', '"', '\n', '\r']) { format!("\"{}\"", safe.replace('"', "\"\"")) } else { safe }
        })
        .collect::<Vec<_>>()
        .join(",");
    row.push('\n');
    row
}

/// A partner's sales of one plugin's plan in one currency, over the period asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SalesRow {
    pub plugin: String,
    pub plan: String,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub charges: i64,
    pub gross_minor: i64,
    pub fee_minor: i64,
    pub share_minor: i64,
    pub refunded_minor: i64,
    pub fee_refunded_minor: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sales {
    pub publisher: String,
    /// `YYYY-MM`, or absent for all time.
    pub period: Option<String>,
    /// Collected charges (by collection time) of each plugin and plan.
    pub rows: Vec<SalesRow>,
    /// What the platform owes the partner now, per currency, from the ledger.
    pub balances: Vec<Balance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Balance {
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub payable_minor: i64,
}

/// One plugin, plan and currency's month rollups, summed (NULL sums read as 0).
#[derive(sqlx::FromRow)]
struct SalesSumRow {
    plugin_id: String,
    plan_key: String,
    currency: String,
    n: Option<i64>,
    gross: Option<i64>,
    fee: Option<i64>,
    refunded: Option<i64>,
    fee_refunded: Option<i64>,
}

impl SalesSumRow {
    fn into_sales_row(self) -> Result<SalesRow, MarketError> {
        let (gross, fee) = (self.gross.unwrap_or(0), self.fee.unwrap_or(0));
        Ok(SalesRow {
            plugin: self.plugin_id,
            plan: self.plan_key,
            currency: super::ledger::stored_currency(&self.currency)?,
            charges: self.n.unwrap_or(0),
            gross_minor: gross,
            fee_minor: fee,
            share_minor: gross - fee,
            refunded_minor: self.refunded.unwrap_or(0),
            fee_refunded_minor: self.fee_refunded.unwrap_or(0),
        })
    }
}

pub async fn sales(
    market: &Market,
    caller: &Caller,
    publisher: &str,
    label: Option<&str>,
) -> Result<Sales, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    super::payouts::known_publisher(market, publisher).await?;
    // Month rows of the rollups: collections by the month they were collected in, with the
    // refunds of those same charges whenever made (what `charges.refunded_minor` sums).
    let (from_day, to_day) = match label {
        Some(label) => {
            let bounds = month(label, market.billing.clock.now_ms())?;
            (bounds.start_ms / super::DAY_MS, bounds.end_ms / super::DAY_MS)
        }
        None => (i64::MIN, i64::MAX),
    };
    let rows = sqlx::query_as::<_, SalesSumRow>(
        "SELECT plugin_id, plan_key, currency, CAST(SUM(collections) AS BIGINT) AS n, \
         CAST(SUM(gross_minor) AS BIGINT) AS gross, CAST(SUM(fees_minor) AS BIGINT) AS fee, \
         CAST(SUM(sold_refunded_minor) AS BIGINT) AS refunded, \
         CAST(SUM(sold_fees_returned_minor) AS BIGINT) AS fee_refunded FROM money_rollups \
         WHERE publisher = $1 AND grain = 'month' AND start_day >= $2 AND start_day < $3 \
         GROUP BY plugin_id, plan_key, currency HAVING SUM(collections) > 0 ORDER BY plugin_id, plan_key, currency",
    )
    .bind(publisher)
    .bind(from_day)
    .bind(to_day)
    .fetch_all(&market.db.pool)
    .await?;
    let rows = rows.into_iter().map(SalesSumRow::into_sales_row).collect::<Result<_, _>>()?;
    let mut balances = Vec::new();
    for code in super::statements::currencies(market, publisher).await? {
        let payable: Option<i64> =
            sqlx::query_scalar("SELECT payable_minor FROM partner_balances WHERE publisher = $1 AND currency = $2")
                .bind(publisher)
                .bind(code.code())
                .fetch_optional(&market.db.pool)
                .await?;
        balances.push(Balance { currency: code, payable_minor: payable.unwrap_or(0) });
    }
    Ok(Sales { publisher: publisher.to_string(), period: label.map(String::from), rows, balances })
}

/// Sales as CSV, one row per plugin, plan and currency.
pub fn sales_csv(sales: &Sales) -> String {
    let mut out = String::from(
        "plugin,plan,currency,charges,gross_minor,fee_minor,share_minor,refunded_minor,fee_refunded_minor,\
         gross,fee,share,refunded\n",
    );
    for row in &sales.rows {
        out.push_str(&csv_row(&[
            &row.plugin,
            &row.plan,
            row.currency.code(),
            &row.charges.to_string(),
            &row.gross_minor.to_string(),
            &row.fee_minor.to_string(),
            &row.share_minor.to_string(),
            &row.refunded_minor.to_string(),
            &row.fee_refunded_minor.to_string(),
            &decimal(row.gross_minor, row.currency),
            &decimal(row.fee_minor, row.currency),
            &decimal(row.share_minor, row.currency),
            &decimal(row.refunded_minor, row.currency),
        ]));
    }
    out
}

/// The marketplace's money so far in one currency, from the ledger (through its rollups): GMV
/// (gross collected, before refunds), refunds, the platform's fees (net of fees returned), what
/// partners earned (net of refunds) and what was paid out to them. A currency appears once
/// something was collected, refunded, adjusted or paid out in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub gmv_minor: i64,
    pub refunded_minor: i64,
    pub fees_minor: i64,
    pub partners_minor: i64,
    /// Confirmed paid out to partners.
    pub paid_out_minor: i64,
}

/// Read from the partners' running totals (`partner_balances`): a few rows per partner
/// however long the ledger, so `/metrics` can ask on every scrape.
pub async fn totals(market: &Market) -> Result<Vec<Totals>, MarketError> {
    let rows = sqlx::query_as::<_, TotalsRow>(
        "SELECT currency, CAST(SUM(gross_minor) AS BIGINT) AS gmv, CAST(SUM(refunded_minor) AS BIGINT) AS refunded, \
         CAST(SUM(fees_minor - fees_returned_minor) AS BIGINT) AS fees, CAST(SUM(earned_minor) AS BIGINT) AS partners, \
         CAST(SUM(paid_out_minor) AS BIGINT) AS paid_out FROM partner_balances GROUP BY currency ORDER BY currency",
    )
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Totals {
                currency: super::ledger::stored_currency(&r.currency)?,
                gmv_minor: r.gmv.unwrap_or(0),
                refunded_minor: r.refunded.unwrap_or(0),
                fees_minor: r.fees.unwrap_or(0),
                partners_minor: r.partners.unwrap_or(0),
                paid_out_minor: r.paid_out.unwrap_or(0),
            })
        })
        .collect()
}

/// One currency's sums over `partner_balances` (a sum over no rows is NULL: read as 0).
#[derive(sqlx::FromRow)]
struct TotalsRow {
    currency: String,
    gmv: Option<i64>,
    refunded: Option<i64>,
    fees: Option<i64>,
    partners: Option<i64>,
    paid_out: Option<i64>,
}

impl Totals {
    /// One line for people: `EUR: GMV 1,234.00, refunds 15.00, fees 12.00, partners 1,207.00`.
    pub fn describe(&self) -> String {
        let money = |minor| nexus_money::Money::new(minor, self.currency).to_string();
        format!(
            "GMV {}, refunds {}, fees {}, partners earned {}, paid out {}",
            money(self.gmv_minor),
            money(self.refunded_minor),
            money(self.fees_minor),
            money(self.partners_minor),
            money(self.paid_out_minor)
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_dates_are_iso_utc_and_amounts_decimal_in_their_currency() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso(1_796_220_309_000), "2026-12-02T14:05:09Z");
        assert_eq!(super::iso(-1000), "1969-12-31T23:59:59Z");
        assert_eq!(super::decimal(6000, "EUR"), "60.00");
        assert_eq!(super::decimal(-1250, "EUR"), "-12.50");
        assert_eq!(super::decimal(3000, "JPY"), "3000");
        assert_eq!(super::decimal(1005, "KWD"), "1.005");
        // Negative amounts stay numbers; what a spreadsheet would run stays text.
        assert_eq!(super::csv_row(&["-12.50", "-3", "-1+1", "=1", "-.5"]), "-12.50,-3,'-1+1,'=1,'-.5\n");
    }
}
