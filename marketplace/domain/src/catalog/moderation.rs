//! Operators' marks on listings: delisting with a reason, relisting, and what is delisted.

use nexus_registry::db::now_ms;
use nexus_registry::text::MAX_REASON_CHARS;
use nexus_registry::{Db, ErrorCode, PluginId};
use serde_json::json;

use super::{COLUMNS, Delisting, Listing, ListingRow, row};
use crate::accounts::Caller;
use crate::audit;
use crate::error::MarketError;

/// Delisted listings, newest delisting first, for operators to review or relist.
pub async fn delisted(db: &Db, caller: &Caller) -> Result<Vec<Listing>, MarketError> {
    caller.require_operator()?;
    let rows = sqlx::query_as::<_, ListingRow>(&format!(
        "SELECT {COLUMNS} FROM listings WHERE delisted_at IS NOT NULL ORDER BY delisted_at DESC, plugin_id LIMIT 200"
    ))
    .fetch_all(&db.pool)
    .await?;
    rows.into_iter().map(|row| row.into_listing(true)).collect()
}

/// An operator's mark on a listing: its columns and its audit actions (set, cleared).
/// (Featuring is `co_marketing`'s placements.)
struct Mark {
    at_column: &'static str,
    text_column: &'static str,
    actions: (&'static str, &'static str),
    detail: &'static str,
}

const DELISTED: Mark = Mark {
    at_column: "delisted_at",
    text_column: "delist_reason",
    actions: ("listing.delisted", "listing.relisted"),
    detail: "reason",
};

/// Delists a listing with a reason its publisher sees, or lists it again (`reason` None).
/// Existing installs keep running; new installs are refused while delisted.
pub async fn delist(db: &Db, caller: &Caller, id: &PluginId, reason: Option<&str>) -> Result<Listing, MarketError> {
    caller.require_operator()?;
    if reason.is_some_and(|r| r.trim().is_empty()) {
        return Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            "a delisting needs a reason the publisher can act on",
        ));
    }
    set_mark(db, caller, id, &DELISTED, reason).await
}

/// Sets (`text` Some) or clears a mark, audited in the same transaction.
async fn set_mark(
    db: &Db,
    caller: &Caller,
    id: &PluginId,
    mark: &Mark,
    text: Option<&str>,
) -> Result<Listing, MarketError> {
    caller.require_operator()?;
    if let Some(text) = text {
        MarketError::check_text(ErrorCode::InvalidRequest, "reason", text, MAX_REASON_CHARS)?;
    }
    let mut tx = db.write_tx().await?;
    let update = format!("UPDATE listings SET {} = $1, {} = $2 WHERE plugin_id = $3", mark.at_column, mark.text_column);
    let updated =
        sqlx::query(&update).bind(text.map(|_| now_ms())).bind(text).bind(id.to_string()).execute(&mut *tx).await?;
    if updated.rows_affected() == 0 {
        return Err(MarketError::NotFound(format!("plugin {id}")));
    }
    let action = if text.is_some() { mark.actions.0 } else { mark.actions.1 };
    audit::record(&mut *tx, &caller.actor(), action, &id.to_string(), json!({ mark.detail: text })).await?;
    if let Some(reason) = text.filter(|_| mark.at_column == DELISTED.at_column) {
        crate::webhooks::plugin_delisted(&mut tx, now_ms(), &id.to_string(), reason).await?;
    }
    tx.commit().await?;
    row(db, id).await?.into_listing(true)
}

/// Every delisted plugin with when and why, for telling the tenants who have one installed
/// (their install pages); not a listing of the catalog, so no role is needed.
pub async fn delistings(db: &Db) -> Result<std::collections::BTreeMap<String, Delisting>, MarketError> {
    let rows = sqlx::query_as::<_, (String, i64, Option<String>)>(
        "SELECT plugin_id, delisted_at, delist_reason FROM listings WHERE delisted_at IS NOT NULL",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.into_iter().map(|(id, at, reason)| (id, Delisting { at, reason: reason.unwrap_or_default() })).collect())
}

/// Whether new installs of `id` are allowed: not delisted. A plugin without a listing row
/// (its refresh failed) is installable; the registry still decides whether it exists.
pub async fn is_installable(db: &Db, id: &PluginId) -> Result<bool, MarketError> {
    let delisted: Option<Option<i64>> = sqlx::query_scalar("SELECT delisted_at FROM listings WHERE plugin_id = $1")
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?;
    Ok(delisted.flatten().is_none())
}
