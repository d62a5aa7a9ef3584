//! Tenants' webhook endpoints: where Nexus posts what the tenant's systems should hear about
//! (a plugin's actions, a dead delivery, a paused install, a declined payment), signed as the
//! Standard Webhooks specification describes (`sender.rs`), retried on the delivery
//! schedule, each attempt logged with its status and latency.
//!
//! - **Endpoints** belong to one tenant: an `https` URL (plain `http` only to an address
//!   literal in a range the operator allowed for outbound calls), the kinds it receives, a
//!   signing secret shown once at creation and at each rotation. A rotation keeps the
//!   previous secret signing beside the new one for the overlap asked (default 24 h), so a
//!   receiver can switch without losing a message. Secrets are sealed with the master key.
//! - **Messages** are written where what causes them is recorded (`enqueue`), one row per
//!   subscribed endpoint, with a message id made from the cause, so writing one twice keeps
//!   one row and every attempt carries the same `webhook-id`.

use std::collections::BTreeMap;

use nexus_registry::ErrorCode;
use nexus_registry::publishers::random_hex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::error::{CursorPage, MarketError, storage};
use crate::market::Market;
use crate::secrets;

pub mod sender;

/// What an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum WebhookKind {
    /// A plugin asked the platform to do something for the tenant (its outcome's `actions`).
    #[serde(rename = "plugin.action")]
    PluginAction,
    /// A queued event's delivery failed for the whole retry schedule.
    #[serde(rename = "delivery.dead")]
    DeliveryDead,
    /// An install stopped running: its circuit breaker tripped, or its payment failed.
    #[serde(rename = "install.paused")]
    InstallPaused,
    /// A charge's collection was declined (the next attempt's time, or none when the retries
    /// are used up and the install pauses).
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    /// An operator delisted a plugin the tenant has installed (the install keeps running; new
    /// installs are refused), with the reason.
    #[serde(rename = "plugin.delisted")]
    PluginDelisted,
    /// A charge was issued: a price due at install or a plan change, a period, usage.
    #[serde(rename = "bill.issued")]
    BillIssued,
}

impl WebhookKind {
    pub const ALL: [Self; 6] = [
        Self::PluginAction,
        Self::DeliveryDead,
        Self::InstallPaused,
        Self::PaymentFailed,
        Self::PluginDelisted,
        Self::BillIssued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PluginAction => "plugin.action",
            Self::DeliveryDead => "delivery.dead",
            Self::InstallPaused => "install.paused",
            Self::PaymentFailed => "payment.failed",
            Self::PluginDelisted => "plugin.delisted",
            Self::BillIssued => "bill.issued",
        }
    }
}

/// Endpoints one tenant may have.
pub const MAX_ENDPOINTS: i64 = 10;
/// The longest URL accepted.
pub const MAX_URL_BYTES: usize = 2048;
/// The longest overlap of a rotation: a week.
pub const MAX_OVERLAP_HOURS: u32 = 168;

/// An endpoint as its tenant sees it: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Endpoint {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub description: String,
    pub kinds: Vec<WebhookKind>,
    pub enabled: bool,
    /// Until when the secret before the last rotation still signs beside the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An endpoint just created, or its secret just rotated: the only answers with the secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WithSecret {
    pub endpoint: Endpoint,
    /// `whsec_` and the base64 of 32 random bytes: verify each message's
    /// `webhook-signature` with it. Shown this once.
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    pub url: String,
    pub kinds: Vec<WebhookKind>,
    #[serde(default)]
    pub description: String,
}

/// `PATCH /v1/webhooks/{id}`: what is given changes.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub kinds: Option<Vec<WebhookKind>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Hours the current secret keeps signing beside the new one (0 to 168, default 24).
    pub overlap_hours: Option<u32>,
}

const COLUMNS: &str = "id, tenant_id, url, description, enabled, previous_until, created_at, updated_at";

