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

use nexus_registry::db::backend_of;
use std::collections::BTreeMap;
use std::time::Duration;

use nexus_money::period::{self, Interval, Period};
use nexus_registry::Backend;
use nexus_registry::db::process_id;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::charges::{self, Billed, ChargeDetail, NewCharge};
use super::collect::{self, Collected};
use super::ids::ChargeId;
use super::money_error;
use super::plans::{self, Plan, PlanModel};
use crate::accounts::Caller;
use crate::error::{MarketError, storage};
use crate::installs::{InstallStatus, PauseCause};
use crate::market::Market;
use crate::records::usage_hours;

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
            _ => break,
        }
    }
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
            _ => break,
        }
    }
    Ok(report)
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

/// An install's billing state, read under its row lock.
struct State {
    tenant: String,
    plugin: String,
    publisher: String,
    status: InstallStatus,
    paused_for: Option<PauseCause>,
    anchor: i64,
    paid_through: Option<i64>,
    usage_billed_until: Option<i64>,
    uninstalled_at: Option<i64>,
}

/// Locks the rows of `installs` (on PostgreSQL, in id order, so that two batches never wait
/// for each other in a cycle) and reads their billing state and plan id: installs without a
/// plan (or gone) are left out.
async fn lock_states(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    installs: &[String],
) -> Result<Vec<(String, State, String)>, MarketError> {
    let mut ids: Vec<&str> = installs.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(INSTALLS_PER_TX) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = backend_of(conn).positional(format!(
            "SELECT id, tenant_id, plugin_id, plan_id, status, paused_for, billing_anchor, paid_through, \
             usage_billed_until, uninstalled_at FROM installs WHERE id IN ({}) ORDER BY id{}",
            placeholders.join(", "),
            market.db.for_update()
        ));
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let Some(plan_id) = row.try_get::<Option<String>, _>("plan_id")? else { continue };
            let plugin: String = row.try_get("plugin_id")?;
            let state = State {
                tenant: row.try_get("tenant_id")?,
                publisher: plugin.split('/').next().unwrap_or_default().to_string(),
                plugin,
                status: InstallStatus::stored(&row.try_get::<String, _>("status")?)?,
                paused_for: row
                    .try_get::<Option<String>, _>("paused_for")?
                    .as_deref()
                    .map(PauseCause::stored)
                    .transpose()?,
                anchor: row.try_get::<Option<i64>, _>("billing_anchor")?.unwrap_or(0),
                paid_through: row.try_get("paid_through")?,
                usage_billed_until: row.try_get("usage_billed_until")?,
                uninstalled_at: row.try_get("uninstalled_at")?,
            };
            out.push((row.try_get("id")?, state, plan_id));
        }
    }
    Ok(out)
}

fn interval(plan: &Plan) -> Interval {
    plan.interval.unwrap_or(Interval::Month)
}

impl State {
    fn live(&self) -> bool {
        self.status != InstallStatus::Uninstalled && self.uninstalled_at.is_none()
    }

    fn paused_for_payment(&self) -> bool {
        self.status == InstallStatus::Paused && self.paused_for == Some(PauseCause::Payment)
    }

    /// The next usage segment: from where usage was billed to the end of its period (or
    /// the uninstall).
    fn usage_segment(&self, plan: &Plan) -> Result<Option<Period>, MarketError> {
        let (Some(_), Some(from)) = (&plan.usage, self.usage_billed_until) else { return Ok(None) };
        if self.uninstalled_at.is_some_and(|end| from >= end) {
            return Ok(None);
        }
        let (_, period) =
            period::period_containing(self.anchor, interval(plan), from.max(self.anchor)).map_err(money_error)?;
        let end = self.uninstalled_at.map_or(period.end_ms, |at| at.min(period.end_ms));
        Ok(Some(Period { start_ms: from, end_ms: end }))
    }

    /// When something is next due, given what is billed.
    fn next_bill_at(&self, plan: &Plan) -> Result<Option<i64>, MarketError> {
        let subscription = match self.paid_through {
            Some(at) if plan.charges_periods() && self.live() && !self.paused_for_payment() => Some(at),
            _ => None,
        };
        let usage = self.usage_segment(plan)?.map(|p| p.end_ms);
        Ok([subscription, usage].into_iter().flatten().min())
    }
}

/// Bills one install up to `until` in one transaction; returns (currency, amount) of each
/// charge created.
pub async fn bill_install(market: &Market, install: &str, until: i64) -> Billing {
    let mut outcomes = bill_many(market, &[install.to_string()], until).await?;
    outcomes.pop().map_or(Ok(Vec::new()), |(_, outcome)| outcome)
}

/// One line an install owes: ready, or a usage segment waiting for its units.
enum Line {
    Ready(Box<NewCharge>),
    Usage(Period),
}

/// What an install owes up to `until`, in the order it is billed, and its state after.
struct Owed {
    lines: Vec<Line>,
    state: State,
    next_bill_at: Option<i64>,
}

