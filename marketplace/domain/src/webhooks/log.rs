//! An endpoint's delivery log: each message posted (or to be) with its state, attempts, and
//! the latest attempt's status, error and latency; and its recovery, for a receiver that is
//! back: what waits for a retry or ended dead is sent again now.

use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::accounts::{Caller, TenantScope};
use crate::audit;
use crate::error::{CursorPage, MarketError, storage};
use crate::ids::WebhookEndpointId;
use crate::market::Market;

/// One message to one endpoint, as its log shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    pub id: String,
    /// The `webhook-id` header of every attempt.
    pub message_id: String,
    pub kind: String,
    /// queued, running, retrying, delivered or dead.
    pub state: String,
    pub attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// The HTTP status of the latest attempt (absent when it got no answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<i64>,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `GET /v1/webhooks/{id}/deliveries`: the endpoint's log, newest first.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    pub after: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

pub async fn log(
    market: &Market,
    caller: &Caller,
    id: &WebhookEndpointId,
    query: &LogQuery,
) -> Result<CursorPage<WebhookDelivery>, MarketError> {
    super::endpoints::owned(market, caller, id, TenantScope::Read).await?;
    let per_page = crate::error::per_page(query.per_page, 50)?;
    let (before_at, before_id) = match &query.after {
        None => (i64::MAX, String::new()),
        Some(after) => {
            let at: i64 =
                sqlx::query_scalar("SELECT created_at FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2")
                    .bind(after)
                    .bind(id)
                    .fetch_optional(&market.db.pool)
                    .await?
                    .ok_or_else(|| {
                        MarketError::invalid(ErrorCode::InvalidQuery, format!("`after` {after} is not in this log"))
                    })?;
            (at, after.clone())
        }
    };
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = $1")
        .bind(id)
        .fetch_one(&market.db.pool)
        .await?;
    let rows = sqlx::query_as::<_, DeliveryRow>(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(id)
    .bind(before_at)
    .bind(&before_id)
    .bind(i64::from(per_page) + 1)
    .fetch_all(&market.db.pool)
    .await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let due = matches!(row.state.as_str(), "queued" | "retrying");
            Ok(WebhookDelivery {
                id: row.id,
                message_id: row.message_id,
                kind: row.kind,
                next_attempt_at: due.then_some(row.next_attempt_at),
                state: row.state,
                attempts: row.attempts,
                last_status: row.last_status,
                last_error: row.last_error,
                last_latency_ms: row.last_latency_ms,
                payload: serde_json::from_str(&row.payload).map_err(storage)?,
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
        })
        .collect::<Result<Vec<_>, MarketError>>()?;
    Ok(CursorPage::new(items, per_page, total, |delivery| delivery.id.clone()))
}

/// The columns of `webhook_deliveries` a log entry shows.
#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    message_id: String,
    kind: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    last_latency_ms: Option<i64>,
    payload: String,
    created_at: i64,
    updated_at: i64,
}

/// `POST /v1/webhooks/{id}/recover`: which messages to send again.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// Only messages created at or after this moment (milliseconds since the epoch);
    /// without it, every message waiting for a retry or dead.
    pub since: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recovered {
    /// How many messages are due now.
    pub messages: u64,
}

/// Makes the endpoint's retrying and dead messages due now, for a receiver that is back
/// before the schedule's next attempt (up to 8 h away) or after the messages ran out of
/// attempts. A retrying message keeps its attempt count; a dead one starts the schedule
/// again. Each keeps its id, so a receiver that got one after all sees a repeat it can drop.
pub async fn recover(
    market: &Market,
    caller: &Caller,
    id: &WebhookEndpointId,
    recovery: Recovery,
) -> Result<Recovered, MarketError> {
    super::endpoints::owned(market, caller, id, TenantScope::Installs).await?;
    let since = recovery.since.unwrap_or(0);
    if since < 0 {
        return Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            "`since` is milliseconds since the epoch, not negative",
        ));
    }
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let recovered = sqlx::query(
        "UPDATE webhook_deliveries SET attempts = CASE WHEN state = 'dead' THEN 0 ELSE attempts END, \
         state = 'queued', next_attempt_at = $1, claimed_by = NULL, updated_at = $1 \
         WHERE endpoint_id = $2 AND state IN ('retrying', 'dead') AND created_at >= $3",
    )
    .bind(now)
    .bind(id)
    .bind(since)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if recovered > 0 {
        let detail = serde_json::json!({ "messages": recovered, "since": recovery.since });
        audit::record(&mut *tx, &caller.actor(), "webhook.recovered", id.as_str(), detail).await?;
    }
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(Recovered { messages: recovered })
}
