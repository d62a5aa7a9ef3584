//! Posting queued webhook messages, on every node beside the event workers: claim due rows
//! (as `runner/worker.rs` claims deliveries), post each outside any transaction, settle the
//! batch in one transaction.
//!
//! Each request is signed as the Standard Webhooks specification describes: `webhook-id` (the
//! message id, the same on every attempt), `webhook-timestamp` (seconds since the epoch, when
//! the attempt is made) and `webhook-signature`, `v1,` and the base64 of
//! HMAC-SHA256(secret, "{id}.{timestamp}.{body}"), once with the current secret and, during
//! a rotation's overlap, once more with the previous one, separated by a space. A 2xx answer
//! delivers the message; anything else (another status, a refused connection, no answer
//! within 10 s) is retried on the event deliveries' schedule and then the message is dead.
//! Requests reach only addresses the operator's outbound policy permits, never follow
//! redirects, and the URL is never logged (it often carries a token).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use nexus_registry::db::process_id;
use sha2::Sha256;
use sqlx::FromRow;

use crate::error::{MarketError, storage};
use crate::market::Market;
use crate::outbox::{MAX_ATTEMPTS, jittered, wait_before};
use crate::secrets;

/// Messages one claim takes.
const BATCH: i64 = 32;
/// How long one post may take, answer included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an error answer's body kept in the log.
const MAX_KEPT_ERROR_BYTES: usize = 300;

/// The signature header's value for one message: `v1,<base64>` per secret.
pub fn signature(secrets: &[&str], message_id: &str, timestamp: i64, body: &str) -> Result<String, MarketError> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .map_err(|_| storage("a webhook secret is not base64"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(storage)?;
        mac.update(format!("{message_id}.{timestamp}.{body}").as_bytes());
        signatures
            .push(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())));
    }
    Ok(signatures.join(" "))
}

struct Claimed {
    id: String,
    message_id: String,
    endpoint: String,
    url: String,
    secrets: Vec<String>,
    payload: String,
    attempts: i64,
}

/// What one attempt got.
struct Outcome {
    status: Option<i64>,
    error: Option<String>,
    latency_ms: i64,
}

/// Claims due messages, posts them concurrently and records each attempt; returns how many
/// it claimed.
pub async fn send_due(market: &Market) -> Result<usize, MarketError> {
    let claimed = claim(market).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let posts = claimed.iter().map(|message| post(market, message));
    let outcomes = futures_util::future::join_all(posts).await;
    settle(market, &claimed, outcomes).await?;
    Ok(claimed.len())
}

/// A claimed row of `webhook_deliveries`.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: String,
    message_id: String,
    endpoint_id: String,
    payload: String,
    attempts: i64,
}

async fn claim(market: &Market) -> Result<Vec<Claimed>, MarketError> {
    let now = market.billing.clock.now_ms();
    let rows = crate::outbox::claim_due(
        market,
        "webhook_deliveries",
        ", updated_at = $3",
        "id, message_id, endpoint_id, payload, attempts",
        BATCH,
    )
    .await?;
    // Each endpoint of the batch is read and its secrets opened once.
    let mut endpoints: HashMap<String, Option<(String, Vec<String>)>> = HashMap::new();
    let mut claimed = Vec::with_capacity(rows.len());
    let mut orphans = Vec::new();
    for row in &rows {
        let ClaimedRow { id, message_id, endpoint_id: endpoint, payload, attempts } = ClaimedRow::from_row(row)?;
        if !endpoints.contains_key(&endpoint) {
            let target = target(market, &endpoint, now).await?;
            endpoints.insert(endpoint.clone(), target);
        }
        let Some((url, secrets)) = endpoints[&endpoint].clone() else {
            // Deleted meanwhile: its messages go with it (`webhooks::delete`).
            orphans.push(id);
            continue;
        };
        claimed.push(Claimed { id, message_id, url, endpoint, secrets, payload, attempts });
    }
    for orphan in orphans {
        sqlx::query("DELETE FROM webhook_deliveries WHERE id = $1").bind(orphan).execute(market.db.writer()).await?;
    }
    Ok(claimed)
}

