//! What the runner needs of installs: the targets of an event, and the circuit breaker's
//! bookkeeping.

use std::collections::{BTreeMap, HashMap};

use nexus_host::Grants;
use nexus_registry::db::{now_ms, placeholders};
use nexus_registry::{ErrorCode, PluginId};
use serde_json::json;
use sqlx::FromRow;

use super::{FAILURES_BEFORE_PAUSE, json_field, write_tx};
use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::error::{MarketError, storage};
use crate::ids::InstallId;
use crate::market::Market;
use crate::secrets;

/// Everything the runner needs to deliver to one install.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: InstallId,
    pub tenant: TenantId,
    pub plugin: PluginId,
    pub version: semver::Version,
    pub event_types: Vec<String>,
    pub grants: Grants,
    pub config: BTreeMap<String, String>,
    pub secrets_sealed: Option<String>,
    pub status: super::InstallStatus,
    pub status_reason: Option<String>,
    pub consecutive_failures: i64,
    /// Its version asks for asynchronous events one at a time, in order.
    pub ordered: bool,
    /// The cache generation when the target was read (see `cache_generation`).
    pub generation: i64,
}

impl Target {
    pub fn handles(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == "*" || t == event_type)
    }
}

/// A row of [`TARGET_COLUMNS`], as stored.
#[derive(sqlx::FromRow)]
struct TargetRow {
    id: InstallId,
    tenant_id: TenantId,
    plugin_id: String,
    version: String,
    event_types: String,
    grants: String,
    config: String,
    secrets_sealed: Option<String>,
    status: String,
    status_reason: Option<String>,
    consecutive_failures: i64,
    ordered_delivery: i64,
    generation: i64,
}

impl TryFrom<TargetRow> for Target {
    type Error = MarketError;

    fn try_from(row: TargetRow) -> Result<Self, MarketError> {
        Ok(Target {
            id: row.id,
            tenant: row.tenant_id,
            plugin: row.plugin_id.parse().map_err(|e| storage(format!("stored plugin id: {e}")))?,
            version: row.version.parse().map_err(|e| storage(format!("stored version: {e}")))?,
            event_types: json_field(&row.event_types, "event_types")?,
            grants: json_field(&row.grants, "grants")?,
            config: json_field(&row.config, "config")?,
            secrets_sealed: row.secrets_sealed,
            status: super::InstallStatus::stored(&row.status)?,
            status_reason: row.status_reason,
            consecutive_failures: row.consecutive_failures,
            ordered: row.ordered_delivery != 0,
            generation: row.generation,
        })
    }
}

/// What every row of [`targets_read`] has: the generations, and the install's id (`NULL` on
/// the one row of a tenant without installs).
#[derive(sqlx::FromRow)]
struct GenerationsRow {
    global_generation: i64,
    tenant_generation: i64,
    id: Option<String>,
}

const TARGET_COLUMNS: &str = "id, tenant_id, plugin_id, version, event_types, grants, config, secrets_sealed, status, \
                              status_reason, consecutive_failures, ordered_delivery, \
                              (SELECT generation FROM cache_generation WHERE id = 1) AS generation";

/// The tenant's installs that are not uninstalled.
pub async fn targets(market: &Market, tenant: &TenantId) -> Result<Vec<Target>, MarketError> {
    Ok(targets_read(market, tenant).await?.0)
}

/// [`targets`], with the generations they were read at: the marketplace's
/// `cache_generation` and the tenant's `tenants.generation`, in the same statement (a write
/// to the tenant's installs and its bump are seen together or not at all).
pub async fn targets_read(market: &Market, tenant: &TenantId) -> Result<(Vec<Target>, (i64, i64)), MarketError> {
    let rows = sqlx::query(&format!(
        "SELECT {TARGET_COLUMNS}, g.global_generation, g.tenant_generation FROM \
         (SELECT (SELECT generation FROM cache_generation WHERE id = 1) AS global_generation, \
                 COALESCE((SELECT generation FROM tenants WHERE id = $1), 0) AS tenant_generation) g \
         LEFT JOIN installs i ON i.tenant_id = $1 AND i.status <> 'uninstalled' ORDER BY i.created_at, i.id"
    ))
    .bind(tenant.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    let row = rows.first().ok_or_else(|| storage("the generations row is missing"))?;
    let first = GenerationsRow::from_row(row)?;
    let generations = (first.global_generation, first.tenant_generation);
    let mut targets = Vec::with_capacity(rows.len());
    for row in &rows {
        if GenerationsRow::from_row(row)?.id.is_some() {
            targets.push(Target::try_from(TargetRow::from_row(row)?)?);
        }
    }
    Ok((targets, generations))
}

/// One install of the tenant, for direct invocation.
pub async fn target_of(market: &Market, caller: &Caller, id: &InstallId) -> Result<Target, MarketError> {
    let tenant = caller.tenant(TenantScope::Events)?;
    let row = sqlx::query_as::<_, TargetRow>(&format!(
        "SELECT {TARGET_COLUMNS} FROM installs WHERE id = $1 AND tenant_id = $2"
    ))
    .bind(id)
    .bind(tenant.as_str())
    .fetch_optional(&market.db.pool)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("install {id}")))?;
    let target = Target::try_from(row)?;
    if target.status == super::InstallStatus::Uninstalled {
        return Err(MarketError::conflict(ErrorCode::Uninstalled, format!("install {id} was uninstalled")));
    }
    Ok(target)
}

