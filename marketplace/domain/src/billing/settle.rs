//! A tenant's money actions on an install: changing plan (prorated) and settling failed
//! charges.
//!
//! Proration, as app stores do it: on a change within a period, the unused part of what
//! was charged for the period is credited back (a `proration-credit` refund of that charge)
//! and the new plan's price for the rest of the period is charged (a `proration` line).
//! Shopify's example: $5 → $15 on day 15 of 30 credits $2.50 and charges $7.50, so the
//! upgrade costs $5 more; the downgrade back credits $7.50 and charges $2.50. Usage so far
//! is billed under the old plan at the change. A change during a trial moves no money; a
//! change from a plan without periods (free, one-time, usage only) or to another interval
//! starts a new period at the change. A one-time price is never credited.

use nexus_money::period::Period;
use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};

mod preview;

use super::charges::{self, Billed};
use super::collect;
use super::idempotency::{self, Idempotent, Scope, Seen};
use super::ids::PlanId;
use super::plans;
use super::refunds::{self, RefundKind};
use super::run;
use super::schedule::{self, Change, PaidPeriod};
use crate::accounts::{Caller, TenantScope};
use crate::error::{MarketError, storage};
use crate::installs::billing_state::{self, BillingState};
use crate::installs::{self, Install};
use crate::market::Market;
pub use preview::{PlanChangePreview, PreviewLine, PreviewQuery, preview_change};

/// `PUT /v1/installs/{id}/plan`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    /// A plan key of the install's plugin (its offered revision), or a plan revision id.
    pub plan: String,
}

/// What settling did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SettleReport {
    pub install: String,
    pub collected: Vec<String>,
    /// Charges still not collected (declined again, or their outcome not known yet).
    pub outstanding: Vec<String>,
    pub status: String,
    pub status_reason: Option<String>,
}

/// The calling tenant's own install (with the `installs` scope): changing plan and settling
/// are the tenant's decisions, never an operator's or a partner's.
async fn own_install(market: &Market, caller: &Caller, id: &str) -> Result<Install, MarketError> {
    let tenant = caller.tenant(TenantScope::Installs)?;
    let install = installs::get_checked_elsewhere(market, &id.parse()?).await?;
    if install.tenant != *tenant {
        return Err(MarketError::NotFound(format!("install {id}")));
    }
    Ok(install)
}

/// Bills the install up to `now` and tries to collect each of its open charges at once.
pub async fn settle_now(market: &Market, install: &str, now: i64) -> Result<SettleReport, MarketError> {
    // Billing takes the writer (a write transaction) even when it finds nothing due: ask
    // first, as the billing run does, from the install's `next_bill_at`.
    let next_bill_at: Option<Option<i64>> = sqlx::query_scalar("SELECT next_bill_at FROM installs WHERE id = $1")
        .bind(install)
        .fetch_optional(&market.db.pool)
        .await?;
    if next_bill_at.flatten().is_some_and(|at| at <= now) {
        run::bill_install(market, install, now).await?;
    }
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM charges WHERE install_id = $1 AND status IN ('pending', 'failed', 'collecting') ORDER BY created_at, id",
    )
    .bind(install)
    .fetch_all(&market.db.pool)
    .await?;
    let mut collected = Vec::new();
    for id in &open {
        if collect::collect(market, &id.parse()?, now, true).await? == collect::Collected::Succeeded {
            collected.push(id.clone());
        }
    }
    let outstanding: Vec<String> = open.into_iter().filter(|id| !collected.contains(id)).collect();
    // Nothing was owed (a trial): the install runs. When something was collected, the
    // transaction that recorded the last collection resumed the install already, under the
    // same condition (`run_if_paid`), so the writer is not taken again for it.
    if outstanding.is_empty() && collected.is_empty() {
        let mut tx = market.db.write_tx().await?;
        crate::installs::lifecycle::run_if_paid(&mut tx, install, now).await?;
        tx.commit().await?;
    }
    let (status, status_reason) =
        sqlx::query_as::<_, (String, Option<String>)>("SELECT status, status_reason FROM installs WHERE id = $1")
            .bind(install)
            .fetch_one(&market.db.pool)
            .await?;
    Ok(SettleReport { install: install.to_string(), collected, outstanding, status, status_reason })
}

