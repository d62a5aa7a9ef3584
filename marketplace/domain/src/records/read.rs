//! Reading invocation records: by id, by event, an install's pages.

use std::collections::{BTreeMap, HashMap};

use nexus_registry::ErrorCode;
use serde::Deserialize;

use super::InvocationRecord;
use crate::accounts::{Caller, TenantId};
use crate::error::{CursorPage, MarketError, storage};
use crate::ids::{InstallId, InvocationId};
use crate::installs;
use crate::market::Market;

/// The invocations that applied event `event_id` for installs of `tenant`, by install.
pub async fn applied(
    market: &Market,
    tenant: &TenantId,
    event_id: &str,
) -> Result<BTreeMap<InstallId, InvocationRecord>, MarketError> {
    let rows = sqlx::query_as::<_, InvocationRow>(
        "SELECT * FROM invocations WHERE tenant_id = $1 AND event_id = $2 AND outcome = 'ok'",
    )
    .bind(tenant)
    .bind(event_id)
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter().map(|row| InvocationRecord::try_from(row).map(|r| (r.install.clone(), r))).collect()
}

/// The applied invocations of each `(install, event id)` pair that has one, in one read.
pub async fn applied_to(
    market: &Market,
    pairs: &[(&str, &str)],
) -> Result<HashMap<(InstallId, String), InvocationRecord>, MarketError> {
    let mut found = HashMap::new();
    for chunk in pairs.chunks(250) {
        let sql = market.db.backend.positional(format!(
            "SELECT * FROM invocations WHERE outcome = 'ok' AND install_id IN ({}) AND event_id IN ({})",
            nexus_registry::db::placeholders(1, chunk.len()),
            nexus_registry::db::placeholders(chunk.len() + 1, chunk.len())
        ));
        let mut query = sqlx::query_as::<_, InvocationRow>(&sql);
        for (install, _) in chunk {
            query = query.bind(*install);
        }
        for (_, event) in chunk {
            query = query.bind(*event);
        }
        for row in query.fetch_all(&market.db.pool).await? {
            let record = InvocationRecord::try_from(row)?;
            let key = (record.install.clone(), record.event_id.clone());
            if chunk.iter().any(|(install, event)| *install == key.0.as_str() && *event == key.1) {
                found.insert(key, record);
            }
        }
    }
    Ok(found)
}

/// One invocation by id.
pub async fn get(market: &Market, id: &str) -> Result<InvocationRecord, MarketError> {
    sqlx::query_as::<_, InvocationRow>("SELECT * FROM invocations WHERE id = $1")
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("invocation {id}")))?
        .try_into()
}

/// One invocation of `install`, which must be visible to the caller.
pub async fn of_install(
    market: &Market,
    caller: &Caller,
    install: &InstallId,
    invocation: &str,
) -> Result<InvocationRecord, MarketError> {
    installs::get(market, caller, install).await?;
    sqlx::query_as::<_, InvocationRow>("SELECT * FROM invocations WHERE id = $1 AND install_id = $2")
        .bind(invocation)
        .bind(install)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("invocation {invocation} of install {install}")))?
        .try_into()
}

/// Filters for reading invocations.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InvocationQuery {
    pub outcome: Option<String>,
    /// Continue after this invocation (a page's `next_after`); newest first.
    pub after: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// An install's invocations, newest first; the install must be visible to the caller.
pub async fn list(
    market: &Market,
    caller: &Caller,
    install: &InstallId,
    query: &InvocationQuery,
) -> Result<CursorPage<InvocationRecord>, MarketError> {
    installs::get(market, caller, install).await?;
    let per_page = crate::error::per_page(query.per_page, 50)?;
    MarketError::check_text(ErrorCode::InvalidQuery, "outcome", query.outcome.as_deref().unwrap_or(""), 64)?;
    // The cursor is the last row seen: everything strictly older than it, in the order shown.
    let (before_at, before_id) = match &query.after {
        None => (i64::MAX, String::new()),
        Some(after) => {
            let at: Option<i64> =
                sqlx::query_scalar("SELECT started_at FROM invocations WHERE id = $1 AND install_id = $2")
                    .bind(after)
                    .bind(install)
                    .fetch_optional(&market.db.pool)
                    .await?;
            let at = at.ok_or_else(|| {
                MarketError::invalid(
                    ErrorCode::InvalidQuery,
                    format!("`after` {after} is not an invocation of this install"),
                )
            })?;
            (at, after.clone())
        }
    };
    let filter = "WHERE install_id = $1 AND ($2 IS NULL OR outcome = $2)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM invocations {filter}"))
        .bind(install)
        .bind(query.outcome.as_deref())
        .fetch_one(&market.db.pool)
        .await?;
    let rows = sqlx::query_as::<_, InvocationRow>(&format!(
        "SELECT * FROM invocations {filter} AND (started_at < $3 OR (started_at = $3 AND id < $4)) \
         ORDER BY started_at DESC, id DESC LIMIT $5"
    ))
    .bind(install)
    .bind(query.outcome.as_deref())
    .bind(before_at)
    .bind(&before_id)
    .bind(i64::from(per_page) + 1)
    .fetch_all(&market.db.pool)
    .await?;
    let items = rows.into_iter().map(InvocationRecord::try_from).collect::<Result<Vec<_>, MarketError>>()?;
    Ok(CursorPage::new(items, per_page, total, |record| record.id.to_string()))
}

/// An `invocations` row as stored: its usage, logs and actions still JSON text.
#[derive(sqlx::FromRow)]
struct InvocationRow {
    id: InvocationId,
    tenant_id: TenantId,
    install_id: InstallId,
    plugin_id: String,
    version: String,
    event_id: String,
    event_type: String,
    started_at: i64,
    duration_us: i64,
    outcome: String,
    error_message: Option<String>,
    fuel_used: i64,
    peak_memory_bytes: i64,
    http_requests: i64,
    kv_writes: i64,
    denials: i64,
    usage: String,
    logs: String,
    stderr: String,
    outcome_data: Option<String>,
    actions: String,
}

impl TryFrom<InvocationRow> for InvocationRecord {
    type Error = MarketError;

    fn try_from(row: InvocationRow) -> Result<Self, MarketError> {
        Ok(InvocationRecord {
            id: row.id,
            tenant: row.tenant_id,
            install: row.install_id,
            plugin: row.plugin_id.parse().map_err(|e| storage(format!("stored plugin id: {e}")))?,
            version: row.version,
            event_id: row.event_id,
            event_type: row.event_type,
            started_at: row.started_at,
            duration_us: row.duration_us,
            outcome: row.outcome,
            error: row.error_message,
            fuel_used: row.fuel_used,
            peak_memory_bytes: row.peak_memory_bytes,
            http_requests: row.http_requests,
            kv_writes: row.kv_writes,
            denials: row.denials,
            usage: serde_json::from_str(&row.usage).map_err(storage)?,
            logs: serde_json::from_str(&row.logs).map_err(storage)?,
            stderr: row.stderr,
            data: row.outcome_data,
            actions: serde_json::from_str(&row.actions).map_err(storage)?,
        })
    }
}
