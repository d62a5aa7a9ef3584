//! Money you can see before the period ends: an install's usage so far in its current
//! billing period, rated by its plan exactly as the billing run will rate it (included
//! units, the cap), and when it is next charged and how much in advance.

use nexus_money::Currency;
use nexus_money::period::{self, Period};
use serde::Serialize;

use super::money_error;
use super::plans;
use super::run;
use crate::accounts::{Caller, TenantId};
use crate::error::MarketError;
use crate::ids::InstallId;
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
    #[schema(value_type = Option<String>, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Option<Currency>,
    /// When the install is next billed: a period in advance, or usage in arrears.
    pub next_charge_at: Option<i64>,
    /// The base fee charged in advance then (0 for usage-only plans).
    pub next_period_minor: i64,
}

/// What the install has used this period and would be charged for it; its tenant's and
/// the operators' (the install's own visibility).
pub async fn usage_so_far(market: &Market, caller: &Caller, id: &InstallId) -> Result<UsageSoFar, MarketError> {
    let install = installs::get(market, caller, id).await?;
    let ended = install.status == installs::InstallStatus::Uninstalled;
    estimate(market, id.as_str(), install.plan_id.as_deref(), ended).await
}

/// `GET /v1/plugins/{publisher}/{name}/usage`: the partner's side of the same figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PluginUsage {
    pub plugin: String,
    /// When the figures were read (the marketplace's billing clock).
    pub as_of: i64,
    /// Every live install of the plugin, oldest first.
    pub installs: Vec<InstallUsage>,
    /// Per currency: the units and what they would be charged if every period ended now.
    pub totals: Vec<UsageTotal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InstallUsage {
    #[schema(value_type = String)]
    pub tenant: TenantId,
    #[serde(flatten)]
    pub usage: UsageSoFar,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageTotal {
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub installs: u64,
    pub units: u64,
    pub billable_units: u64,
    pub estimate_minor: i64,
}

/// What each live install of a plugin has used this period and would be charged for it: the
/// plugin's publisher's and the operators'. Each install is rated exactly as
/// [`usage_so_far`] rates it for its tenant.
pub async fn plugin_usage(
    market: &Market,
    caller: &Caller,
    publisher: &str,
    name: &str,
) -> Result<PluginUsage, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    let plugin = format!("{publisher}/{name}");
    plans::plugin_exists(market, &plugin.parse().map_err(nexus_registry::RegistryError::from)?).await?;
    let rows: Vec<(String, TenantId, Option<String>)> = sqlx::query_as(
        "SELECT id, tenant_id, plan_id FROM installs WHERE plugin_id = $1 AND status <> $2 ORDER BY created_at, id",
    )
    .bind(&plugin)
    .bind(installs::InstallStatus::Uninstalled.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    let mut out =
        PluginUsage { plugin, as_of: market.billing.clock.now_ms(), installs: Vec::new(), totals: Vec::new() };
    for (id, tenant, plan) in rows {
        let usage = estimate(market, &id, plan.as_deref(), false).await?;
        if let Some(currency) = usage.currency {
            let at = match out.totals.iter().position(|t| t.currency == currency) {
                Some(at) => at,
                None => {
                    let zero = UsageTotal { currency, installs: 0, units: 0, billable_units: 0, estimate_minor: 0 };
                    out.totals.push(zero);
                    out.totals.len() - 1
                }
            };
            let total = &mut out.totals[at];
            total.installs += 1;
            total.units += usage.units;
            total.billable_units += usage.billable_units;
            total.estimate_minor = total
                .estimate_minor
                .checked_add(usage.estimate_minor)
                .ok_or(nexus_money::MoneyError::Overflow)
                .map_err(money_error)?;
        }
        out.installs.push(InstallUsage { tenant, usage });
    }
    out.totals.sort_by_key(|t| t.currency);
    Ok(out)
}

/// One install's figures; `ended` (uninstalled) has none.
async fn estimate(market: &Market, id: &str, plan_id: Option<&str>, ended: bool) -> Result<UsageSoFar, MarketError> {
    let now = market.billing.clock.now_ms();
    let mut out = UsageSoFar {
        install: id.to_string(),
        plan: plan_id.map(str::to_string),
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
    let Some(plan_id) = plan_id else { return Ok(out) };
    if ended {
        return Ok(out);
    }
    let mut conn = market.db.pool.acquire().await?;
    let plan = plans::get_in(&mut conn, &plan_id.parse()?).await?;
    out.currency = plan.currency;
    let (anchor, billed_until, next_bill_at): (Option<i64>, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT billing_anchor, usage_billed_until, next_bill_at FROM installs WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    out.next_charge_at = next_bill_at;
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
