//! Billing runs: what is due up to a moment is charged, then what is charged is collected.
//! `nexus serve` runs one every minute on every node; operators run one by hand
//! (`POST /v1/billing/runs`, `nexus billing run`). Nodes may run at once: each install is
//! billed under its row lock, each charge is unique by what it bills, and each collection
//! attempt is claimed before the provider is called, so every charge happens exactly once.
//!
//! - one-time plans are charged at install;
//! - subscription base fees in advance, at the start of each period (periods anchored at
//!   the install, or at the end of its trial);
//! - usage in arrears, when its period ends (or when the install is uninstalled or changes
//!   plan), from the usage rows of its applied invocations;
//! - installs paused for `payment_failed` are not charged new periods until settled.

mod batch;

use std::collections::BTreeMap;
use std::time::Duration;

use nexus_money::period::Period;
use nexus_registry::Backend;
use nexus_registry::db::process_id;
use serde::{Deserialize, Serialize};

use super::charges::{self, Billed, NewCharge};
use super::collect::{self, Collected};
use super::ids::ChargeId;
use super::plans::{Plan, PlanModel};
use super::schedule;
use crate::accounts::{Caller, TenantId};
use crate::error::{MarketError, storage};
use crate::installs::billing_state;
use crate::market::Market;
use crate::records::usage_hours;
use batch::bill_many;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunReport {
    /// Everything due before this moment was billed.
    pub until: i64,
    pub installs_billed: u64,
    pub charges_created: u64,
    /// Amount charged by currency (minor units).
    pub charged: BTreeMap<String, i64>,
    pub collected: u64,
    pub declined: u64,
    /// Attempts whose outcome is not known yet (resolved by a later run).
    pub unknown: u64,
    /// Installs or charges this run could not handle (logged; the next run tries again):
    /// one install's problem never stops the others' billing.
    pub errors: u64,
}

/// `POST /v1/billing/runs`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Bill up to this moment (ms since the epoch); default now. Never later than now.
    #[serde(default)]
    pub until: Option<i64>,
}

/// Runs billing up to `until` (default now) for an operator.
pub async fn run_for(market: &Market, caller: &Caller, request: RunRequest) -> Result<RunReport, MarketError> {
    caller.require_operator()?;
    let now = market.billing.clock.now_ms();
    let until = request.until.unwrap_or(now);
    if until > now {
        return Err(MarketError::invalid(
            nexus_registry::ErrorCode::FutureBilling,
            format!("until {until} is after now ({now}): nothing is billed ahead of time"),
        ));
    }
    let report = run(market, until).await?;
    let detail = serde_json::to_value(&report).map_err(storage)?;
    crate::audit::record(market.db.writer(), &caller.actor(), "billing.run", "billing", detail).await?;
    Ok(report)
}

/// Installs billed per write transaction: a few hundred make the commit and the round trips
/// per install small, while a transaction (and the rows it locks) stays short.
const INSTALLS_PER_TX: usize = 250;

/// Bills everything due before `until`, then collects what is due. Each batch of installs is
/// billed in one write transaction and each batch of charges claimed in one and concluded in
/// another, so a run killed at any point has committed whole batches: the next run continues
/// from what is still due.
pub async fn run(market: &Market, until: i64) -> Result<RunReport, MarketError> {
    let mut report = RunReport { until, ..RunReport::default() };
    bill_due(market, until, &mut report).await?;
    collect_due(market, until, &mut report).await?;
    Ok(report)
}

/// Bills every install due before `until`, a batch of [`INSTALLS_PER_TX`] at a time.
async fn bill_due(market: &Market, until: i64, report: &mut RunReport) -> Result<(), MarketError> {
    let mut after = String::new();
    loop {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM installs WHERE next_bill_at IS NOT NULL AND next_bill_at <= $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(until)
        .bind(&after)
        .bind(INSTALLS_PER_TX as i64)
        .fetch_all(&market.db.pool)
        .await?;
        for (install, outcome) in bill_batch(market, &due, until).await {
            match outcome {
                Ok(created) => {
                    report.installs_billed += 1;
                    for (currency, amount) in created {
                        report.charges_created += 1;
                        let total = report.charged.entry(currency).or_default();
                        *total = total.saturating_add(amount);
                    }
                }
                Err(error) => {
                    tracing::error!(%install, %error, "install not billed; the next run tries again");
                    report.errors += 1;
                }
            }
        }
        match due.last() {
            Some(last) if due.len() == INSTALLS_PER_TX => after = last.clone(),
            _ => return Ok(()),
        }
    }
}

