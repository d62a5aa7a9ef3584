//! Partner tiers: operators define tiers (such as Registered, Select, Premier), each reached
//! by a trailing-12-month gross collected in any one currency at or above its threshold, or
//! only by an operator's assignment; each may carry its own revenue-share policy and shows a
//! badge on the partner's listings.
//!
//! - **Recomputed daily**, once per UTC day across every node (`platform_jobs`: the node
//!   whose guarded update moves the slot runs it), from the money rollups (a few rows per
//!   partner). An operator may also run it now.
//! - **A change** is made by a guarded update (from the tier it was read at), so of two runs
//!   at once one changes each partner; it is audited, mailed to the partner's owners, admins
//!   and finance members, and, when the new tier carries a policy, sets that policy for the
//!   partner from now on (policies are never retroactive).
//! - **Manual assignments** stand until an operator lifts them; the job leaves them alone.

use std::collections::BTreeMap;

use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::billing::DAY_MS;
use crate::billing::share::{self, TierSpec};
use crate::error::{MarketError, storage};
use crate::mail::{self, Mail};
use crate::market::Market;

/// The job's name in `platform_jobs`.
const JOB: &str = "partner_tiers";

/// A tier as operators define it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierRequest {
    pub name: String,
    /// Higher ranks are better tiers; unique.
    pub rank: i64,
    /// Reached by the daily job (default); `false`: only by an operator's assignment.
    #[serde(default = "yes")]
    pub automatic: bool,
    /// Trailing-12-month gross collected, in minor units, per currency: reaching any one
    /// reaches the tier. None: every partner reaches it (a base tier).
    #[serde(default)]
    pub thresholds: BTreeMap<String, i64>,
    /// The revenue-share tiers a partner gets from the day it reaches this tier; absent:
    /// its policy stays as it is.
    #[serde(default)]
    pub share_tiers: Option<Vec<TierSpec>>,
    /// Shown on the partner's listings; default the name.
    #[serde(default)]
    pub badge: Option<String>,
}

fn yes() -> bool {
    true
}

/// A tier, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Tier {
    pub key: String,
    pub name: String,
    pub rank: i64,
    pub automatic: bool,
    pub thresholds: BTreeMap<String, i64>,
    pub share_tiers: Option<Vec<TierSpec>>,
    pub badge: String,
}

/// A partner's tier.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Assignment {
    pub publisher: String,
    pub tier: String,
    pub name: String,
    pub badge: String,
    /// Set by an operator (the daily job leaves it alone).
    pub manual: bool,
    pub assigned_at: i64,
}

/// One partner moved by a run.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TierChange {
    pub publisher: String,
    pub from: Option<String>,
    pub to: String,
}

fn invalid(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::InvalidRequest, message)
}

#[derive(sqlx::FromRow)]
struct TierRow {
    key: String,
    name: String,
    rank: i64,
    automatic: i64,
    thresholds: String,
    share_tiers: Option<String>,
    badge: String,
}

impl TryFrom<TierRow> for Tier {
    type Error = MarketError;

    fn try_from(row: TierRow) -> Result<Self, MarketError> {
        Ok(Tier {
            key: row.key,
            name: row.name,
            rank: row.rank,
            automatic: row.automatic == 1,
            thresholds: serde_json::from_str(&row.thresholds)
                .map_err(|e| storage(format!("stored thresholds: {e}")))?,
            share_tiers: row
                .share_tiers
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| storage(format!("stored share tiers: {e}")))?,
            badge: row.badge,
        })
    }
}

/// Every tier, best first.
pub async fn list(market: &Market) -> Result<Vec<Tier>, MarketError> {
    let rows = sqlx::query_as::<_, TierRow>(
        "SELECT key, name, rank, automatic, thresholds, share_tiers, badge FROM partner_tiers ORDER BY rank DESC",
    )
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter().map(Tier::try_from).collect()
}

