//! Idempotency keys on changing requests: a `POST`, `PUT`, `PATCH` or `DELETE` with an
//! `Idempotency-Key` header takes effect once per key and caller; a retry with the same key and body gets the first answer
//! again (with `idempotent-replayed: true`), and the same key with another body is refused.
//! Keys last 24 hours.
//!
//! The key commits with the effect (as Stripe and Formance keep key, request hash and
//! result together): nothing is claimed before the request runs. Its row is written by a
//! [`WriteHook`] at the start of each write transaction the request begins, so it exists
//! exactly when something the request wrote has committed. Then:
//! - a request that took effect always replays: its answer is stored after it; if the
//!   process died between the commit and that, the answer is rebuilt from the resource the
//!   effect noted ([`Db::note_location`](nexus_registry::Db::note_location));
//! - a request that did not take effect (refused, failed, or killed before committing)
//!   leaves nothing, so its retry runs at once;
//! - a duplicate arriving while the first still runs on this node waits for it and replays
//!   its answer; on another node (PostgreSQL), its first write waits on the key's row, finds
//!   it taken and answers `409 idempotency_in_progress` until the first has answered.
//!
//! The caller is authenticated first (a revoked token gets no replay) and keys are kept per
//! token (the sha256 of the `Authorization` header). An answer carrying a token secret is
//! kept without the secret (shown once, stored only as a hash).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nexus_registry::ErrorCode;
use nexus_registry::db::process_id;
use nexus_registry::db::{HookFuture, WriteHook, now_ms, with_write_hook};
use nexus_registry::publishers::random_hex;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{ApiError, AppState, MAX_UPLOAD_BYTES};

pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_BYTES: usize = 255;
const KEEP_MS: i64 = 24 * 60 * 60 * 1000;
/// A key whose effect committed without an answer, younger than this, is taken as still
/// running on another node; older, its request died between commit and answer.
const ANSWER_WAIT_MS: i64 = 60 * 1000;
/// Answers larger than this are returned but not kept.
const MAX_KEPT_RESPONSE_BYTES: usize = 1 << 20;

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match handle(state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// One keyed request: who sent it, under which key, with what.
struct Keyed {
    caller: String,
    key: String,
    fingerprint: String,
    /// This attempt's own id: the row it writes says which request took effect.
    request_id: String,
}

async fn handle(state: AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(key) = request.headers().get(HEADER) else { return Ok(next.run(request).await) };
    // Every method that changes something takes a key (a plan change is a `PUT`); reads
    // have nothing to repeat.
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.run(request).await);
    }
    let key = valid_key(key)?;
    // A replay must not outlive the token: the caller is authenticated before anything is
    // looked up.
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let token = authorization.as_ref().and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = token.strip_prefix("Bearer ").ok_or(nexus_registry::RegistryError::Unauthenticated)?;
    let authenticated = crate::accounts::authenticate(&state.market.db, &state.market.registry, token).await?;
    let (mut parts, body) = request.into_parts();
    // The route's `Auth` takes the caller from here rather than looking the token up again.
    parts.extensions.insert(authenticated);
    let bytes = read_body(body).await?;
    let mut keyed = Keyed {
        caller: hex::encode(Sha256::digest(authorization.as_ref().map(HeaderValue::as_bytes).unwrap_or_default())),
        key,
        fingerprint: fingerprint(parts.method.as_str(), parts.uri.path(), &bytes),
        request_id: format!("{}:{}", process_id(), random_hex(8).map_err(crate::error::storage)?),
    };

    // Duplicates on this node wait for the first to finish, then replay its answer.
    let lock = key_lock(&format!("{}\n{}", keyed.caller, keyed.key));
    let _turn = lock.lock().await;
    match kept(&state, &keyed).await? {
        Kept::Free => {}
        Kept::Answer(answer) => return Ok(answer),
        Kept::Orphan { request_id, location: Some(location) } => {
            return rebuilt(&state, &keyed, &request_id, &location, authorization).await;
        }
        // Run again as the request that took effect: what it wrote is found, not repeated
        // (refunds, plan changes and adjustments keep their own keys; runs are exactly once).
        Kept::Orphan { request_id, location: None } => keyed.request_id = request_id,
    }
    crate::pause::at("idempotency.before_run").await;
    let keyed = Arc::new(keyed);
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = with_write_hook(keyed.clone(), next.run(request)).await;
    crate::pause::at("idempotency.before_answer").await;
    conclude(&state, &keyed, response).await
}

fn valid_key(key: &HeaderValue) -> Result<String, ApiError> {
    key.to_str().ok().filter(|k| !k.is_empty() && k.len() <= MAX_KEY_BYTES).map(str::to_string).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidIdempotencyKey,
            format!("Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters"),
        )
    })
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    to_bytes(body, MAX_UPLOAD_BYTES).await.map_err(|error| {
        if super::error::body_timed_out(&error) {
            return super::error::body_timeout();
        }
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("request bodies are at most {MAX_UPLOAD_BYTES} bytes"),
        )
    })
}

fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(method);
    digest.update(b" ");
    digest.update(path);
    digest.update(b"\n");
    digest.update(body);
    hex::encode(digest.finalize())
}

/// The per-node turn of one (caller, key): held while its request runs.
fn key_lock(name: &str) -> Arc<tokio::sync::Mutex<()>> {
    // Process-wide: keys are per token, so markets in one process (tests) never share one.
    static LOCKS: LazyLock<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(lock) = locks.get(name).and_then(Weak::upgrade) {
        return lock;
    }
    locks.retain(|_, lock| lock.strong_count() > 0);
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(name.to_string(), Arc::downgrade(&lock));
    lock
}