/// Collects every charge due before `until`, a batch of [`collect::CHARGES_PER_TX`] at a time.
async fn collect_due(market: &Market, until: i64, report: &mut RunReport) -> Result<(), MarketError> {
    // Claims to resolve: expired ones, and on SQLite (one server per file) those of a
    // killed process at once (see `collect::decide`).
    let claims = match market.db.backend {
        Backend::Sqlite => "(claimed_until <= $1 OR claimed_by <> $4)",
        Backend::Postgres => "claimed_until <= $1",
    };
    let sql = format!(
        "SELECT id FROM charges WHERE ((status IN ('pending', 'failed') AND next_attempt_at <= $1) \
         OR (status = 'collecting' AND {claims})) AND id > $2 ORDER BY id LIMIT $3"
    );
    let mut after = String::new();
    loop {
        let query = sqlx::query_scalar(&sql).bind(until).bind(&after).bind(collect::CHARGES_PER_TX as i64);
        let query = match market.db.backend {
            Backend::Sqlite => query.bind(process_id()),
            Backend::Postgres => query,
        };
        let due: Vec<String> = query.fetch_all(&market.db.pool).await?;
        let ids = due.iter().map(|id| id.parse()).collect::<Result<Vec<ChargeId>, _>>()?;
        for (id, outcome) in collect::collect_many(market, &ids, until, false).await {
            match outcome {
                Ok(Collected::Succeeded) => report.collected += 1,
                Ok(Collected::Declined) => report.declined += 1,
                Ok(Collected::Unknown) => report.unknown += 1,
                Ok(Collected::Skipped) => {}
                Err(error) => {
                    tracing::error!(charge = %id, %error, "charge not collected; the next run tries again");
                    report.errors += 1;
                }
            }
        }
        match due.last() {
            Some(last) if due.len() == collect::CHARGES_PER_TX => after = last.clone(),
            _ => return Ok(()),
        }
    }
}

/// What billing one install created: (currency, amount) of each charge, or why it failed.
type Billing = Result<Vec<(String, i64)>, MarketError>;

/// Bills `installs` in one transaction; if that transaction fails, one by one, so that one
/// install's problem never stops the others' billing.
async fn bill_batch(market: &Market, installs: &[String], until: i64) -> Vec<(String, Billing)> {
    match bill_many(market, installs, until).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::warn!(%error, installs = installs.len(), "a batch of installs failed; billing them one by one");
            let mut outcomes = Vec::with_capacity(installs.len());
            for install in installs {
                outcomes.push((install.clone(), bill_install(market, install, until).await));
            }
            outcomes
        }
    }
}

/// Runs billing every `every` until the task is dropped. Errors are logged; the next run
/// picks up where this one stopped.
pub fn keep_billing(market: std::sync::Arc<Market>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = market.billing.clock.now_ms();
            match run(&market, now).await {
                Ok(report) if report.charges_created + report.collected + report.declined > 0 => {
                    tracing::info!(
                        charges = report.charges_created,
                        collected = report.collected,
                        declined = report.declined,
                        "billing run"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "billing run failed; the next one retries"),
            }
        }
    })
}

/// Bills one install up to `until` in one transaction; returns (currency, amount) of each
/// charge created.
pub async fn bill_install(market: &Market, install: &str, until: i64) -> Billing {
    let mut outcomes = bill_many(market, &[install.to_string()], until).await?;
    outcomes.pop().map_or(Ok(Vec::new()), |(_, outcome)| outcome)
}

/// The usage line of one segment: the units of the meter reported by the install's applied
/// invocations that started within it (read as a billing run reads them), rated by the plan.
pub(crate) async fn usage_line(
    conn: &mut sqlx::AnyConnection,
    install: &str,
    plan: &Plan,
    segment: Period,
) -> Result<NewCharge, MarketError> {
    let usage = plan.usage.as_ref().ok_or_else(|| storage(format!("plan {} has no usage terms", plan.id)))?;
    let units = usage_hours::segment_units(conn, &[(install, usage.meter.as_str(), segment)]).await?;
    schedule::rate_usage(plan, segment, units.get(&(install.to_string(), segment.start_ms)).copied().unwrap_or(0))
}

/// The billing of a new install, written in its creating transaction: the plan revision,
/// the anchor, the trial (a tenant's first install of the plugin only; a reinstall keeps
/// what is left of a trial that has not ended), and the one-time charge.
pub async fn start_install(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    install: &str,
    tenant: &TenantId,
    plugin: &str,
    plan: &Plan,
) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut trial_ends_at = None;
    if plan.trial_days > 0 {
        let used: Option<i64> =
            sqlx::query_scalar("SELECT ends_at FROM trials WHERE tenant_id = $1 AND plugin_id = $2")
                .bind(tenant)
                .bind(plugin)
                .fetch_optional(&mut *conn)
                .await?;
        trial_ends_at = match used {
            Some(ends) if ends > now => Some(ends),
            Some(_) => None,
            None => {
                let ends = now + i64::from(plan.trial_days) * super::DAY_MS;
                sqlx::query("INSERT INTO trials (tenant_id, plugin_id, started_at, ends_at) VALUES ($1, $2, $3, $4)")
                    .bind(tenant)
                    .bind(plugin)
                    .bind(now)
                    .bind(ends)
                    .execute(&mut *conn)
                    .await?;
                Some(ends)
            }
        };
    }
    billing_state::save(conn, install, &schedule::start(plan, now, trial_ends_at), &plan.key, None).await?;
    if plan.model == PlanModel::OneTime {
        let publisher = plugin.split('/').next().unwrap_or_default();
        let billed = Billed { install, tenant, plugin, publisher, plan };
        charges::insert(conn, &billed, schedule::one_time_line(plan, now)?, now).await?;
    }
    Ok(())
}