/// Defines or redefines the tier `key` (operators). Partners move at the next run.
pub async fn put(market: &Market, caller: &Caller, key: &str, request: TierRequest) -> Result<Tier, MarketError> {
    caller.require_operator()?;
    let valid_key = (2..=32).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid_key {
        return Err(MarketError::invalid(
            ErrorCode::InvalidId,
            format!("`{key}` is not a tier key: 2-32 lowercase letters, digits and '-', starting with a letter"),
        ));
    }
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 40 {
        return Err(invalid("a tier's name has 1 to 40 characters"));
    }
    let badge = request.badge.as_deref().map_or(name, str::trim);
    if badge.is_empty() || badge.chars().count() > 40 {
        return Err(invalid("a tier's badge has 1 to 40 characters"));
    }
    for (code, minor) in &request.thresholds {
        nexus_money::Currency::from_code(code).map_err(|e| invalid(format!("thresholds: {e}")))?;
        if *minor <= 0 {
            return Err(invalid(format!("the {code} threshold must be above zero (in minor units)")));
        }
    }
    if let Some(tiers) = &request.share_tiers {
        share::check_tiers(tiers)?;
    }
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let taken: Option<String> = sqlx::query_scalar("SELECT key FROM partner_tiers WHERE rank = $1 AND key <> $2")
        .bind(request.rank)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(other) = taken {
        tx.rollback().await?;
        return Err(invalid(format!("rank {} is the tier {other}'s; give each tier its own rank", request.rank)));
    }
    let thresholds = serde_json::to_string(&request.thresholds).map_err(storage)?;
    let share_tiers = request.share_tiers.as_ref().map(serde_json::to_string).transpose().map_err(storage)?;
    sqlx::query(
        "INSERT INTO partner_tiers (key, name, rank, automatic, thresholds, share_tiers, badge, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (key) DO UPDATE SET name = excluded.name, \
         rank = excluded.rank, automatic = excluded.automatic, thresholds = excluded.thresholds, \
         share_tiers = excluded.share_tiers, badge = excluded.badge, updated_by = excluded.updated_by, \
         updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(name)
    .bind(request.rank)
    .bind(i64::from(request.automatic))
    .bind(&thresholds)
    .bind(share_tiers.as_deref())
    .bind(badge)
    .bind(caller.actor())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if nexus_registry::db::is_unique_violation(&e) {
            invalid(format!("rank {} is another tier's; give each tier its own rank", request.rank))
        } else {
            e.into()
        }
    })?;
    let detail = json!({ "name": name, "rank": request.rank, "automatic": request.automatic,
                         "thresholds": request.thresholds, "share_tiers": request.share_tiers, "badge": badge });
    audit::record(&mut *tx, &caller.actor(), "partner_tier.defined", key, detail).await?;
    tx.commit().await?;
    list(market).await?.into_iter().find(|t| t.key == key).ok_or_else(|| storage("a tier just stored is gone"))
}

/// `publisher`'s tier, for the partner itself and operators; `None` before any run.
pub async fn of(market: &Market, caller: &Caller, publisher: &str) -> Result<Option<Assignment>, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    let row = sqlx::query_as::<_, AssignmentRow>(
        "SELECT a.publisher, a.tier_key, a.manual, a.assigned_at, t.name, t.badge FROM partner_tier_assignments a \
         JOIN partner_tiers t ON t.key = a.tier_key WHERE a.publisher = $1",
    )
    .bind(publisher)
    .fetch_optional(&market.db.pool)
    .await?;
    Ok(row.map(|row| Assignment {
        publisher: row.publisher,
        tier: row.tier_key,
        name: row.name,
        badge: row.badge,
        manual: row.manual == 1,
        assigned_at: row.assigned_at,
    }))
}

#[derive(sqlx::FromRow)]
struct AssignmentRow {
    publisher: String,
    tier_key: String,
    manual: i64,
    assigned_at: i64,
    name: String,
    badge: String,
}