impl WriteHook for Keyed {
    fn on_begin<'a>(&'a self, tx: &'a mut sqlx::AnyConnection) -> HookFuture<'a> {
        Box::pin(async move {
            // `DO NOTHING`, not a failing insert: a failed statement would end a PostgreSQL
            // transaction. Another node's uncommitted row makes this wait for its outcome.
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (caller, key, request_sha256, status, created_at, request_id) \
                 VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (caller, key) DO NOTHING",
            )
            .bind(&self.caller)
            .bind(&self.key)
            .bind(&self.fingerprint)
            .bind(now_ms())
            .bind(&self.request_id)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            let owner: Option<String> =
                sqlx::query_scalar("SELECT request_id FROM idempotency_keys WHERE caller = $1 AND key = $2")
                    .bind(&self.caller)
                    .bind(&self.key)
                    .fetch_one(&mut *tx)
                    .await?;
            if owner.as_deref() == Some(self.request_id.as_str()) {
                Ok(())
            } else {
                // Another request with this key took effect first: this one must not.
                Err(sqlx::Error::Protocol("the Idempotency-Key was taken by another request".into()))
            }
        })
    }

    fn on_location<'a>(&'a self, tx: &'a mut sqlx::AnyConnection, location: &'a str) -> HookFuture<'a> {
        Box::pin(async move {
            sqlx::query("UPDATE idempotency_keys SET location = $1 WHERE caller = $2 AND key = $3 AND request_id = $4")
                .bind(location)
                .bind(&self.caller)
                .bind(&self.key)
                .bind(&self.request_id)
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    }
}

/// A key's row as stored.
struct KeptRow {
    request_sha256: String,
    request_id: Option<String>,
    status: i64,
    response: Option<String>,
    location: Option<String>,
    created_at: i64,
}

async fn kept_row(state: &AppState, keyed: &Keyed) -> Result<Option<KeptRow>, ApiError> {
    let row = sqlx::query(
        "SELECT request_sha256, request_id, status, response, location, created_at FROM idempotency_keys \
         WHERE caller = $1 AND key = $2",
    )
    .bind(&keyed.caller)
    .bind(&keyed.key)
    .fetch_optional(&state.market.db.pool)
    .await
    .map_err(crate::error::storage)?;
    let Some(row) = row else { return Ok(None) };
    let read = |row: &sqlx::any::AnyRow| -> Result<KeptRow, sqlx::Error> {
        Ok(KeptRow {
            request_sha256: row.try_get("request_sha256")?,
            request_id: row.try_get("request_id")?,
            status: row.try_get("status")?,
            response: row.try_get("response")?,
            location: row.try_get("location")?,
            created_at: row.try_get("created_at")?,
        })
    };
    Ok(Some(read(&row).map_err(crate::error::storage)?))
}

/// Where a key stands when a request with it arrives.
enum Kept {
    /// Never used, or expired.
    Free,
    /// Its stored answer, or a refusal (another body, still running elsewhere).
    Answer(Response),
    /// Its effect committed, but the request that made it is gone without answering (its
    /// process died, or its client left and the request was dropped).
    Orphan { request_id: String, location: Option<String> },
}

async fn kept(state: &AppState, keyed: &Keyed) -> Result<Kept, ApiError> {
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

fn stored_response(row: &KeptRow) -> Option<Response> {
    let status = u16::try_from(row.status).ok().filter(|s| *s != 0).and_then(|s| StatusCode::from_u16(s).ok())?;
    let mut response = (status, row.response.clone().unwrap_or_default()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(location) = row.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Some(response)
}

/// The answer of a create whose request is gone: what `GET <location>` shows of the
/// resource it created, with `201 Created` (what the create answers). Stored, so later
/// replays give the same bytes.
async fn rebuilt(
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
    let Ok(response) = super::app(state.clone()).oneshot(request).await;
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
async fn conclude(state: &AppState, keyed: &Keyed, response: Response) -> Result<Response, ApiError> {
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

fn in_progress() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::IdempotencyInProgress,
        "a request with this Idempotency-Key is still running on another node; retry shortly",
    )
}

/// Keys deleted per statement by the sweep: short write transactions beside live traffic.
const SWEEP_BATCH: i64 = 1000;
/// How often each node sweeps expired keys (any node may: the delete is idempotent).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Deletes the keys that expired before `now` (kept 24 h), in short batches; how many. A key
/// met after it expired is freed where it is met as well, so the sweep only keeps the table
/// from growing with keys nobody sends again.
pub async fn sweep_expired(db: &nexus_registry::Db, now: i64) -> Result<u64, sqlx::Error> {
    let mut swept = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE (caller, key) IN \
             (SELECT caller, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
        )
        .bind(now - KEEP_MS)
        .bind(SWEEP_BATCH)
        .execute(db.writer())
        .await?
        .rows_affected();
        swept += done;
        if done < SWEEP_BATCH as u64 {
            return Ok(swept);
        }
    }
}

/// Sweeps expired keys every [`SWEEP_EVERY`] until aborted.
pub fn keep_sweeping(db: nexus_registry::Db) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep_expired(&db, now_ms()).await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "expired idempotency keys removed"),
                Err(error) => tracing::warn!(%error, "sweeping expired idempotency keys"),
            }
        }
    })
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
