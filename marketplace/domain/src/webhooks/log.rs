//! An endpoint's delivery log: each message posted (or to be) with its state, attempts, and
//! the latest attempt's status, error and latency.

use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use crate::accounts::{Caller, TenantScope};
use crate::error::{CursorPage, MarketError, storage};
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
    id: &str,
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
    let rows = sqlx::query(
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
        .iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            let due = matches!(state.as_str(), "queued" | "retrying");
            let payload: String = row.try_get("payload")?;
            Ok(WebhookDelivery {
                id: row.try_get("id")?,
                message_id: row.try_get("message_id")?,
                kind: row.try_get("kind")?,
                next_attempt_at: if due { Some(row.try_get("next_attempt_at")?) } else { None },
                state,
                attempts: row.try_get("attempts")?,
                last_status: row.try_get("last_status")?,
                last_error: row.try_get("last_error")?,
                last_latency_ms: row.try_get("last_latency_ms")?,
                payload: serde_json::from_str(&payload).map_err(storage)?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect::<Result<Vec<_>, MarketError>>()?;
    Ok(CursorPage::new(items, per_page, total, |delivery| delivery.id.clone()))
}