async fn endpoint_of(market: &Market, row: &AnyRow) -> Result<Endpoint, MarketError> {
    let id: String = row.try_get("id")?;
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM webhook_subscriptions WHERE endpoint_id = $1 ORDER BY kind")
            .bind(&id)
            .fetch_all(&market.db.pool)
            .await?;
    let kinds = kinds
        .iter()
        .map(|kind| {
            WebhookKind::ALL
                .into_iter()
                .find(|known| known.as_str() == kind)
                .ok_or_else(|| storage(format!("unknown webhook kind {kind:?}")))
        })
        .collect::<Result<_, _>>()?;
    let now = market.billing.clock.now_ms();
    let until: Option<i64> = row.try_get("previous_until")?;
    Ok(Endpoint {
        id,
        tenant: row.try_get("tenant_id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        kinds,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        previous_secret_until: until.filter(|until| *until > now),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A signing secret: `whsec_` and 32 random bytes in base64.
fn new_secret() -> Result<String, MarketError> {
    use base64::Engine;
    let bytes = hex::decode(random_hex(32)?).map_err(storage)?;
    Ok(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

fn sealed(market: &Market, endpoint: &str, secret: &str) -> Result<String, MarketError> {
    let map = BTreeMap::from([("secret".to_string(), secret.to_string())]);
    secrets::seal(&market.master_key, endpoint, &map).map_err(|e| storage(format!("sealing a webhook secret: {e}")))
}

/// Checks a webhook URL: `https`, or plain `http` only to an address literal in a range the
/// operator allowed; never an internal address the operator did not allow; no credentials.
pub fn check_url(market: &Market, url: &str) -> Result<(), MarketError> {
    let bad = |message: String| MarketError::invalid(ErrorCode::InvalidWebhookUrl, message);
    if url.len() > MAX_URL_BYTES {
        return Err(bad(format!("`url` must be at most {MAX_URL_BYTES} bytes")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("`url` is not a URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("`url` must not carry a user name or password; put credentials in the path".into()));
    }
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let literal: Option<std::net::IpAddr> = host.parse().ok();
    let policy = &market.runner.host().config().outbound;
    if let Some(ip) = literal
        && !policy.permits(ip)
    {
        return Err(bad(format!("{ip} is an internal address the operator has not allowed for outbound calls")));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if literal.is_some_and(nexus_host::capability::http::network::is_internal) => Ok(()),
        "http" => Err(bad("`url` must be https (plain http only to an internal address the operator allowed)".into())),
        other => Err(bad(format!("`url` scheme {other} is not https"))),
    }
}

fn check_kinds(kinds: &[WebhookKind]) -> Result<(), MarketError> {
    if kinds.is_empty() {
        let known: Vec<&str> = WebhookKind::ALL.iter().map(|k| k.as_str()).collect();
        return Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            format!("`kinds` must name at least one of {}", known.join(", ")),
        ));
    }
    Ok(())
}

async fn subscribe(
    tx: &mut sqlx::AnyConnection,
    endpoint: &str,
    tenant: &TenantId,
    kinds: &[WebhookKind],
) -> Result<(), MarketError> {
    sqlx::query("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1").bind(endpoint).execute(&mut *tx).await?;
    let mut kinds = kinds.to_vec();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        sqlx::query("INSERT INTO webhook_subscriptions (endpoint_id, tenant_id, kind) VALUES ($1, $2, $3)")
            .bind(endpoint)
            .bind(tenant.as_str())
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// `POST /v1/webhooks`: a new endpoint of the calling tenant, with its secret.
pub async fn create(market: &Market, caller: &Caller, request: NewEndpoint) -> Result<WithSecret, MarketError> {
    let tenant = caller.tenant(TenantScope::Installs)?;
    check_url(market, &request.url)?;
    check_kinds(&request.kinds)?;
    MarketError::check_text(ErrorCode::InvalidRequest, "description", &request.description, 200)?;
    let id = format!("whe_{}", random_hex(10)?);
    let secret = new_secret()?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(MarketError::conflict(
            ErrorCode::TooManyWebhooks,
            format!("a tenant may have {MAX_ENDPOINTS} webhook endpoints; delete one first"),
        ));
    }
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, description, secret_sealed, enabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
    )
    .bind(&id)
    .bind(tenant.as_str())
    .bind(&request.url)
    .bind(&request.description)
    .bind(sealed(market, &id, &secret)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    subscribe(&mut tx, &id, tenant, &request.kinds).await?;
    market.db.note_location(&mut tx, &format!("/v1/webhooks/{id}")).await?;
    let kinds: Vec<&str> = request.kinds.iter().map(|k| k.as_str()).collect();
    audit::record(&mut *tx, &caller.actor(), "webhook.created", &id, json!({ "url": request.url, "kinds": kinds }))
        .await?;
    tx.commit().await?;
    Ok(WithSecret { endpoint: get(market, caller, &id).await?, secret })
}

/// The endpoint `id` of the caller's tenant (operators: any tenant's).
async fn owned(market: &Market, caller: &Caller, id: &str, scope: TenantScope) -> Result<AnyRow, MarketError> {
    let tenant = match caller {
        Caller::Operator { .. } if scope == TenantScope::Read => None,
        _ => Some(caller.tenant(scope)?.clone()),
    };
    sqlx::query(&format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"))
        .bind(id)
        .bind(tenant.as_ref().map(TenantId::as_str))
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("webhook endpoint {id}")))
}

pub async fn get(market: &Market, caller: &Caller, id: &str) -> Result<Endpoint, MarketError> {
    endpoint_of(market, &owned(market, caller, id, TenantScope::Read).await?).await
}

/// The caller tenant's endpoints (operators name the tenant).
pub async fn list(market: &Market, caller: &Caller, tenant: Option<&TenantId>) -> Result<Vec<Endpoint>, MarketError> {
    let tenant = match (caller, tenant) {
        (Caller::Operator { .. }, Some(tenant)) => tenant.clone(),
        (Caller::Operator { .. }, None) => {
            return Err(MarketError::invalid(ErrorCode::InvalidQuery, "operators must name the tenant: ?tenant=<id>"));
        }
        (_, named) => {
            let own = caller.tenant(TenantScope::Read)?;
            if named.is_some_and(|named| named != own) {
                return Err(MarketError::NotFound(format!("tenant {}", named.map(TenantId::as_str).unwrap_or(""))));
            }
            own.clone()
        }
    };
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id"))
            .bind(tenant.as_str())
            .fetch_all(&market.db.pool)
            .await?;
    let mut endpoints = Vec::with_capacity(rows.len());
    for row in &rows {
        endpoints.push(endpoint_of(market, row).await?);
    }
    Ok(endpoints)
}

pub async fn update(
    market: &Market,
    caller: &Caller,
    id: &str,
    update: EndpointUpdate,
) -> Result<Endpoint, MarketError> {
    let row = owned(market, caller, id, TenantScope::Installs).await?;
    let tenant: TenantId = row.try_get::<String, _>("tenant_id")?.parse()?;
    if let Some(url) = &update.url {
        check_url(market, url)?;
    }
    if let Some(kinds) = &update.kinds {
        check_kinds(kinds)?;
    }
    if let Some(description) = &update.description {
        MarketError::check_text(ErrorCode::InvalidRequest, "description", description, 200)?;
    }
    let mut tx = market.db.write_tx().await?;
    sqlx::query(
        "UPDATE webhook_endpoints SET url = COALESCE($1, url), description = COALESCE($2, description), \
         enabled = COALESCE($3, enabled), updated_at = $4 WHERE id = $5",
    )
    .bind(update.url.as_deref())
    .bind(update.description.as_deref())
    .bind(update.enabled.map(i64::from))
    .bind(market.billing.clock.now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if let Some(kinds) = &update.kinds {
        subscribe(&mut tx, id, &tenant, kinds).await?;
    }
    let detail = json!({ "url": update.url, "enabled": update.enabled,
                         "kinds": update.kinds.as_ref().map(|k| k.iter().map(|k| k.as_str()).collect::<Vec<_>>()) });
    audit::record(&mut *tx, &caller.actor(), "webhook.updated", id, detail).await?;
    tx.commit().await?;
    get(market, caller, id).await
}

/// Deletes an endpoint; what was queued for it is not sent.
pub async fn delete(market: &Market, caller: &Caller, id: &str) -> Result<(), MarketError> {
    owned(market, caller, id, TenantScope::Installs).await?;
    let mut tx = market.db.write_tx().await?;
    sqlx::query("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND state IN ('queued', 'retrying')")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(&mut *tx, &caller.actor(), "webhook.deleted", id, json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// A new secret; the current one keeps signing beside it for the overlap.
pub async fn rotate(market: &Market, caller: &Caller, id: &str, rotation: Rotation) -> Result<WithSecret, MarketError> {
    let overlap = rotation.overlap_hours.unwrap_or(24);
    if overlap > MAX_OVERLAP_HOURS {
        return Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            format!("`overlap_hours` must be 0 to {MAX_OVERLAP_HOURS}"),
        ));
    }
    owned(market, caller, id, TenantScope::Installs).await?;
    let secret = new_secret()?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret_sealed = secret_sealed, previous_until = $1, secret_sealed = $2, \
         updated_at = $3 WHERE id = $4",
    )
    .bind(now + i64::from(overlap) * 3_600_000)
    .bind(sealed(market, id, &secret)?)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    audit::record(&mut *tx, &caller.actor(), "webhook.secret_rotated", id, json!({ "overlap_hours": overlap })).await?;
    tx.commit().await?;
    Ok(WithSecret { endpoint: get(market, caller, id).await?, secret })
}

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
    owned(market, caller, id, TenantScope::Read).await?;
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

/// The `YYYY-MM-DDTHH:MM:SSZ` of `at_ms`, for messages' `timestamp`.
pub(crate) fn rfc3339(at_ms: i64) -> String {
    let seconds = at_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        nexus_money::period::day_label(at_ms),
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Queues message `message_id` of `kind` for each endpoint of `tenant` subscribed to it, in
/// the caller's transaction (so it commits with what caused it). The body is
/// `{"type", "timestamp", "data"}`. Writing the same message again adds nothing.
pub async fn enqueue(
    tx: &mut sqlx::AnyConnection,
    at_ms: i64,
    tenant: &str,
    kind: WebhookKind,
    message_id: &str,
    data: Value,
) -> Result<u64, MarketError> {
    let body = json!({ "type": kind.as_str(), "timestamp": rfc3339(at_ms), "data": data }).to_string();
    let inserted = sqlx::query(
        "INSERT INTO webhook_deliveries (id, message_id, endpoint_id, tenant_id, kind, payload, state, attempts, \
         next_attempt_at, created_at, updated_at) \
         SELECT 'whd_' || $1 || '_' || e.id, $1, e.id, e.tenant_id, $2, $3, 'queued', 0, $4, $4, $4 \
         FROM webhook_subscriptions s JOIN webhook_endpoints e ON e.id = s.endpoint_id \
         WHERE s.tenant_id = $5 AND s.kind = $2 AND e.enabled = 1 \
         ON CONFLICT (message_id, endpoint_id) DO NOTHING",
    )
    .bind(message_id)
    .bind(kind.as_str())
    .bind(body)
    .bind(at_ms)
    .bind(tenant)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected())
}

/// Whether `tenant` has an enabled endpoint for `kind`: a read, so that paths that would
/// write messages only rarely (a plugin's actions) take the writer only when someone listens.
pub async fn listening(market: &Market, tenant: &str, kind: WebhookKind) -> Result<bool, MarketError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM webhook_subscriptions s JOIN webhook_endpoints e ON e.id = s.endpoint_id \
         WHERE s.tenant_id = $1 AND s.kind = $2 AND e.enabled = 1 LIMIT 1",
    )
    .bind(tenant)
    .bind(kind.as_str())
    .fetch_optional(&market.db.pool)
    .await?;
    Ok(found.is_some())
}

/// Which of `tenants` have an enabled endpoint for `kind`, read in the caller's transaction.
pub async fn listening_among(
    conn: &mut sqlx::AnyConnection,
    tenants: &[&str],
    kind: WebhookKind,
) -> Result<std::collections::HashSet<String>, MarketError> {
    let mut unique: Vec<&str> = tenants.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut found = std::collections::HashSet::new();
    for chunk in unique.chunks(500) {
        let sql = format!(
            "SELECT DISTINCT s.tenant_id FROM webhook_subscriptions s JOIN webhook_endpoints e ON e.id = s.endpoint_id \
             WHERE s.kind = $1 AND e.enabled = 1 AND s.tenant_id IN ({})",
            nexus_registry::db::placeholders(2, chunk.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(kind.as_str());
        for tenant in chunk {
            query = query.bind(*tenant);
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// Queues a plugin's actions from an applied invocation: message `msg_<invocation>_<n>` per
/// action. Called after the record is durable, and again for every answer from the applied
/// record (a resend, a retry, a worker taking over a killed node's delivery), so an action is
/// queued once even if the process died between the record and this.
pub async fn enqueue_actions(market: &Market, record: &crate::records::InvocationRecord) -> Result<(), MarketError> {
    if record.actions.is_empty() || !listening(market, &record.tenant, WebhookKind::PluginAction).await? {
        return Ok(());
    }
    let mut tx = market.db.write_tx().await?;
    for (n, action) in record.actions.iter().enumerate() {
        let data = json!({
            "install": record.install, "plugin": record.plugin, "version": record.version,
            "event_id": record.event_id, "invocation": record.id,
            "action": { "kind": action.kind, "payload": action.payload },
        });
        let message = format!("msg_{}_{n}", record.id);
        enqueue(&mut tx, market.billing.clock.now_ms(), &record.tenant, WebhookKind::PluginAction, &message, data)
            .await?;
    }
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(())
}

/// Queues `install.paused` for the install's tenant, in the transaction that paused it.
/// `cause` is `failures` (the circuit breaker) or `payment`.
pub async fn install_paused(
    tx: &mut sqlx::AnyConnection,
    at_ms: i64,
    install: &str,
    cause: &str,
    reason: &str,
) -> Result<(), MarketError> {
    let row = sqlx::query("SELECT tenant_id, plugin_id, version FROM installs WHERE id = $1")
        .bind(install)
        .fetch_one(&mut *tx)
        .await?;
    let tenant: String = row.try_get("tenant_id")?;
    let data = json!({ "install": install, "plugin": row.try_get::<String, _>("plugin_id")?,
                       "version": row.try_get::<String, _>("version")?, "cause": cause, "reason": reason });
    enqueue(tx, at_ms, &tenant, WebhookKind::InstallPaused, &format!("msg_paused_{install}_{at_ms}"), data).await?;
    Ok(())
}

/// Queues `payment.failed` for a declined collection attempt, in the transaction that
/// records the decline; one message per charge and attempt.
pub async fn payment_failed(
    tx: &mut sqlx::AnyConnection,
    at_ms: i64,
    install: &str,
    charge: &str,
    attempt: i64,
    reason: &str,
    next_attempt_at: Option<i64>,
) -> Result<(), MarketError> {
    let tenant: String =
        sqlx::query_scalar("SELECT tenant_id FROM installs WHERE id = $1").bind(install).fetch_one(&mut *tx).await?;
    let data = json!({ "charge": charge, "install": install, "attempt": attempt, "reason": reason,
                       "next_attempt_at": next_attempt_at });
    let message = format!("msg_declined_{charge}_{attempt}");
    enqueue(tx, at_ms, &tenant, WebhookKind::PaymentFailed, &message, data).await?;
    Ok(())
}

/// Queues `plugin.delisted` for every tenant with a live install of `plugin`, in the
/// transaction that delists it.
pub async fn plugin_delisted(
    tx: &mut sqlx::AnyConnection,
    at_ms: i64,
    plugin: &str,
    reason: &str,
) -> Result<(), MarketError> {
    let installs = sqlx::query("SELECT id, tenant_id FROM installs WHERE plugin_id = $1 AND status <> 'uninstalled'")
        .bind(plugin)
        .fetch_all(&mut *tx)
        .await?;
    for install in &installs {
        let (id, tenant): (String, String) = (install.try_get("id")?, install.try_get("tenant_id")?);
        let data = json!({ "plugin": plugin, "install": id, "reason": reason,
                           "effect": "the install keeps running; new installs are refused while delisted" });
        enqueue(tx, at_ms, &tenant, WebhookKind::PluginDelisted, &format!("msg_delisted_{id}_{at_ms}"), data).await?;
    }
    Ok(())
}