/// One install by id, whatever its tenant and status: for the delivery workers, which act
/// for the tenant that queued the event. `None` if there is no such install.
pub async fn target_by_id(market: &Market, id: &str) -> Result<Option<Target>, MarketError> {
    let row = sqlx::query_as::<_, TargetRow>(&format!("SELECT {TARGET_COLUMNS} FROM installs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?;
    row.map(Target::try_from).transpose()
}

/// [`target_by_id`] for many installs in one read, by id; ids with no install are absent.
pub async fn targets_by_ids(market: &Market, ids: &[&str]) -> Result<HashMap<InstallId, Target>, MarketError> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let sql = market.db.backend.positional(format!(
            "SELECT {TARGET_COLUMNS} FROM installs WHERE id IN ({})",
            placeholders(1, chunk.len())
        ));
        let mut query = sqlx::query_as::<_, TargetRow>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&market.db.pool).await? {
            let target = Target::try_from(row)?;
            found.insert(target.id.clone(), target);
        }
    }
    Ok(found)
}

/// Records an invocation's outcome against the circuit breaker: a success resets the count
/// of consecutive failures (when the count it saw was not already 0); at
/// `FAILURES_BEFORE_PAUSE` failures, the install is paused with a reason its tenant sees if
/// its latest recorded invocations all failed. Returns whether this call paused it.
pub async fn record_health(market: &Market, target: &Target, failure: Option<&str>) -> Result<bool, MarketError> {
    let Some(failure) = failure else {
        if target.consecutive_failures != 0 {
            sqlx::query("UPDATE installs SET consecutive_failures = 0 WHERE id = $1")
                .bind(&target.id)
                .execute(market.db.writer())
                .await?;
        }
        return Ok(false);
    };
    let mut tx = write_tx(market).await?;
    let failures: i64 = sqlx::query_scalar(
        "UPDATE installs SET consecutive_failures = consecutive_failures + 1 WHERE id = $1 \
         RETURNING consecutive_failures",
    )
    .bind(&target.id)
    .fetch_one(&mut *tx)
    .await?;
    if failures < FAILURES_BEFORE_PAUSE {
        tx.commit().await?;
        return Ok(false);
    }
    // Successes that ran beside these failures reset nothing (each saw a count of 0 when it
    // started): the recorded outcomes say whether the failures really were consecutive.
    let recent: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM invocations WHERE install_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
    )
    .bind(&target.id)
    .bind(FAILURES_BEFORE_PAUSE)
    .fetch_all(&mut *tx)
    .await?;
    let trailing = recent.iter().take_while(|outcome| *outcome != "ok").count() as i64;
    if trailing < FAILURES_BEFORE_PAUSE {
        sqlx::query("UPDATE installs SET consecutive_failures = $1 WHERE id = $2")
            .bind(trailing)
            .bind(&target.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(false);
    }
    let paused = pause(&mut tx, market, target, failures, failure).await?;
    tx.commit().await?;
    Ok(paused)
}

/// Pauses the active install after `failures` consecutive failures, the last `failure`, in
/// `tx`: audited, and its tenant's webhook queued. Returns whether it paused it.
async fn pause(
    tx: &mut sqlx::AnyConnection,
    market: &Market,
    target: &Target,
    failures: i64,
    failure: &str,
) -> Result<bool, MarketError> {
    let failure = nexus_host::limits::clip(failure, nexus_host::limits::MAX_ERROR_MESSAGE_BYTES);
    let reason = format!("paused after {failures} consecutive failures; the last: {failure}");
    let paused = sqlx::query(
        "UPDATE installs SET status = 'paused', status_reason = $1, paused_for = $4, updated_at = $2 \
         WHERE id = $3 AND status = 'active'",
    )
    .bind(&reason)
    .bind(now_ms())
    .bind(&target.id)
    .bind(super::PauseCause::Failures.as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if paused {
        tracing::warn!(install = %target.id, tenant = %target.tenant, plugin = %target.plugin, %reason, "install paused");
        audit::record(&mut *tx, audit::SYSTEM, "install.paused", target.id.as_str(), json!({ "reason": reason }))
            .await?;
        let at = market.billing.clock.now_ms();
        crate::webhooks::install_paused(tx, at, target.id.as_str(), super::PauseCause::Failures.as_str(), &reason)
            .await?;
    }
    Ok(paused)
}

/// The tenant's secrets of an install, opened for one invocation.
pub fn open_secrets(market: &Market, target: &Target) -> Result<BTreeMap<String, String>, MarketError> {
    match &target.secrets_sealed {
        // Not a storage failure: this install cannot run (wrong master key, damaged blob),
        // the others can; the runner records it as `load_failed`.
        Some(sealed) => secrets::open(&market.master_key, target.id.as_str(), sealed)
            .map_err(|e| MarketError::conflict(ErrorCode::SecretsUnreadable, format!("the install's secrets: {e}"))),
        None => Ok(BTreeMap::new()),
    }
}
