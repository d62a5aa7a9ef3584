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

mod runs;

use std::collections::BTreeMap;

use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use runs::change;
pub use runs::{keep_current, recompute, recompute_now, run_if_due};

use crate::accounts::Caller;
use crate::audit;
use crate::billing::share::{self, TierSpec};
use crate::error::{MarketError, storage};
use crate::market::Market;

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
    let (name, badge) = checked(key, &request)?;
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

/// A tier definition's name and badge (trimmed), or the first rule `key` or `request`
/// breaks.
fn checked<'r>(key: &str, request: &'r TierRequest) -> Result<(&'r str, &'r str), MarketError> {
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
    Ok((name, badge))
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
