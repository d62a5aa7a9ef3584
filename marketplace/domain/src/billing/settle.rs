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

use nexus_money::period::{self, Period};
use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::FromRow;

use super::charges::{self, Billed, ChargeDetail, ChargeStatus, NewCharge};
use super::collect;
use super::ids::{ChargeId, PlanId};
use super::money_error;
use super::plans::{self, PlanModel};
use super::refunds::{self, RefundKind};
use super::run;
use crate::accounts::{Caller, TenantScope};
use crate::error::{MarketError, storage};
use crate::installs::{self, Install};
use crate::market::Market;

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
    let install = installs::get_checked_elsewhere(market, id).await?;
    if install.tenant != tenant.as_str() {
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
    if outstanding.is_empty() {
        // Nothing was owed (a trial), or all of it is paid now.
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
    hex::encode(Sha256::digest(format!("{install}\n{}", request.plan).as_bytes()))
}

/// Moves an install to another plan of its plugin, prorated.
pub async fn change_plan(
    market: &Market,
    caller: &Caller,
    id: &str,
    request: PlanChange,
    key: Option<&str>,
) -> Result<Install, MarketError> {
    let key = key.ok_or_else(|| {
        MarketError::invalid(
            ErrorCode::IdempotencyKeyRequired,
            "a plan change moves money: send an Idempotency-Key header",
        )
    })?;
    let install = own_install(market, caller, id).await?;
    if install.status == installs::InstallStatus::Uninstalled {
        return Err(MarketError::conflict(ErrorCode::Uninstalled, format!("install {id} was uninstalled")));
    }
    let hash = change_hash(id, &request);
    let stored_key = format!("{}:{key}", caller.actor());
    let seen: Option<String> = sqlx::query_scalar("SELECT request_sha256 FROM plan_changes WHERE idempotency_key = $1")
        .bind(&stored_key)
        .fetch_optional(&market.db.pool)
        .await?;
    match seen {
        Some(seen) if seen == hash => return installs::get_checked_elsewhere(market, id).await,
        Some(_) => {
            return Err(MarketError::invalid(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used for another plan change; use a new key",
            ));
        }
        None => {}
    }
    let target = target_of(market, &install, &request).await?;
    let now = market.billing.clock.now_ms();
    // What is due under the old plan is billed first.
    run::bill_install(market, id, now).await?;
    let mut tx = market.db.write_tx().await?;
    let (current, position) = position(&mut tx, market, id, &target, true).await?;
    let effects = decide(&mut tx, id, &current, &target, &position, now).await?;
    let plugin: nexus_registry::PluginId = install.plugin.parse().map_err(nexus_registry::RegistryError::from)?;
    let publisher = plugin.publisher.to_string();
    let old =
        Billed { install: id, tenant: &install.tenant, plugin: &install.plugin, publisher: &publisher, plan: &current };
    let new = Billed { plan: &target, ..old.clone() };
    if let Some(line) = effects.usage_line {
        charges::insert(&mut tx, &old, line, now).await?;
    }
    if let Some((charge, credit)) = &effects.credit {
        let reason = "plan changed: the unused part of the period";
        refunds::refund_in(
            &mut tx,
            market,
            charge,
            *credit,
            RefundKind::ProrationCredit,
            reason,
            &caller.actor(),
            None,
            now,
        )
        .await?;
    }
    for line in effects.new_lines {
        charges::insert(&mut tx, &new, line, now).await?;
    }
    let next_bill_at = [effects.paid_through, effects.usage_billed_until.map(|_| now)].into_iter().flatten().min();
    sqlx::query(
        "UPDATE installs SET plan_id = $2, plan = $3, billing_anchor = $4, paid_through = $5, usage_billed_until = $6, \
         next_bill_at = $7, updated_at = $8 WHERE id = $1",
    )
    .bind(id)
    .bind(&target.id)
    .bind(&target.key)
    .bind(effects.anchor)
    .bind(effects.paid_through)
    .bind(effects.usage_billed_until)
    .bind(next_bill_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO plan_changes (idempotency_key, request_sha256, install_id, from_plan, to_plan, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&stored_key)
    .bind(&hash)
    .bind(id)
    .bind(&current.id)
    .bind(&target.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let detail =
        serde_json::json!({ "from": current.id, "to": target.id, "from_key": current.key, "to_key": target.key });
    crate::audit::record(&mut *tx, &caller.actor(), "install.plan_changed", id, detail).await?;
    // A charge the change made due now is paid before the install runs on the new plan.
    crate::installs::lifecycle::await_payment(&mut tx, id, now).await?;
    tx.commit().await?;
    if let Err(error) = settle_now(market, id, now).await {
        tracing::warn!(install = %id, %error, "charges of the plan change left to the next billing run");
    }
    installs::get_checked_elsewhere(market, id).await
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

/// Where an install stands in its billing when a change starts.
#[derive(sqlx::FromRow)]
struct Position {
    #[sqlx(rename = "billing_anchor")]
    anchor: Option<i64>,
    trial_ends_at: Option<i64>,
    paid_through: Option<i64>,
    usage_billed_until: Option<i64>,
}

/// The install's current plan and billing position, refusing a change to the plan it is on
/// or from no plan at all; `lock` reads the row for update (the change itself).
async fn position(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    id: &str,
    target: &plans::Plan,
    lock: bool,
) -> Result<(plans::Plan, Position), MarketError> {
    let row = sqlx::query_as::<_, PositionRow>(&format!(
        "SELECT plan_id, billing_anchor, trial_ends_at, paid_through, usage_billed_until FROM installs WHERE id = $1{}",
        if lock { market.db.for_update() } else { "" }
    ))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let current_id: String = row.plan_id.ok_or_else(|| {
        MarketError::conflict(
            ErrorCode::NoPlan,
            format!("install {id} has no plan to change from (its plugin offers none)"),
        )
    })?;
    if current_id == target.id {
        return Err(MarketError::conflict(
            ErrorCode::SamePlan,
            format!("install {id} is already on plan {}", target.id),
        ));
    }
    let current = plans::get_in(conn, &current_id.parse()?).await?;
    Ok((current, row.position))
}

/// The columns of the period's charge [`unused_credit`] reads beside its status.
#[derive(sqlx::FromRow)]
struct CreditRow {
    id: String,
    amount_minor: i64,
    refunded_minor: i64,
    period_start: i64,
    period_end: i64,
}

/// A row of [`position`]: the install's plan and its billing position.
#[derive(sqlx::FromRow)]
struct PositionRow {
    plan_id: Option<String>,
    #[sqlx(flatten)]
    position: Position,
}

/// What a plan change does, decided before anything is written: the preview shows it and
/// the change applies it, so what a tenant is shown is what happens.
struct Effects {
    /// Usage so far, billed under the old plan.
    usage_line: Option<NewCharge>,
    /// The unused part of the period's charge, credited back (a refund of that charge).
    credit: Option<(ChargeId, i64)>,
    /// Charged under the new plan at the change: the rest of the period, or a one-time price.
    new_lines: Vec<NewCharge>,
    anchor: i64,
    paid_through: Option<i64>,
    usage_billed_until: Option<i64>,
    /// The new plan's first period starts at the change and is billed at once, in full.
    new_period_now: bool,
}

async fn decide(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    current: &plans::Plan,
    target: &plans::Plan,
    position: &Position,
    now: i64,
) -> Result<Effects, MarketError> {
    let mut anchor = position.anchor.unwrap_or(now);
    // Usage so far, under the old plan.
    let usage_line = match (&current.usage, position.usage_billed_until) {
        (Some(_), Some(from)) if from < now => {
            Some(run::usage_line(conn, id, current, Period { start_ms: from, end_ms: now }).await?)
        }
        _ => None,
    };
    let mut usage_billed_until = target.usage.as_ref().map(|_| now.max(anchor));

    let in_trial = position.trial_ends_at.is_some_and(|ends| ends > now);
    let same_grid = current.charges_periods() && current.interval == target.interval && !in_trial;
    let credit = if !in_trial && current.charges_periods() && position.paid_through.is_some_and(|p| p > now) {
        unused_credit(conn, id, now).await?
    } else {
        None
    };
    let (mut paid_through, mut new_lines, mut new_period_now) = (None, Vec::new(), false);
    if target.charges_periods() {
        if in_trial {
            paid_through = Some(anchor);
        } else if same_grid {
            let (_, period) =
                period::period_containing(anchor, target.interval.unwrap_or(period::Interval::Month), now)
                    .map_err(money_error)?;
            let mut detail = ChargeDetail::of(target);
            detail.price_minor = Some(target.price_minor);
            detail.prorated_of = Some((period.start_ms, period.end_ms));
            let currency = target.currency()?.ok_or_else(|| storage("priced plan without currency"))?;
            new_lines.push(NewCharge {
                line: "proration".into(),
                period: Period { start_ms: now, end_ms: period.end_ms },
                currency,
                amount_minor: period::prorate(target.price_minor, period, now).map_err(money_error)?,
                detail,
            });
            paid_through = Some(period.end_ms);
        } else {
            anchor = now;
            paid_through = Some(now);
            new_period_now = true;
        }
    } else if target.usage.is_some() && !in_trial && !same_grid && !current.charges_periods() && current.usage.is_none()
    {
        anchor = now;
        usage_billed_until = Some(now);
    }
    if target.model == PlanModel::OneTime {
        new_lines.push(run::one_time_line(target, now)?);
    }
    Ok(Effects { usage_line, credit, new_lines, anchor, paid_through, usage_billed_until, new_period_now })
}

/// The unused part of the period charge covering `now` (the tenant paid it in advance), to
/// credit back. A charge not yet collected must be settled first.
async fn unused_credit(
    conn: &mut sqlx::AnyConnection,
    install: &str,
    now: i64,
) -> Result<Option<(ChargeId, i64)>, MarketError> {
    let row = sqlx::query(
        "SELECT id, amount_minor, refunded_minor, status, period_start, period_end FROM charges \
         WHERE install_id = $1 AND line IN ('subscription', 'proration') AND period_start <= $2 AND period_end > $2 \
         ORDER BY period_start DESC LIMIT 1",
    )
    .bind(install)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let credit_row = CreditRow::from_row(&row)?;
    let charge: ChargeId = credit_row.id.parse()?;
    let status = collect::charge_status(&row)?;
    if status == ChargeStatus::NothingDue {
        return Ok(None);
    }
    if status != ChargeStatus::Collected {
        return Err(MarketError::conflict(
            ErrorCode::PaymentOutstanding,
            format!("charge {charge} for this period is {status}: settle it before changing plan"),
        ));
    }
    let period = Period { start_ms: credit_row.period_start, end_ms: credit_row.period_end };
    let (amount, refunded) = (credit_row.amount_minor, credit_row.refunded_minor);
    let credit = period::prorate(amount, period, now).map_err(money_error)?.min(amount - refunded);
    Ok((credit > 0).then_some((charge, credit)))
}

/// `GET /v1/installs/{id}/plan/preview?plan=`: what moving to `plan` would credit and
/// charge now, decided by the same rules the change applies; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanChangePreview {
    pub install: String,
    pub from_plan: String,
    pub to_plan: String,
    /// The currency of the totals: the new plan's (the old plan's when the new one is free).
    pub currency: Option<String>,
    /// Credited back at the change: the unused part of the period already paid.
    pub credited_minor: i64,
    /// Charged at the change: usage so far, the new price for the rest of the period (or a
    /// whole new period from now), a one-time price.
    pub charged_minor: i64,
    /// Each line, credits negative.
    pub lines: Vec<PreviewLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PreviewLine {
    /// `usage:<meter>`, `proration-credit`, `proration`, `subscription` or `one-time`.
    pub line: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// Query of `GET /v1/installs/{id}/plan/preview`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    /// A plan key of the install's plugin, or a plan revision id.
    pub plan: String,
}

pub async fn preview_change(
    market: &Market,
    caller: &Caller,
    id: &str,
    query: PreviewQuery,
) -> Result<PlanChangePreview, MarketError> {
    let install = own_install(market, caller, id).await?;
    if install.status == installs::InstallStatus::Uninstalled {
        return Err(MarketError::conflict(ErrorCode::Uninstalled, format!("install {id} was uninstalled")));
    }
    let target = target_of(market, &install, &PlanChange { plan: query.plan }).await?;
    let now = market.billing.clock.now_ms();
    let mut conn = market.db.pool.acquire().await?;
    let (current, position) = position(&mut conn, market, id, &target, false).await?;
    let effects = decide(&mut conn, id, &current, &target, &position, now).await?;
    let currency = target.currency.clone().or_else(|| current.currency.clone());
    let mut lines: Vec<PreviewLine> = Vec::new();
    let mut push = |line: String, amount_minor: i64, currency: String| {
        if amount_minor != 0 {
            lines.push(PreviewLine { line, amount_minor, currency });
        }
    };
    if let Some(usage) = &effects.usage_line {
        push(usage.line.clone(), usage.amount_minor, usage.currency.to_string());
    }
    if let (Some((_, credit)), Some(code)) = (&effects.credit, &current.currency) {
        push("proration-credit".into(), -credit, code.clone());
    }
    for line in &effects.new_lines {
        push(line.line.clone(), line.amount_minor, line.currency.to_string());
    }
    if let (true, Some(code)) = (effects.new_period_now, &target.currency) {
        push("subscription".into(), target.price_minor, code.clone());
    }
    let in_currency = |l: &&PreviewLine| Some(&l.currency) == currency.as_ref();
    Ok(PlanChangePreview {
        install: id.to_string(),
        from_plan: current.id,
        to_plan: target.id,
        credited_minor: -lines
            .iter()
            .filter(in_currency)
            .filter(|l| l.amount_minor < 0)
            .map(|l| l.amount_minor)
            .sum::<i64>(),
        charged_minor: lines.iter().filter(in_currency).filter(|l| l.amount_minor > 0).map(|l| l.amount_minor).sum(),
        currency,
        lines,
    })
}