/// An endpoint's URL and the secrets that sign for it now (the previous one during a
/// rotation's overlap); `None` if it was deleted.
async fn target(market: &Market, endpoint: &str, now: i64) -> Result<Option<(String, Vec<String>)>, MarketError> {
    let Some(target) = sqlx::query_as::<_, TargetRow>(
        "SELECT url, secret_sealed, previous_secret_sealed, previous_until FROM webhook_endpoints WHERE id = $1",
    )
    .bind(endpoint)
    .fetch_optional(&market.db.pool)
    .await?
    else {
        return Ok(None);
    };
    let open = |sealed: &str| -> Result<String, MarketError> {
        let map = secrets::open(&market.master_key, endpoint, sealed).map_err(|e| storage(e.code()))?;
        map.get("secret").cloned().ok_or_else(|| storage("a sealed webhook secret has no value"))
    };
    let mut secrets = vec![open(&target.secret_sealed)?];
    if let (Some(previous), Some(until)) = (target.previous_secret_sealed, target.previous_until)
        && until > now
    {
        secrets.push(open(&previous)?);
    }
    Ok(Some((target.url, secrets)))
}

/// An endpoint's row as [`target`] reads it.
#[derive(sqlx::FromRow)]
struct TargetRow {
    url: String,
    secret_sealed: String,
    previous_secret_sealed: Option<String>,
    previous_until: Option<i64>,
}

async fn post(market: &Market, message: &Claimed) -> Outcome {
    let started = Instant::now();
    let result = try_post(market, message).await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match result {
        Ok((status, _)) if (200..300).contains(&status) => Outcome { status: Some(status), error: None, latency_ms },
        Ok((status, body)) => {
            Outcome { status: Some(status), error: Some(format!("answered {status}: {body}")), latency_ms }
        }
        Err(error) => Outcome { status: None, error: Some(error), latency_ms },
    }
}

/// Posts one message; the answer's status and the start of its body, or why there was none.
async fn try_post(market: &Market, message: &Claimed) -> Result<(i64, String), String> {
    if let Err(refused) = super::check_url(market, &message.url) {
        return Err(refused.to_string());
    }
    let timestamp = nexus_registry::db::now_ms() / 1000;
    let secrets: Vec<&str> = message.secrets.iter().map(String::as_str).collect();
    let signature = signature(&secrets, &message.message_id, timestamp, &message.payload).map_err(|e| e.to_string())?;
    let response = market
        .runner
        .webhook_client
        .post(&message.url)
        .timeout(TIMEOUT)
        .header("content-type", "application/json")
        .header("webhook-id", &message.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(message.payload.clone())
        .send()
        .await
        // Without the URL: it may carry a token.
        .map_err(|error| describe(&error))?;
    let status = i64::from(response.status().as_u16());
    let body = response.text().await.unwrap_or_default();
    Ok((status, nexus_host::limits::clip(&body, MAX_KEPT_ERROR_BYTES)))
}

/// Why a request got no answer, without its URL.
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut cause = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(inner) = cause {
        detail = inner.to_string();
        cause = inner.source();
    }
    if detail.is_empty() { what.to_string() } else { format!("{what}: {detail}") }
}

async fn settle(market: &Market, claimed: &[Claimed], outcomes: Vec<Outcome>) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    for (message, outcome) in claimed.iter().zip(outcomes) {
        let (state, due) = match &outcome.error {
            None => ("delivered", now),
            Some(_) if message.attempts >= MAX_ATTEMPTS => ("dead", now),
            Some(_) => ("retrying", now + jittered(wait_before(message.attempts))),
        };
        if let Some(error) = &outcome.error {
            tracing::info!(endpoint = %message.endpoint, message = %message.message_id, attempt = message.attempts, %error, "webhook not delivered");
        }
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, next_attempt_at = $2, last_status = $3, last_error = $4, \
             last_latency_ms = $5, claimed_by = NULL, updated_at = $6 \
             WHERE id = $7 AND state = 'running' AND claimed_by = $8",
        )
        .bind(state)
        .bind(due)
        .bind(outcome.status)
        .bind(outcome.error)
        .bind(outcome.latency_ms)
        .bind(now)
        .bind(&message.id)
        .bind(process_id())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's example: secret, message id, timestamp and body, and the
    /// signature every implementation computes for them.
    #[test]
    fn signs_as_the_standard_webhooks_example() {
        let signed = signature(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let both = signature(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAA"], "m", 1, "{}").unwrap();
        assert_eq!(both.split(' ').count(), 2);
    }
}