/// The tier the figures reach: the best automatic one whose threshold some currency's
/// trailing-12-month gross meets (a tier without thresholds: every partner).
fn reached<'t>(tiers: &'t [Tier], gross: &BTreeMap<String, i64>) -> Option<&'t Tier> {
    tiers.iter().filter(|t| t.automatic).find(|t| {
        t.thresholds.is_empty() || t.thresholds.iter().any(|(code, at)| gross.get(code).is_some_and(|g| g >= at))
    })
}

/// Moves `publisher` from `from` to `to` if it is still at `from` (and, for the job, not
/// assigned by hand); audits, mails and sets the tier's policy. Whether it moved.
async fn change(
    market: &Market,
    publisher: &str,
    from: Option<&str>,
    to: &Tier,
    manual: bool,
    actor: &str,
    now: i64,
) -> Result<bool, MarketError> {
    let mut tx = market.db.write_tx().await?;
    let moved = match from {
        None => sqlx::query(
            "INSERT INTO partner_tier_assignments (publisher, tier_key, manual, assigned_at, assigned_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (publisher) DO NOTHING",
        )
        .bind(publisher)
        .bind(&to.key)
        .bind(i64::from(manual))
        .bind(now)
        .bind(actor)
        .execute(&mut *tx)
        .await?
        .rows_affected(),
        // The job moves only what it read and what no operator set since.
        Some(from) => sqlx::query(
            "UPDATE partner_tier_assignments SET tier_key = $1, manual = $2, assigned_at = $3, assigned_by = $4 \
             WHERE publisher = $5 AND tier_key = $6 AND ($2 = 1 OR manual = 0)",
        )
        .bind(&to.key)
        .bind(i64::from(manual))
        .bind(now)
        .bind(actor)
        .bind(publisher)
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected(),
    } == 1;
    if !moved {
        tx.rollback().await?;
        return Ok(false);
    }
    let detail = json!({ "from": from, "to": to.key, "manual": manual });
    audit::record(&mut *tx, actor, "partner.tier_changed", publisher, detail).await?;
    if from != Some(to.key.as_str()) {
        if let Some(tiers) = &to.share_tiers {
            let scope = share::Scope { publisher: Some(publisher), ..share::Scope::default() };
            share::insert(&mut tx, scope, tiers, now, now, actor).await?;
        }
        let notice = Mail {
            kind: "partner-tier",
            to: String::new(),
            subject: format!("{publisher} is now a {} partner", to.name),
            body: format!(
                "{publisher} is now at the {} tier of the Nexus partner program{}.\n\nSee your partner page in the \
                 console for what the tier brings.\n",
                to.name,
                if to.share_tiers.is_some() { ", with its revenue share from today" } else { "" }
            ),
        };
        mail::to_members(&mut tx, now, "publisher", publisher, &mail::MONEY_ROLES, &notice).await?;
    }
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(true)
}

/// Every partner's tier from its trailing-12-month gross, now: the partners that moved.
pub async fn recompute(market: &Market, actor: &str) -> Result<Vec<TierChange>, MarketError> {
    let tiers = list(market).await?;
    if tiers.is_empty() {
        return Ok(Vec::new());
    }
    let now = market.billing.clock.now_ms();
    let since_day = now.div_euclid(DAY_MS) - 365;
    let rows = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT publisher, currency, CAST(SUM(gross_minor) AS BIGINT) AS gross FROM money_rollups \
         WHERE grain = 'day' AND start_day > $1 GROUP BY publisher, currency",
    )
    .bind(since_day)
    .fetch_all(&market.db.pool)
    .await?;
    let mut gross: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (publisher, currency, sum) in rows {
        gross.entry(publisher).or_default().insert(currency, sum);
    }
    let rows = sqlx::query_as::<_, (String, Option<String>, Option<i64>)>(
        "SELECT p.name, a.tier_key, a.manual FROM publishers p \
         LEFT JOIN partner_tier_assignments a ON a.publisher = p.name ORDER BY p.name",
    )
    .fetch_all(&market.db.pool)
    .await?;
    let mut changes = Vec::new();
    for (publisher, current, manual) in rows {
        if manual == Some(1) {
            continue;
        }
        let empty = BTreeMap::new();
        let Some(target) = reached(&tiers, gross.get(&publisher).unwrap_or(&empty)) else { continue };
        if current.as_deref() == Some(target.key.as_str()) {
            continue;
        }
        if change(market, &publisher, current.as_deref(), target, false, actor, now).await? {
            changes.push(TierChange { publisher, from: current, to: target.key.clone() });
        }
    }
    Ok(changes)
}