/// The lines an install in `state` owes up to `until`: subscription periods in advance,
/// usage segments that ended. Pure: the usage segments are rated once their units are read.
fn owed(mut state: State, plan: &Plan, until: i64) -> Result<Owed, MarketError> {
    let currency = plan.currency()?;
    let mut lines = Vec::new();
    for _ in 0..10_000 {
        let mut progressed = false;
        if let (Some(from), Some(currency)) = (state.paid_through, currency)
            && plan.charges_periods()
            && state.live()
            && !state.paused_for_payment()
            && from <= until
        {
            let (_, period) =
                period::period_containing(state.anchor, interval(plan), from.max(state.anchor)).map_err(money_error)?;
            let amount = period::prorate(plan.price_minor, period, from).map_err(money_error)?;
            let mut detail = ChargeDetail::of(plan);
            detail.price_minor = Some(plan.price_minor);
            if from != period.start_ms {
                detail.prorated_of = Some((period.start_ms, period.end_ms));
            }
            lines.push(Line::Ready(Box::new(NewCharge {
                line: "subscription".into(),
                period: Period { start_ms: from, end_ms: period.end_ms },
                currency,
                amount_minor: amount,
                detail,
            })));
            state.paid_through = Some(period.end_ms);
            progressed = true;
        }
        if let Some(segment) = state.usage_segment(plan)?
            && segment.end_ms <= until
        {
            lines.push(Line::Usage(segment));
            state.usage_billed_until = Some(segment.end_ms);
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    let next_bill_at = state.next_bill_at(plan)?;
    Ok(Owed { lines, state, next_bill_at })
}

/// Bills `installs` up to `until` in one write transaction: their rows locked, what each owes
/// computed, the usage of every segment summed in a few statements, the charges and their
/// ledger transactions written in multi-row statements, the installs' billing state updated
/// in one. Per install (in id order), what it created, or why it could not be billed (then
/// nothing of it is written); an error of the transaction itself writes nothing at all.
async fn bill_many(market: &Market, installs: &[String], until: i64) -> Result<Vec<(String, Billing)>, MarketError> {
    if installs.is_empty() {
        return Ok(Vec::new());
    }
    let now = until;
    let mut tx = market.db.write_tx().await?;
    let states = lock_states(&mut tx, market, installs).await?;
    let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
    for (_, _, plan_id) in &states {
        if !plans.contains_key(plan_id) {
            let plan = plans::get_in(&mut tx, &plan_id.parse()?).await?;
            plans.insert(plan_id.clone(), plan);
        }
    }
    let mut outcomes: BTreeMap<String, Billing> = installs.iter().map(|id| (id.clone(), Ok(Vec::new()))).collect();
    let mut due = Vec::with_capacity(states.len());
    for (install, state, plan_id) in states {
        let plan = plans.get(&plan_id).ok_or_else(|| storage(format!("plan {plan_id} was not read")))?;
        match owed(state, plan, until) {
            Ok(owed) => due.push((install, plan, owed)),
            Err(error) => {
                outcomes.insert(install, Err(error));
            }
        }
    }
    let segments: Vec<(&str, &str, Period)> = due
        .iter()
        .flat_map(|(install, plan, owed)| {
            let meter = plan.usage.as_ref().map_or("", |usage| usage.meter.as_str());
            owed.lines.iter().filter_map(move |line| match line {
                Line::Usage(segment) => Some((install.as_str(), meter, *segment)),
                Line::Ready(_) => None,
            })
        })
        .collect();
    let units = usage_hours::segment_units(&mut tx, &segments).await?;

    // Rated lines per install; an install whose usage cannot be rated is left as it was.
    let mut owners = Vec::new();
    let mut rated_lines = Vec::new();
    for (install, plan, owed) in due {
        let rated: Result<Vec<NewCharge>, MarketError> = owed
            .lines
            .into_iter()
            .map(|line| match line {
                Line::Ready(charge) => Ok(*charge),
                Line::Usage(segment) => {
                    let reported = units.get(&(install.clone(), segment.start_ms)).copied().unwrap_or(0);
                    rate_usage(plan, segment, reported)
                }
            })
            .collect();
        match rated {
            Ok(lines) => {
                rated_lines.extend(lines.into_iter().map(|line| (owners.len(), line)));
                owners.push(Progress { install, state: owed.state, plan, next_bill_at: owed.next_bill_at });
            }
            Err(error) => {
                outcomes.insert(install, Err(error));
            }
        }
    }
    let lines: Vec<(Billed, NewCharge)> = rated_lines
        .into_iter()
        .map(|(owner, line)| {
            let Progress { install, state, plan, .. } = &owners[owner];
            let billed =
                Billed { install, tenant: &state.tenant, plugin: &state.plugin, publisher: &state.publisher, plan };
            (billed, line)
        })
        .collect();
    let written = charges::insert_many(&mut tx, &lines, now).await?;
    for ((billed, line), id) in lines.iter().zip(&written) {
        // A subscription period counts as created even at 0 (a free period); usage only when
        // something was used.
        if id.is_some()
            && (line.amount_minor > 0 || line.line == "subscription")
            && let Some(Ok(created)) = outcomes.get_mut(billed.install)
        {
            created.push((line.currency.code().to_string(), line.amount_minor));
        }
    }
    update_installs(&mut tx, &owners).await?;
    tx.commit().await?;
    Ok(outcomes.into_iter().collect())
}

/// An install billed in a batch: its state once billed and when it is next due.
struct Progress<'a> {
    install: String,
    state: State,
    plan: &'a Plan,
    next_bill_at: Option<i64>,
}

/// Writes the billing state of each install (paid through, usage billed until, next bill
/// at) in one statement per chunk.
async fn update_installs(conn: &mut sqlx::AnyConnection, updates: &[Progress<'_>]) -> Result<(), MarketError> {
    for chunk in updates.chunks(INSTALLS_PER_TX) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| format!("(${}, ${}, ${}, ${})", row * 4 + 1, row * 4 + 2, row * 4 + 3, row * 4 + 4))
            .collect();
        let sql = backend_of(conn).positional(format!(
            "WITH v (id, paid_through, usage_billed_until, next_bill_at) AS (VALUES {}) \
             UPDATE installs SET paid_through = v.paid_through, usage_billed_until = v.usage_billed_until, \
             next_bill_at = v.next_bill_at FROM v WHERE installs.id = v.id",
            values.join(", ")
        ));
        let mut query = sqlx::query(&sql);
        for done in chunk {
            query = query
                .bind(done.install.as_str())
                .bind(done.state.paid_through)
                .bind(done.state.usage_billed_until)
                .bind(done.next_bill_at);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
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
    rate_usage(plan, segment, units.get(&(install.to_string(), segment.start_ms)).copied().unwrap_or(0))
}

/// The usage line of one segment whose invocations reported `units`, rated by the plan.
fn rate_usage(plan: &Plan, segment: Period, units: i64) -> Result<NewCharge, MarketError> {
    let (Some(usage), Some(price)) = (&plan.usage, plan.usage_price()?) else {
        return Err(storage(format!("plan {} has no usage terms", plan.id)));
    };
    let rated = price.rate(u64::try_from(units).unwrap_or(0)).map_err(money_error)?;
    let mut detail = ChargeDetail::of(plan);
    detail.meter = Some(usage.meter.clone());
    detail.units_reported = Some(rated.reported_units);
    detail.units_included = Some(rated.included_units);
    detail.units_billable = Some(rated.billable_units);
    detail.unit_minor = Some(rated.unit.minor);
    detail.cap_applied_minor = rated.capped_at.map(|c| c.minor);
    Ok(NewCharge {
        line: format!("usage:{}", usage.meter),
        period: segment,
        currency: price.unit.currency,
        amount_minor: rated.amount.minor,
        detail,
    })
}

/// The billing of a new install, written in its creating transaction: the plan revision,
/// the anchor, the trial (a tenant's first install of the plugin only; a reinstall keeps
/// what is left of a trial that has not ended), and the one-time charge.
pub async fn start_install(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    install: &str,
    tenant: &str,
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
    let anchor = trial_ends_at.unwrap_or(now);
    let periodic = matches!(plan.model, PlanModel::Subscription | PlanModel::Usage);
    let next = if periodic { Some(anchor) } else { None };
    sqlx::query(
        "UPDATE installs SET plan_id = $2, plan = $3, billing_anchor = $4, trial_ends_at = $5, paid_through = $6, \
         usage_billed_until = $7, next_bill_at = $8 WHERE id = $1",
    )
    .bind(install)
    .bind(&plan.id)
    .bind(&plan.key)
    .bind(anchor)
    .bind(trial_ends_at)
    .bind(next.filter(|_| plan.charges_periods()))
    .bind(plan.usage.as_ref().map(|_| anchor))
    .bind(if plan.charges_periods() { Some(anchor) } else { plan.usage.as_ref().map(|_| anchor) })
    .execute(&mut *conn)
    .await?;
    if plan.model == PlanModel::OneTime {
        let publisher = plugin.split('/').next().unwrap_or_default();
        let billed = Billed { install, tenant, plugin, publisher, plan };
        charges::insert(conn, &billed, one_time_line(plan, now)?, now).await?;
    }
    Ok(())
}

/// The charge of a one-time plan, bought at `now`.
pub(crate) fn one_time_line(plan: &Plan, now: i64) -> Result<NewCharge, MarketError> {
    let currency = plan.currency()?.ok_or_else(|| storage("one-time plan without currency"))?;
    let mut detail = ChargeDetail::of(plan);
    detail.price_minor = Some(plan.price_minor);
    Ok(NewCharge {
        line: "one-time".into(),
        period: Period { start_ms: now, end_ms: now },
        currency,
        amount_minor: plan.price_minor,
        detail,
    })
}
