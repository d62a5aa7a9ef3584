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
//!
//! This file reads a keyed request and runs it; `kept` reads the key's row when it arrives,
//! `claim` writes it with the request's effect, `answer` keeps or rebuilds the answer after,
//! `sweep` removes expired keys.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

mod answer;
mod claim;
mod kept;
mod sweep;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nexus_registry::ErrorCode;
use nexus_registry::db::process_id;
use nexus_registry::db::with_write_hook;
use nexus_registry::publishers::random_hex;
use sha2::{Digest, Sha256};

use self::answer::{conclude, rebuilt};
use self::kept::{Kept, kept};
pub use self::sweep::{keep_sweeping, sweep_expired};
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
    let Arrived { mut keyed, request, authorization } = arrived(&state, key, request).await?;

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
    run(&state, keyed, request, next).await
}

/// A keyed request as it arrived: its key and caller, the request with its body read (and
/// the caller it authenticated as), and the `Authorization` a rebuilt answer is read with.
struct Arrived {
    keyed: Keyed,
    request: Request,
    authorization: Option<HeaderValue>,
}

/// Authenticates the caller of a keyed request and reads its body, to fingerprint it.
async fn arrived(state: &AppState, key: String, request: Request) -> Result<Arrived, ApiError> {
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
    let keyed = Keyed {
        caller: hex::encode(Sha256::digest(authorization.as_ref().map(HeaderValue::as_bytes).unwrap_or_default())),
        key,
        fingerprint: fingerprint(parts.method.as_str(), parts.uri.path(), &bytes),
        request_id: format!("{}:{}", process_id(), random_hex(8).map_err(crate::error::storage)?),
    };
    Ok(Arrived { keyed, request: Request::from_parts(parts, Body::from(bytes)), authorization })
}

/// Runs the request, its key claimed by each write transaction it begins ([`WriteHook`]),
/// then concludes: keeps its answer, or answers with the request's that took effect.
async fn run(state: &AppState, keyed: Keyed, request: Request, next: Next) -> Result<Response, ApiError> {
    crate::pause::at("idempotency.before_run").await;
    let keyed = Arc::new(keyed);
    let response = with_write_hook(keyed.clone(), next.run(request)).await;
    crate::pause::at("idempotency.before_answer").await;
    conclude(state, &keyed, response).await
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

fn in_progress() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::IdempotencyInProgress,
        "a request with this Idempotency-Key is still running on another node; retry shortly",
    )
}
