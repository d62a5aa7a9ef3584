//! Runs of the tier job: every partner's tier recomputed from its trailing-12-month gross,
//! once a UTC day across the nodes or when an operator asks, and the guarded change that
//! moves one partner (audited, mailed, with the tier's policy).

use std::collections::BTreeMap;

use serde_json::json;

use super::{Tier, TierChange, list};
use crate::accounts::Caller;
use crate::audit;
use crate::billing::DAY_MS;
use crate::billing::share;
use crate::error::MarketError;
use crate::mail::{self, Mail};
use crate::market::Market;

/// The job's name in `platform_jobs`.
const JOB: &str = "partner_tiers";

/// The tier the figures reach: the best automatic one whose threshold some currency's
/// trailing-12-month gross meets (a tier without thresholds: every partner).
fn reached<'t>(tiers: &'t [Tier], gross: &BTreeMap<String, i64>) -> Option<&'t Tier> {
    tiers.iter().filter(|t| t.automatic).find(|t| {
        t.thresholds.is_empty() || t.thresholds.iter().any(|(code, at)| gross.get(code).is_some_and(|g| g >= at))
    })
}

/// Moves `publisher` from `from` to `to` if it is still at `from` (and, for the job, not
/// assigned by hand); audits, mails and sets the tier's policy. Whether it moved.
pub(super) async fn change(
    market: &Market,
    publisher: &str,
    from: Option<&str>,
    to: &Tier,
    manual: bool,
    actor: &str,
    now: i64,
) -> Result<bool, MarketError> {
    let mut tx = market.db.write_tx().await?;
    let assigned = Assigned { publisher, tier: &to.key, manual, actor, now };
    if !move_assignment(&mut tx, &assigned, from).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    let detail = json!({ "from": from, "to": to.key, "manual": manual });
    audit::record(&mut *tx, actor, "partner.tier_changed", publisher, detail).await?;
    if from != Some(to.key.as_str()) {
        enter_tier(&mut tx, publisher, to, actor, now).await?;
    }
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(true)
}

/// A partner's assignment to a tier, as written.
struct Assigned<'a> {
    publisher: &'a str,
    tier: &'a str,
    manual: bool,
    actor: &'a str,
    now: i64,
}

/// Writes the assignment if the partner is still at `from` (none: has no tier yet) and, for
/// the job, no operator set its tier since: whether it moved.
async fn move_assignment(
    tx: &mut sqlx::AnyConnection,
    assigned: &Assigned<'_>,
    from: Option<&str>,
) -> Result<bool, MarketError> {
    let Assigned { publisher, tier, manual, actor, now } = *assigned;
    let moved = match from {
        None => sqlx::query(
            "INSERT INTO partner_tier_assignments (publisher, tier_key, manual, assigned_at, assigned_by) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (publisher) DO NOTHING",
        )
        .bind(publisher)
        .bind(tier)
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
        .bind(tier)
        .bind(i64::from(manual))
        .bind(now)
        .bind(actor)
        .bind(publisher)
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected(),
    };
    Ok(moved == 1)
}

/// What reaching a new tier brings, in `tx`: the tier's revenue-share policy from now on
/// (if it carries one), and a mail to the partner's money people.
async fn enter_tier(
    tx: &mut sqlx::AnyConnection,
    publisher: &str,
    to: &Tier,
    actor: &str,
    now: i64,
) -> Result<(), MarketError> {
    if let Some(tiers) = &to.share_tiers {
        let scope = share::Scope { publisher: Some(publisher), ..share::Scope::default() };
        share::insert(tx, scope, tiers, now, now, actor).await?;
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
    mail::to_members(tx, now, "publisher", publisher, &mail::MONEY_ROLES, &notice).await?;
    Ok(())
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
