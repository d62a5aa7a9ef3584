//! Co-marketing: featured placements. An operator features a listing from a start to an end
//! (or until ended), with a note the catalog shows. The marketplace has a number of slots
//! (`featured_slots`, default 4): at no moment do more placements run at once. Operators
//! may require a partner tier (`featured_min_tier`): only listings of partners at or above
//! it are featured. The catalog's featured listings are the placements in force: starting
//! and ending ones are applied when a placement changes and by the periodic check
//! ([`apply`], every minute on a server).
//!
//! Placements are created under a lock (PostgreSQL's advisory lock; SQLite's one writer), so
//! two at once never both take the last slot.

use nexus_registry::{ErrorCode, PluginId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::catalog::{self, Listing};
use crate::error::MarketError;
use crate::ids::PlacementId;
use crate::market::Market;

/// Slots when operators have not chosen.
pub const DEFAULT_SLOTS: i64 = 4;
const SLOTS: &str = "featured_slots";
const MIN_TIER: &str = "featured_min_tier";
/// Serializes placement changes on PostgreSQL (`pg_advisory_xact_lock`).
const LOCK: i64 = 0x4e58_4650;

/// `POST /v1/featured-placements`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    /// `publisher/name`.
    pub plugin: String,
    /// Shown with the listing.
    pub note: String,
    /// Milliseconds since the epoch; default now.
    #[serde(default)]
    pub starts_at: Option<i64>,
    /// Absent: until an operator ends it.
    #[serde(default)]
    pub ends_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Placement {
    #[schema(value_type = String)]
    pub id: crate::ids::PlacementId,
    #[sqlx(rename = "plugin_id")]
    pub plugin: String,
    pub note: String,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
}

/// The featuring rules operators set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Placements that may run at once.
    pub slots: i64,
    /// The lowest partner tier (its key) whose listings may be featured; none: any partner.
    #[serde(default)]
    pub min_tier: Option<String>,
}

fn invalid(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::InvalidRequest, message)
}

