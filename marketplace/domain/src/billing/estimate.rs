//! Money you can see before the period ends: an install's usage so far in its current
//! billing period, rated by its plan exactly as the billing run will rate it (included
//! units, the cap), and when it is next charged and how much in advance.

use nexus_money::period::{self, Period};
use serde::Serialize;
use sqlx::Row;

use super::money_error;
use super::plans;
use super::run;
use crate::accounts::Caller;
use crate::error::MarketError;
use crate::installs;
use crate::market::Market;

/// `GET /v1/installs/{id}/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageSoFar {
    pub install: String,
    /// The plan revision the install pays.
    pub plan: Option<String>,
    /// The billing period now running (from the anchor, monthly unless the plan is yearly).
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    /// The plan's meter, when it bills usage.
    pub meter: Option<String>,
    /// Units reported since usage was last billed, in this period.
    pub units: u64,
    pub included_units: u64,
    pub billable_units: u64,
    /// What that usage would be charged if the period ended now (the cap applied).
    pub estimate_minor: i64,
    pub currency: Option<String>,
    /// When the install is next billed: a period in advance, or usage in arrears.
    pub next_charge_at: Option<i64>,
    /// The base fee charged in advance then (0 for usage-only plans).
    pub next_period_minor: i64,
}

/// What the install has used this period and would be charged for it; its tenant's and
/// the operators' (the install's own visibility).
pub async fn usage_so_far(market: &Market, caller: &Caller, id: &str) -> Result<UsageSoFar, MarketError> {
    let install = installs::get(market, caller, id).await?;
    let now = market.billing.clock.now_ms();
    let mut out = UsageSoFar {
        install: id.to_string(),
        plan: install.plan_id.clone(),
        period_start: None,
        period_end: None,
        meter: None,
        units: 0,
        included_units: 0,
        billable_units: 0,
        estimate_minor: 0,
        currency: None,
        next_charge_at: None,
        next_period_minor: 0,
    };
    let Some(plan_id) = &install.plan_id else { return Ok(out) };
    if install.status == installs::InstallStatus::Uninstalled {
        return Ok(out);
    }
    let mut conn = market.db.pool.acquire().await?;
    let plan = plans::get_in(&mut conn, &plan_id.parse()?).await?;
    out.currency = plan.currency.clone();
    let row = sqlx::query("SELECT billing_anchor, usage_billed_until, next_bill_at FROM installs WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let anchor: Option<i64> = row.try_get("billing_anchor")?;
    let billed_until: Option<i64> = row.try_get("usage_billed_until")?;
    out.next_charge_at = row.try_get("next_bill_at")?;
    out.next_period_minor = if plan.charges_periods() { plan.price_minor } else { 0 };
    let (Some(anchor), Some(usage)) = (anchor, &plan.usage) else { return Ok(out) };
    out.meter = Some(usage.meter.clone());
    if now < anchor {
        return Ok(out);
    }
    let interval = plan.interval.unwrap_or(period::Interval::Month);
    let (_, current) = period::period_containing(anchor, interval, now).map_err(money_error)?;
    out.period_start = Some(current.start_ms);
    out.period_end = Some(current.end_ms);
    let from = billed_until.unwrap_or(anchor).max(current.start_ms);
    if from >= now {
        return Ok(out);
    }
    let line = run::usage_line(&mut conn, id, &plan, Period { start_ms: from, end_ms: now }).await?;
    out.units = line.detail.units_reported.unwrap_or(0);
    out.included_units = line.detail.units_included.unwrap_or(0);
    out.billable_units = line.detail.units_billable.unwrap_or(0);
    out.estimate_minor = line.amount_minor;
    Ok(out)
}
