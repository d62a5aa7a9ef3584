//! After a request: keeping its answer for replays, rebuilding the answer of one that took
//! effect and is gone, forgetting a key whose request changed nothing.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_registry::ErrorCode;
use nexus_registry::db::now_ms;

use super::kept::{KeptRow, kept_row, stored_response};
use super::{Keyed, MAX_KEPT_RESPONSE_BYTES, in_progress};
use crate::server::{ApiError, AppState};

/// The answer of a create whose request is gone: what `GET <location>` shows of the
/// resource it created, with `201 Created` (what the create answers). Stored, so later
/// replays give the same bytes.
pub(super) async fn rebuilt(
    state: &AppState,
    keyed: &Keyed,
    request_id: &str,
    location: &str,
    authorization: Option<HeaderValue>,
) -> Result<Response, ApiError> {
    use tower::ServiceExt;
    let mut request = Request::get(location);
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let request = request.body(Body::empty()).map_err(crate::error::storage)?;
    let Ok(response) = crate::server::app(state.clone()).oneshot(request).await;
    if !response.status().is_success() {
        return Ok(response);
    }
    let bytes = to_bytes(response.into_body(), MAX_KEPT_RESPONSE_BYTES).await.map_err(crate::error::storage)?;
    let body = String::from_utf8_lossy(&bytes).into_owned();
    store(state, keyed, request_id, StatusCode::CREATED, &body).await?;
    let row = KeptRow {
        request_sha256: keyed.fingerprint.clone(),
        request_id: Some(request_id.to_string()),
        status: i64::from(StatusCode::CREATED.as_u16()),
        response: Some(body),
        location: Some(location.to_string()),
        created_at: now_ms(),
    };
    stored_response(&row).ok_or_else(|| crate::error::storage("rebuilt answer").into())
}

/// After the request: keep its answer if it took effect; answer another request's if that
/// one took effect instead.
pub(super) async fn conclude(state: &AppState, keyed: &Keyed, response: Response) -> Result<Response, ApiError> {
    let row = kept_row(state, keyed).await?;
    let status = response.status();
    match row {
        Some(row) if row.request_id.as_deref() == Some(keyed.request_id.as_str()) => {
            if status.is_success() {
                return keep(state, keyed, response).await;
            }
            // A refusal changed nothing, so a corrected request under the same key runs. A
            // failure after an effect committed keeps the key: its retry recovers the
            // effect's answer instead of making it again.
            if status.is_client_error() {
                forget(state, keyed).await?;
            }
            Ok(response)
        }
        // Another request with this key took effect first (another node): its answer.
        Some(row) => Ok(stored_response(&row).unwrap_or_else(|| in_progress().into_response())),
        // Nothing this request wrote in a transaction committed: an answer of an effect
        // outside one is still kept, as before.
        None if status.is_success() => keep(state, keyed, response).await,
        None => Ok(response),
    }
}

async fn keep(state: &AppState, keyed: &Keyed, response: Response) -> Result<Response, ApiError> {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        forget(state, keyed).await?;
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ResponseFailed,
            "the answer could not be read",
        ));
    };
    if bytes.len() > MAX_KEPT_RESPONSE_BYTES {
        // Too large to keep (an event receipt with large plugin outputs): answered, not
        // replayable; a retry with this key will run again.
        tracing::warn!(bytes = bytes.len(), "idempotent answer too large to keep");
        forget(state, keyed).await?;
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    // Token secrets are shown once and stored only as hashes: the kept answer has the
    // token's id and everything else, but not the secret.
    let kept = without_secret(&bytes).unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    store(state, keyed, &keyed.request_id, parts.status, &kept).await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Stores the answer of the request `request_id` (inserting the row when its effect was
/// outside a transaction).
async fn store(
    state: &AppState,
    keyed: &Keyed,
    request_id: &str,
    status: StatusCode,
    body: &str,
) -> Result<(), ApiError> {
    let writer = state.market.db.writer();
    let updated = sqlx::query(
        "UPDATE idempotency_keys SET status = $1, response = $2 WHERE caller = $3 AND key = $4 AND request_id = $5",
    )
    .bind(i64::from(status.as_u16()))
    .bind(body)
    .bind(&keyed.caller)
    .bind(&keyed.key)
    .bind(request_id)
    .execute(writer)
    .await
    .map_err(crate::error::storage)?;
    if updated.rows_affected() == 1 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, key, request_sha256, status, response, created_at, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (caller, key) DO NOTHING",
    )
    .bind(&keyed.caller)
    .bind(&keyed.key)
    .bind(&keyed.fingerprint)
    .bind(i64::from(status.as_u16()))
    .bind(body)
    .bind(now_ms())
    .bind(request_id)
    .execute(writer)
    .await
    .map_err(crate::error::storage)?;
    Ok(())
}

/// An answer holding a token secret (the `secret` field of an issued token), as it is kept:
/// without the secret, saying it was shown once. `None` when there is no secret.
fn without_secret(body: &[u8]) -> Option<String> {
    let mut value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let object = value.as_object_mut()?;
    object.remove("secret")?;
    object.insert("secret_shown_once".into(), serde_json::Value::Bool(true));
    Some(value.to_string())
}

/// Removes this request's row (its effect, if any, is undone or never happened).
async fn forget(state: &AppState, keyed: &Keyed) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 AND request_id = $3")
        .bind(&keyed.caller)
        .bind(&keyed.key)
        .bind(&keyed.request_id)
        .execute(state.market.db.writer())
        .await
        .map_err(crate::error::storage)?;
    Ok(())
}
