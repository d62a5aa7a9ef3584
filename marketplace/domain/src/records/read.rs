//! Reading invocation records: by id, by event, an install's pages.

use std::collections::{BTreeMap, HashMap};

use nexus_registry::ErrorCode;
use serde::Deserialize;
use sqlx::Row;

use super::InvocationRecord;
use crate::accounts::Caller;
use crate::error::{CursorPage, MarketError, storage};
use crate::installs;
use crate::market::Market;

/// The invocations that applied event `event_id` for installs of `tenant`, by install.
pub async fn applied(
    market: &Market,
    tenant: &str,
    event_id: &str,
) -> Result<BTreeMap<String, InvocationRecord>, MarketError> {
    let rows = sqlx::query("SELECT * FROM invocations WHERE tenant_id = $1 AND event_id = $2 AND outcome = 'ok'")
        .bind(tenant)
        .bind(event_id)
        .fetch_all(&market.db.pool)
        .await?;
    rows.iter().map(|row| record_of(row).map(|r| (r.install.clone(), r))).collect()
}

/// The applied invocations of each `(install, event id)` pair that has one, in one read.
pub async fn applied_to(
    market: &Market,
    pairs: &[(&str, &str)],
) -> Result<HashMap<(String, String), InvocationRecord>, MarketError> {
    let mut found = HashMap::new();
    for chunk in pairs.chunks(250) {
        let sql = market.db.backend.positional(format!(
            "SELECT * FROM invocations WHERE outcome = 'ok' AND install_id IN ({}) AND event_id IN ({})",
            nexus_registry::db::placeholders(1, chunk.len()),
            nexus_registry::db::placeholders(chunk.len() + 1, chunk.len())
        ));
        let mut query = sqlx::query(&sql);
        for (install, _) in chunk {
            query = query.bind(*install);
        }
        for (_, event) in chunk {
            query = query.bind(*event);
        }
        for row in query.fetch_all(&market.db.pool).await? {
            let record = record_of(&row)?;
            let key = (record.install.clone(), record.event_id.clone());
            if chunk.iter().any(|(install, event)| *install == key.0 && *event == key.1) {
                found.insert(key, record);
            }
        }
    }
    Ok(found)
}

/// One invocation by id.
pub async fn get(market: &Market, id: &str) -> Result<InvocationRecord, MarketError> {
    let row = sqlx::query("SELECT * FROM invocations WHERE id = $1")
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("invocation {id}")))?;
    record_of(&row)
}

/// One invocation of `install`, which must be visible to the caller.
pub async fn of_install(
    market: &Market,
    caller: &Caller,
    install: &str,
    invocation: &str,
) -> Result<InvocationRecord, MarketError> {
    installs::get(market, caller, install).await?;
    let row = sqlx::query("SELECT * FROM invocations WHERE id = $1 AND install_id = $2")
        .bind(invocation)
        .bind(install)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("invocation {invocation} of install {install}")))?;
    record_of(&row)
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
    install: &str,
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
    let rows = sqlx::query(&format!(
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
    let items = rows.iter().map(record_of).collect::<Result<Vec<_>, MarketError>>()?;
    Ok(CursorPage::new(items, per_page, total, |record| record.id.clone()))
}

fn record_of(row: &sqlx::any::AnyRow) -> Result<InvocationRecord, MarketError> {
    let usage: String = row.try_get("usage")?;
    let logs: String = row.try_get("logs")?;
    let actions: String = row.try_get("actions")?;
    Ok(InvocationRecord {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant_id")?,
        install: row.try_get("install_id")?,
        plugin: row.try_get("plugin_id")?,
        version: row.try_get("version")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        started_at: row.try_get("started_at")?,
        duration_us: row.try_get("duration_us")?,
        outcome: row.try_get("outcome")?,
        error: row.try_get("error_message")?,
        fuel_used: row.try_get("fuel_used")?,
        peak_memory_bytes: row.try_get("peak_memory_bytes")?,
        http_requests: row.try_get("http_requests")?,
        kv_writes: row.try_get("kv_writes")?,
        denials: row.try_get("denials")?,
        usage: serde_json::from_str(&usage).map_err(storage)?,
        logs: serde_json::from_str(&logs).map_err(storage)?,
        stderr: row.try_get("stderr")?,
        data: row.try_get("outcome_data")?,
        actions: serde_json::from_str(&actions).map_err(storage)?,
    })
}