/// `POST /v1/installs/{id}/settle`: the tenant pays what failed (after updating its payment
/// method); an install paused for payment resumes once nothing is outstanding.
pub async fn settle(market: &Market, caller: &Caller, id: &str) -> Result<SettleReport, MarketError> {
    own_install(market, caller, id).await?;
    let report = settle_now(market, id, market.billing.clock.now_ms()).await?;
    let detail = serde_json::json!({ "collected": report.collected, "outstanding": report.outstanding });
    crate::audit::record(market.db.writer(), &caller.actor(), "install.settled", id, detail).await?;
    Ok(report)
}

fn change_hash(install: &str, request: &PlanChange) -> String {
    idempotency::sha256_hex(&format!("{install}\n{}", request.plan))
}

/// Moves an install to another plan of its plugin, prorated: once per idempotency key, what
/// is due under the old plan billed first, then in one transaction the change decided
/// ([`schedule::plan_change`]) and written.
pub async fn change_plan(
    market: &Market,
    caller: &Caller,
    id: &str,
    request: PlanChange,
    key: Option<&str>,
) -> Result<Install, MarketError> {
    let key = idempotency::required(key, "a plan change moves money: send an Idempotency-Key header")?;
    let install = own_install(market, caller, id).await?;
    if install.status == installs::InstallStatus::Uninstalled {
        return Err(MarketError::conflict(ErrorCode::Uninstalled, format!("install {id} was uninstalled")));
    }
    let idempotent = Idempotent { key: format!("{}:{key}", caller.actor()), request_sha256: change_hash(id, &request) };
    let seen = idempotent.check(&mut *market.db.pool.acquire().await?, Scope::PlanChanges).await?;
    match seen {
        Seen::Fresh => {}
        Seen::Replay(_) => return installs::get_checked_elsewhere(market, &id.parse()?).await,
        Seen::Reused => {
            return Err(idempotency::reused("this Idempotency-Key was used for another plan change; use a new key"));
        }
    }
    let target = target_of(market, &install, &request).await?;
    let now = market.billing.clock.now_ms();
    // What is due under the old plan is billed first.
    run::bill_install(market, id, now).await?;
    let mut tx = market.db.write_tx().await?;
    let (current, state) = current_plan(&mut tx, id, &target, true).await?;
    let change = decide(&mut tx, id, &current, &target, &state, now).await?;
    let plans = Plans { current: &current, target: &target };
    apply(&mut tx, market, &caller.actor(), &install, plans, change, now).await?;
    record_change(&mut tx, &caller.actor(), &idempotent, id, plans, now).await?;
    // A charge the change made due now is paid before the install runs on the new plan.
    crate::installs::lifecycle::await_payment(&mut tx, id, now).await?;
    tx.commit().await?;
    if let Err(error) = settle_now(market, id, now).await {
        tracing::warn!(install = %id, %error, "charges of the plan change left to the next billing run");
    }
    installs::get_checked_elsewhere(market, &id.parse()?).await
}

/// The plan an install changes from and the one it changes to.
#[derive(Clone, Copy)]
struct Plans<'a> {
    current: &'a plans::Plan,
    target: &'a plans::Plan,
}

/// Writes a decided change: usage so far charged under the old plan, the credit refunded,
/// the new plan's lines charged, the install's new billing state saved.
async fn apply(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    actor: &str,
    install: &Install,
    plans: Plans<'_>,
    change: Change,
    now: i64,
) -> Result<(), MarketError> {
    let plugin: nexus_registry::PluginId = install.plugin.parse().map_err(nexus_registry::RegistryError::from)?;
    let publisher = plugin.publisher.to_string();
    let id = install.id.as_str();
    let old = Billed {
        install: id,
        tenant: &install.tenant,
        plugin: &install.plugin,
        publisher: &publisher,
        plan: plans.current,
    };
    let new = Billed { plan: plans.target, ..old.clone() };
    if let Some(line) = change.usage_line {
        charges::insert(conn, &old, line, now).await?;
    }
    if let Some((charge, credit)) = &change.credit {
        let reason = "plan changed: the unused part of the period";
        refunds::refund_in(conn, market, charge, *credit, RefundKind::ProrationCredit, reason, actor, None, now)
            .await?;
    }
    for line in change.new_lines {
        charges::insert(conn, &new, line, now).await?;
    }
    billing_state::save(conn, id, &change.state, &plans.target.key, Some(now)).await
}

