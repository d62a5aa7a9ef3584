//! Reading a key's row when a request with it arrives: free, answered (replayed or
//! refused), or orphaned by a request that took effect and is gone.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_registry::ErrorCode;
use nexus_registry::db::{now_ms, process_id};

use super::{ANSWER_WAIT_MS, KEEP_MS, Keyed, in_progress};
use crate::server::{ApiError, AppState};

/// A key's row as stored.
#[derive(sqlx::FromRow)]
pub(super) struct KeptRow {
    pub(super) request_sha256: String,
    pub(super) request_id: Option<String>,
    pub(super) status: i64,
    pub(super) response: Option<String>,
    pub(super) location: Option<String>,
    pub(super) created_at: i64,
}

pub(super) async fn kept_row(state: &AppState, keyed: &Keyed) -> Result<Option<KeptRow>, ApiError> {
    let row = sqlx::query_as::<_, KeptRow>(
        "SELECT request_sha256, request_id, status, response, location, created_at FROM idempotency_keys \
         WHERE caller = $1 AND key = $2",
    )
    .bind(&keyed.caller)
    .bind(&keyed.key)
    .fetch_optional(&state.market.db.pool)
    .await
    .map_err(crate::error::storage)?;
    Ok(row)
}

/// Where a key stands when a request with it arrives.
pub(super) enum Kept {
    /// Never used, or expired.
    Free,
    /// Its stored answer, or a refusal (another body, still running elsewhere).
    Answer(Response),
    /// Its effect committed, but the request that made it is gone without answering (its
    /// process died, or its client left and the request was dropped).
    Orphan { request_id: String, location: Option<String> },
}

pub(super) async fn kept(state: &AppState, keyed: &Keyed) -> Result<Kept, ApiError> {
    let Some(row) = kept_row(state, keyed).await? else { return Ok(Kept::Free) };
    let now = now_ms();
    if row.created_at < now - KEEP_MS {
        sqlx::query("DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 AND created_at = $3")
            .bind(&keyed.caller)
            .bind(&keyed.key)
            .bind(row.created_at)
            .execute(state.market.db.writer())
            .await
            .map_err(crate::error::storage)?;
        return Ok(Kept::Free);
    }
    if row.request_sha256 != keyed.fingerprint {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different request; use a new key",
        ));
    }
    if let Some(response) = stored_response(&row) {
        return Ok(Kept::Answer(response));
    }
    let Some(request_id) = row.request_id.clone() else {
        // A claim written before keys committed with their effect (migration 0012): its
        // request never answered, so nothing of it is known to have taken effect.
        forget_claim(state, keyed, row.created_at).await?;
        return Ok(Kept::Free);
    };
    // This node holds the key's turn, so a request of this process is over; SQLite has one
    // server process; on PostgreSQL another node's request is over once it has outlived
    // the longest a request may take.
    let gone = request_id.starts_with(&format!("{}:", process_id()))
        || state.market.db.backend == nexus_registry::Backend::Sqlite
        || row.created_at < now - ANSWER_WAIT_MS;
    if !gone {
        return Err(in_progress());
    }
    Ok(Kept::Orphan { request_id, location: row.location })
}

pub(super) fn stored_response(row: &KeptRow) -> Option<Response> {
    let status = u16::try_from(row.status).ok().filter(|s| *s != 0).and_then(|s| StatusCode::from_u16(s).ok())?;
    let mut response = (status, row.response.clone().unwrap_or_default()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(location) = row.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Some(response)
}

/// Removes a claim left by an older version (no request id).
async fn forget_claim(state: &AppState, keyed: &Keyed, created_at: i64) -> Result<(), ApiError> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 AND created_at = $3 AND request_id IS NULL",
    )
    .bind(&keyed.caller)
    .bind(&keyed.key)
    .bind(created_at)
    .execute(state.market.db.writer())
    .await
    .map_err(crate::error::storage)?;
    Ok(())
}
