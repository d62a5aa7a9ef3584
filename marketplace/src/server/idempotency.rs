//! Idempotency keys on creating requests: a `POST` with an `Idempotency-Key` header runs
//! once per key and caller; a retry with the same key and body gets the first answer again
//! (with `idempotent-replayed: true`), the same key with another body is refused, and a
//! retry while the first is still running is told so. Keys last 24 hours.
//!
//! The caller is authenticated first (a revoked token gets no replay) and keys are kept per
//! token (the sha256 of the `Authorization` header), so keys of different tokens never meet.
//! Only answers of requests that took effect (2xx) are kept: a refusal changed nothing, so a
//! corrected request under the same key runs. An answer carrying a token secret is kept
//! without the secret (shown once, stored only as a hash): a retry gets the same token's id
//! and `secret_shown_once: true`, and never mints a second credential.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nexus_registry::db::{is_unique_violation, now_ms};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{ApiError, AppState, MAX_UPLOAD_BYTES};

pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_BYTES: usize = 255;
const KEEP_MS: i64 = 24 * 60 * 60 * 1000;
/// A claim still running after this long is taken as abandoned. Longer than any request
/// may take (invocations are bounded by their wall-clock limit).
const ABANDONED_MS: i64 = 60 * 1000;
/// Answers larger than this are returned but not kept.
const MAX_KEPT_RESPONSE_BYTES: usize = 1 << 20;

/// How often a request re-tries its claim when the claim it collided with vanished (the
/// other request's answer was not kept): then it may run itself.
const CLAIM_ATTEMPTS: usize = 3;

fn worth_keeping(status: StatusCode) -> bool {
    status.is_success()
}

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match handle(state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(state: AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(key) = request.headers().get(HEADER) else { return Ok(next.run(request).await) };
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let key = key.to_str().ok().filter(|k| !k.is_empty() && k.len() <= MAX_KEY_BYTES).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters"),
        )
    })?;
    let key = key.to_string();
    // A replay must not outlive the token: the caller is authenticated before anything is
    // looked up.
    let token = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = token.strip_prefix("Bearer ").ok_or(nexus_registry::RegistryError::Unauthenticated)?;
    let authenticated = crate::accounts::authenticate(&state.market.db, &state.market.registry, token).await?;
    let caller = hex::encode(Sha256::digest(
        request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or_default(),
    ));
    let (mut parts, body) = request.into_parts();
    // The route's `Auth` takes the caller from here rather than looking the token up again.
    parts.extensions.insert(authenticated);
    let bytes = to_bytes(body, MAX_UPLOAD_BYTES).await.map_err(|error| {
        if super::error::body_timed_out(&error) {
            return super::error::body_timeout();
        }
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request bodies are at most {MAX_UPLOAD_BYTES} bytes"),
        )
    })?;
    let mut fingerprint = Sha256::new();
    fingerprint.update(parts.method.as_str());
    fingerprint.update(b" ");
    fingerprint.update(parts.uri.path());
    fingerprint.update(b"\n");
    fingerprint.update(&bytes);
    let fingerprint = hex::encode(fingerprint.finalize());

    let pool = &state.market.db.pool;
    let now = now_ms();
    // Expired keys, and claims whose request never finished (its client went away and the
    // handler was dropped): the retry may run.
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 \
         AND (created_at < $3 OR (status = 0 AND created_at < $4))",
    )
    .bind(&caller)
    .bind(&key)
    .bind(now - KEEP_MS)
    .bind(now - ABANDONED_MS)
    .execute(pool)
    .await
    .map_err(crate::error::storage)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (caller, key, request_sha256, status, created_at) VALUES ($1, $2, $3, 0, $4)",
        )
        .bind(&caller)
        .bind(&key)
        .bind(&fingerprint)
        .bind(now)
        .execute(pool)
        .await;
        match claimed {
            Ok(_) => break,
            Err(error) if is_unique_violation(&error) => {
                match replay(&state, &caller, &key, &fingerprint).await? {
                    Some(response) => return Ok(response),
                    // The claim was released between our insert and our read: claim again.
                    None if attempt < CLAIM_ATTEMPTS => continue,
                    None => return Err(in_progress()),
                }
            }
            Err(error) => return Err(crate::error::storage(error).into()),
        }
    }

    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = response.status();
    if !worth_keeping(status) {
        forget(&state, &caller, &key).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        forget(&state, &caller, &key).await?;
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "response_failed",
            "the answer could not be read",
        ));
    };
    if bytes.len() > MAX_KEPT_RESPONSE_BYTES {
        // Too large to keep (an event receipt with large plugin outputs): answered, not
        // replayable; a retry with this key will run again.
        tracing::warn!(bytes = bytes.len(), "idempotent answer too large to keep");
        forget(&state, &caller, &key).await?;
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    // Token secrets are shown once and stored only as hashes: the kept answer has the
    // token's id and everything else, but not the secret.
    let kept = without_secret(&bytes).unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    sqlx::query("UPDATE idempotency_keys SET status = $1, response = $2 WHERE caller = $3 AND key = $4")
        .bind(i64::from(status.as_u16()))
        .bind(kept)
        .bind(&caller)
        .bind(&key)
        .execute(pool)
        .await
        .map_err(crate::error::storage)?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
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

fn in_progress() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_in_progress",
        "a request with this Idempotency-Key is still running; retry shortly",
    )
}

async fn forget(state: &AppState, caller: &str, key: &str) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2")
        .bind(caller)
        .bind(key)
        .execute(&state.market.db.pool)
        .await
        .map_err(crate::error::storage)?;
    Ok(())
}

/// The kept answer for `key`; `None` if the claim is gone (its request's answer was not kept).
async fn replay(state: &AppState, caller: &str, key: &str, fingerprint: &str) -> Result<Option<Response>, ApiError> {
    let row =
        sqlx::query("SELECT request_sha256, status, response FROM idempotency_keys WHERE caller = $1 AND key = $2")
            .bind(caller)
            .bind(key)
            .fetch_optional(&state.market.db.pool)
            .await
            .map_err(crate::error::storage)?;
    let Some(row) = row else { return Ok(None) };
    let stored: String = row.try_get("request_sha256").map_err(crate::error::storage)?;
    if stored != fingerprint {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request; use a new key",
        ));
    }
    let status: i64 = row.try_get("status").map_err(crate::error::storage)?;
    let Some(status) = u16::try_from(status).ok().filter(|s| *s != 0).and_then(|s| StatusCode::from_u16(s).ok()) else {
        return Err(in_progress());
    };
    let body: Option<String> = row.try_get("response").map_err(crate::error::storage)?;
    let mut response = (status, body.unwrap_or_default()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(response))
}