async fn setting(conn: &mut sqlx::AnyConnection, name: &str) -> Result<Option<String>, MarketError> {
    Ok(sqlx::query_scalar("SELECT value FROM marketplace_settings WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?)
}

async fn rules_on(conn: &mut sqlx::AnyConnection) -> Result<Rules, MarketError> {
    let slots = setting(conn, SLOTS).await?.and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_SLOTS);
    Ok(Rules { slots, min_tier: setting(conn, MIN_TIER).await?.filter(|v| !v.is_empty()) })
}

/// The featuring rules.
pub async fn rules(market: &Market) -> Result<Rules, MarketError> {
    let mut conn = market.db.pool.acquire().await?;
    rules_on(&mut conn).await
}

/// Sets the featuring rules (operators). Placements already made stand.
pub async fn set_rules(market: &Market, caller: &Caller, rules: Rules) -> Result<Rules, MarketError> {
    caller.require_operator()?;
    if !(1..=50).contains(&rules.slots) {
        return Err(invalid("slots is 1 to 50"));
    }
    if let Some(key) = &rules.min_tier
        && !crate::partner_tiers::list(market).await?.iter().any(|t| &t.key == key)
    {
        return Err(MarketError::NotFound(format!("partner tier {key}")));
    }
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    for (name, value) in [(SLOTS, rules.slots.to_string()), (MIN_TIER, rules.min_tier.clone().unwrap_or_default())] {
        sqlx::query(
            "INSERT INTO marketplace_settings (name, value, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(&value)
        .bind(caller.actor())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let detail = json!({ "slots": rules.slots, "min_tier": rules.min_tier });
    audit::record(&mut *tx, &caller.actor(), "featuring.rules_set", "featuring", detail).await?;
    tx.commit().await?;
    Ok(rules)
}

/// The placements in force and to come, soonest first.
pub async fn list(market: &Market) -> Result<Vec<Placement>, MarketError> {
    let now = market.billing.clock.now_ms();
    let rows = sqlx::query_as::<_, Placement>(
        "SELECT id, plugin_id, note, starts_at, ends_at FROM featured_placements \
         WHERE ends_at IS NULL OR ends_at > $1 ORDER BY starts_at, id",
    )
    .bind(now)
    .fetch_all(&market.db.pool)
    .await?;
    Ok(rows)
}

/// The most placements running at once within `[start, end)` (`end` None: open), counting
/// `others` (start, end) pairs.
fn peak(others: &[(i64, Option<i64>)], start: i64, end: Option<i64>) -> usize {
    let within = |at: i64| at >= start && end.is_none_or(|end| at < end);
    let mut moments: Vec<i64> = vec![start];
    moments.extend(others.iter().map(|(s, _)| *s).filter(|s| within(*s)));
    moments
        .iter()
        .map(|at| others.iter().filter(|(s, e)| *s <= *at && e.is_none_or(|e| e > *at)).count())
        .max()
        .unwrap_or(0)
}

/// Features a listing from `starts_at` (default now) to `ends_at` (operators): refused when
/// its partner is below the tier operators require, or when a slot would be over-full.
pub async fn create(market: &Market, caller: &Caller, request: PlacementRequest) -> Result<Placement, MarketError> {
    caller.require_operator()?;
    let now = market.billing.clock.now_ms();
    let (id, note, starts_at) = checked(&request, now)?;
    if !catalog::is_installable(&market.db, &id).await? {
        return Err(MarketError::conflict(ErrorCode::PluginDelisted, format!("{id} is delisted")));
    }
    catalog::shown(&market.db, &id).await?;
    let placement = Placement {
        id: PlacementId::random()?,
        plugin: id.to_string(),
        note: note.to_string(),
        starts_at,
        ends_at: request.ends_at,
    };
    let mut tx = market.db.write_tx().await?;
    if market.db.backend == nexus_registry::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut *tx).await?;
    }
    if let Some(refused) = refusal(&mut tx, &id, &placement).await? {
        tx.rollback().await?;
        return Err(refused);
    }
    insert(&mut tx, &placement, &caller.actor(), now).await?;
    let detail = json!({ "placement": placement.id, "note": note, "starts_at": starts_at, "ends_at": request.ends_at });
    audit::record(&mut *tx, &caller.actor(), "listing.featured", &id.to_string(), detail).await?;
    tx.commit().await?;
    apply(market).await?;
    Ok(placement)
}

/// A placement request's plugin, note (trimmed) and start, or the first rule it breaks.
fn checked(request: &PlacementRequest, now: i64) -> Result<(PluginId, &str, i64), MarketError> {
    let id = request
        .plugin
        .parse::<PluginId>()
        .map_err(|e| MarketError::invalid(ErrorCode::InvalidId, format!("plugin: {e}")))?;
    let note = request.note.trim();
    MarketError::check_text(ErrorCode::InvalidRequest, "note", note, nexus_registry::text::MAX_REASON_CHARS)?;
    if note.is_empty() {
        return Err(invalid("a placement's note says why the listing is featured"));
    }
    let starts_at = request.starts_at.unwrap_or(now);
    if let Some(ends_at) = request.ends_at
        && (ends_at <= starts_at || ends_at <= now)
    {
        return Err(invalid("ends_at must be after starts_at and in the future"));
    }
    Ok((id, note, starts_at))
}

/// Why the featuring rules refuse `placement` of `id`, if they do: its partner is below the
/// tier required, or a slot would be over-full for part of its time. Read under the lock.
async fn refusal(
    tx: &mut sqlx::AnyConnection,
    id: &PluginId,
    placement: &Placement,
) -> Result<Option<MarketError>, MarketError> {
    let rules = rules_on(tx).await?;
    if let Some(min) = &rules.min_tier {
        let (required, reached) = sqlx::query_as::<_, (Option<i64>, Option<i64>)>(
            "SELECT (SELECT rank FROM partner_tiers WHERE key = $1) AS required, \
             (SELECT t.rank FROM partner_tier_assignments a JOIN partner_tiers t ON t.key = a.tier_key \
              WHERE a.publisher = $2) AS reached",
        )
        .bind(min)
        .bind(id.publisher.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if required.is_some_and(|required| reached.is_none_or(|reached| reached < required)) {
            return Ok(Some(MarketError::Forbidden(format!(
                "only partners at the {min} tier or above are featured; {} is not",
                id.publisher
            ))));
        }
    }
    let others: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT starts_at, ends_at FROM featured_placements WHERE (ends_at IS NULL OR ends_at > $1) \
         AND ($2 IS NULL OR starts_at < $2)",
    )
    .bind(placement.starts_at)
    .bind(placement.ends_at)
    .fetch_all(&mut *tx)
    .await?;
    if peak(&others, placement.starts_at, placement.ends_at) >= usize::try_from(rules.slots).unwrap_or(0) {
        return Ok(Some(MarketError::conflict(
            ErrorCode::FeaturedSlotsFull,
            format!(
                "all {} featured slots are taken for part of that time; end a placement or pick other dates",
                rules.slots
            ),
        )));
    }
    Ok(None)
}

/// Writes a new placement, in `tx`.
async fn insert(tx: &mut sqlx::AnyConnection, placement: &Placement, actor: &str, now: i64) -> Result<(), MarketError> {
    sqlx::query(
        "INSERT INTO featured_placements (id, plugin_id, note, starts_at, ends_at, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&placement.id)
    .bind(&placement.plugin)
    .bind(&placement.note)
    .bind(placement.starts_at)
    .bind(placement.ends_at)
    .bind(actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Ends a placement now (one to come is withdrawn) (operators).
pub async fn end(market: &Market, caller: &Caller, placement_id: &PlacementId) -> Result<(), MarketError> {
    caller.require_operator()?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let plugin: Option<String> = sqlx::query_scalar("SELECT plugin_id FROM featured_placements WHERE id = $1")
        .bind(placement_id)
        .fetch_optional(&mut *tx)
        .await?;
    let ended = sqlx::query(
        "UPDATE featured_placements SET ends_at = CASE WHEN starts_at > $1 THEN starts_at ELSE $1 END \
         WHERE id = $2 AND (ends_at IS NULL OR ends_at > $1)",
    )
    .bind(now)
    .bind(placement_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if ended == 0 {
        tx.rollback().await?;
        return Err(MarketError::NotFound(format!("a running or coming placement {placement_id}")));
    }
    let target = plugin.unwrap_or_default();
    audit::record(&mut *tx, &caller.actor(), "listing.unfeatured", &target, json!({ "placement": placement_id }))
        .await?;
    tx.commit().await?;
    apply(market).await
}

/// Features `id` from now until ended (`note` Some), or ends its placements in force (`note`
/// None): the catalog's feature and unfeature.
pub async fn feature(
    market: &Market,
    caller: &Caller,
    id: &PluginId,
    note: Option<&str>,
) -> Result<Listing, MarketError> {
    caller.require_operator()?;
    match note {
        Some(note) => {
            let request =
                PlacementRequest { plugin: id.to_string(), note: note.to_string(), starts_at: None, ends_at: None };
            create(market, caller, request).await?;
        }
        None => {
            let now = market.billing.clock.now_ms();
            let running: Vec<PlacementId> = sqlx::query_scalar(
                "SELECT id FROM featured_placements WHERE plugin_id = $1 AND starts_at <= $2 \
                 AND (ends_at IS NULL OR ends_at > $2)",
            )
            .bind(id.to_string())
            .bind(now)
            .fetch_all(&market.db.pool)
            .await?;
            catalog::shown(&market.db, id).await?;
            for placement in running {
                end(market, caller, &placement).await?;
            }
        }
    }
    catalog::shown(&market.db, id).await
}

/// Makes the catalog's featured listings the placements in force now.
pub async fn apply(market: &Market) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let running = "FROM featured_placements p WHERE p.plugin_id = listings.plugin_id AND p.starts_at <= $1 \
                   AND (p.ends_at IS NULL OR p.ends_at > $1)";
    let mut tx = market.db.write_tx().await?;
    sqlx::query(&format!(
        "UPDATE listings SET featured_at = NULL, featured_note = NULL \
         WHERE featured_at IS NOT NULL AND NOT EXISTS (SELECT 1 {running})"
    ))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "UPDATE listings SET featured_at = (SELECT MIN(p.starts_at) {running}), \
         featured_note = (SELECT MIN(p.note) {running}) WHERE featured_at IS NULL AND EXISTS (SELECT 1 {running})"
    ))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Applies starting and ending placements every `every`.
pub fn keep_applied(market: std::sync::Arc<Market>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = apply(&market).await {
                tracing::error!(%error, "featured placements not applied; the next check retries");
            }
        }
    })
}