/// An operator runs the recomputation now.
pub async fn recompute_now(market: &Market, caller: &Caller) -> Result<Vec<TierChange>, MarketError> {
    caller.require_operator()?;
    recompute(market, &caller.actor()).await
}

/// Sets `publisher`'s tier by hand (operators); the job leaves it until [`unassign`].
pub async fn assign(market: &Market, caller: &Caller, publisher: &str, key: &str) -> Result<Assignment, MarketError> {
    caller.require_operator()?;
    let exists: Option<String> = sqlx::query_scalar("SELECT name FROM publishers WHERE name = $1")
        .bind(publisher)
        .fetch_optional(&market.db.pool)
        .await?;
    exists.ok_or_else(|| MarketError::NotFound(format!("publisher {publisher}")))?;
    let to = list(market)
        .await?
        .into_iter()
        .find(|t| t.key == key)
        .ok_or_else(|| MarketError::NotFound(format!("partner tier {key}")))?;
    let now = market.billing.clock.now_ms();
    // Read and moved in a loop: a concurrent change moves the row between the two.
    for _ in 0..3 {
        let current: Option<String> =
            sqlx::query_scalar("SELECT tier_key FROM partner_tier_assignments WHERE publisher = $1")
                .bind(publisher)
                .fetch_optional(&market.db.pool)
                .await?;
        if change(market, publisher, current.as_deref(), &to, true, &caller.actor(), now).await? {
            break;
        }
    }
    of(market, caller, publisher).await?.ok_or_else(|| storage("an assigned tier is gone"))
}

/// Lifts an operator's assignment: the partner's tier follows its figures again, now.
pub async fn unassign(market: &Market, caller: &Caller, publisher: &str) -> Result<(), MarketError> {
    caller.require_operator()?;
    let mut tx = market.db.write_tx().await?;
    let lifted = sqlx::query("UPDATE partner_tier_assignments SET manual = 0 WHERE publisher = $1 AND manual = 1")
        .bind(publisher)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if lifted == 0 {
        tx.rollback().await?;
        return Err(MarketError::NotFound(format!("a tier assigned by hand to {publisher}")));
    }
    audit::record(&mut *tx, &caller.actor(), "partner.tier_unassigned", publisher, json!({})).await?;
    tx.commit().await?;
    recompute(market, &caller.actor()).await?;
    Ok(())
}

/// Runs the daily recomputation if this node claims today's slot (one node per UTC day).
pub async fn run_if_due(market: &Market) -> Result<Option<Vec<TierChange>>, MarketError> {
    let now = market.billing.clock.now_ms();
    let next = (now.div_euclid(DAY_MS) + 1) * DAY_MS;
    sqlx::query("INSERT INTO platform_jobs (name, next_run_at) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
        .bind(JOB)
        .execute(market.db.writer())
        .await?;
    let claimed = sqlx::query("UPDATE platform_jobs SET next_run_at = $1 WHERE name = $2 AND next_run_at <= $3")
        .bind(next)
        .bind(JOB)
        .bind(now)
        .execute(market.db.writer())
        .await?
        .rows_affected();
    if claimed == 0 {
        return Ok(None);
    }
    Ok(Some(recompute(market, audit::SYSTEM).await?))
}

/// Checks every `every` whether today's run is due (on every node; one runs it).
pub fn keep_current(market: std::sync::Arc<Market>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match run_if_due(&market).await {
                Ok(Some(changes)) => tracing::info!(moved = changes.len(), "partner tiers recomputed"),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "partner tiers not recomputed; the next check retries"),
            }
        }
    })
}