/// Records the change under its idempotency key, and in the audit log.
async fn record_change(
    conn: &mut sqlx::AnyConnection,
    actor: &str,
    idempotent: &Idempotent,
    id: &str,
    Plans { current, target }: Plans<'_>,
    now: i64,
) -> Result<(), MarketError> {
    sqlx::query(
        "INSERT INTO plan_changes (idempotency_key, request_sha256, install_id, from_plan, to_plan, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&idempotent.key)
    .bind(&idempotent.request_sha256)
    .bind(id)
    .bind(&current.id)
    .bind(&target.id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let detail =
        serde_json::json!({ "from": current.id, "to": target.id, "from_key": current.key, "to_key": target.key });
    crate::audit::record(&mut *conn, actor, "install.plan_changed", id, detail).await
}

/// The offered plan (or revision) a change asks for, of the install's own plugin.
async fn target_of(market: &Market, install: &Install, request: &PlanChange) -> Result<plans::Plan, MarketError> {
    if request.plan.starts_with(PlanId::PREFIX) {
        let plan = plans::get(market, &request.plan.parse()?).await?;
        if plan.plugin != install.plugin {
            return Err(MarketError::invalid(
                ErrorCode::PlanOfAnotherPlugin,
                format!("plan {} belongs to {}, not to {}", plan.id, plan.plugin, install.plugin),
            ));
        }
        if plan.retired_at.is_some() {
            return Err(MarketError::invalid(ErrorCode::PlanRetired, format!("plan {} is no longer offered", plan.id)));
        }
        Ok(plan)
    } else {
        let plugin: nexus_registry::PluginId = install.plugin.parse().map_err(nexus_registry::RegistryError::from)?;
        plans::choose(market, &plugin, Some(&request.plan)).await
    }
}

/// The install's current plan and billing state, refusing a change to the plan it is on or
/// from no plan at all; `lock` reads the row for update (the change itself).
async fn current_plan(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    target: &plans::Plan,
    lock: bool,
) -> Result<(plans::Plan, BillingState), MarketError> {
    let state = if lock { billing_state::lock(conn, id).await? } else { billing_state::load(conn, id).await? };
    let current_id = state.plan_id.as_deref().ok_or_else(|| {
        MarketError::conflict(
            ErrorCode::NoPlan,
            format!("install {id} has no plan to change from (its plugin offers none)"),
        )
    })?;
    if target.id == *current_id {
        return Err(MarketError::conflict(
            ErrorCode::SamePlan,
            format!("install {id} is already on plan {}", target.id),
        ));
    }
    let current = plans::get_in(conn, &current_id.parse()?).await?;
    Ok((current, state))
}

/// Reads what a change decides from (usage so far, the paid period's charge) and decides it.
async fn decide(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    current: &plans::Plan,
    target: &plans::Plan,
    state: &BillingState,
    now: i64,
) -> Result<Change, MarketError> {
    let usage_line = match schedule::usage_before_change(current, state, now) {
        Some(segment) => Some(run::usage_line(conn, id, current, segment).await?),
        None => None,
    };
    let credit = match schedule::credits_paid_period(current, state, now) {
        true => match paid_period(conn, id, now).await? {
            Some(charge) => schedule::unused_credit(&charge, now)?,
            None => None,
        },
        false => None,
    };
    schedule::plan_change(current, target, state, now, usage_line, credit)
}

/// The columns of the period's charge [`paid_period`] reads.
#[derive(sqlx::FromRow)]
struct PaidRow {
    id: String,
    amount_minor: i64,
    refunded_minor: i64,
    status: String,
    period_start: i64,
    period_end: i64,
}

/// The period charge covering `now`, if any.
async fn paid_period(
    conn: &mut sqlx::AnyConnection,
    install: &str,
    now: i64,
) -> Result<Option<PaidPeriod>, MarketError> {
    let row = sqlx::query_as::<_, PaidRow>(
        "SELECT id, amount_minor, refunded_minor, status, period_start, period_end FROM charges \
         WHERE install_id = $1 AND line IN ('subscription', 'proration') AND period_start <= $2 AND period_end > $2 \
         ORDER BY period_start DESC LIMIT 1",
    )
    .bind(install)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(PaidPeriod {
        id: row.id.parse()?,
        status: row.status.parse().map_err(|_| storage("stored charge status"))?,
        amount_minor: row.amount_minor,
        refunded_minor: row.refunded_minor,
        period: Period { start_ms: row.period_start, end_ms: row.period_end },
    }))
}
