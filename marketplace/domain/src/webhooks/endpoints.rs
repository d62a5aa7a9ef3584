//! A tenant's webhook endpoints: create (with the signing secret, shown once), read, change,
//! delete, rotate the secret with an overlap; the URL rules.

use std::collections::BTreeMap;

use nexus_registry::ErrorCode;
use nexus_registry::publishers::random_hex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::WebhookKind;
use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::error::{MarketError, storage};
use crate::ids::WebhookEndpointId;
use crate::market::Market;
use crate::secrets;

/// Endpoints one tenant may have.
pub const MAX_ENDPOINTS: i64 = 10;
/// The longest URL accepted.
pub const MAX_URL_BYTES: usize = 2048;
/// The longest overlap of a rotation: a week.
pub const MAX_OVERLAP_HOURS: u32 = 168;

/// An endpoint as its tenant sees it: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Endpoint {
    #[schema(value_type = String)]
    pub id: WebhookEndpointId,
    #[schema(value_type = String)]
    pub tenant: TenantId,
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

/// A row of [`COLUMNS`].
#[derive(sqlx::FromRow)]
pub(super) struct EndpointRow {
    id: WebhookEndpointId,
    tenant_id: TenantId,
    url: String,
    description: String,
    enabled: i64,
    previous_until: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

async fn endpoint_of(market: &Market, row: EndpointRow) -> Result<Endpoint, MarketError> {
    let id = row.id;
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
    Ok(Endpoint {
        id,
        tenant: row.tenant_id,
        url: row.url,
        description: row.description,
        kinds,
        enabled: row.enabled != 0,
        previous_secret_until: row.previous_until.filter(|until| *until > now),
        created_at: row.created_at,
        updated_at: row.updated_at,
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
    let id = WebhookEndpointId::random()?;
    let secret = new_secret()?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    // The tenant's row is the lock that makes count-then-insert one step on PostgreSQL:
    // without it, concurrent creates all count the same endpoints and pass the limit.
    sqlx::query(&format!("SELECT id FROM tenants WHERE id = $1{}", market.db.for_update()))
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
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
    .bind(sealed(market, id.as_str(), &secret)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    subscribe(&mut tx, id.as_str(), tenant, &request.kinds).await?;
    market.db.note_location(&mut tx, &format!("/v1/webhooks/{id}")).await?;
    let kinds: Vec<&str> = request.kinds.iter().map(|k| k.as_str()).collect();
    audit::record(
        &mut *tx,
        &caller.actor(),
        "webhook.created",
        id.as_str(),
        json!({ "url": request.url, "kinds": kinds }),
    )
    .await?;
    tx.commit().await?;
    Ok(WithSecret { endpoint: get(market, caller, &id).await?, secret })
}

/// The endpoint `id` of the caller's tenant (operators: any tenant's).
pub(super) async fn owned(
    market: &Market,
    caller: &Caller,
    id: &WebhookEndpointId,
    scope: TenantScope,
) -> Result<EndpointRow, MarketError> {
    let tenant = match caller {
        Caller::Operator { .. } if scope == TenantScope::Read => None,
        _ => Some(caller.tenant(scope)?.clone()),
    };
    sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
    ))
    .bind(id)
    .bind(tenant.as_ref().map(TenantId::as_str))
    .fetch_optional(&market.db.pool)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("webhook endpoint {id}")))
}

pub async fn get(market: &Market, caller: &Caller, id: &WebhookEndpointId) -> Result<Endpoint, MarketError> {
    endpoint_of(market, owned(market, caller, id, TenantScope::Read).await?).await
}

/// The caller tenant's endpoints (operators name the tenant).
pub async fn list(market: &Market, caller: &Caller, tenant: Option<&TenantId>) -> Result<Vec<Endpoint>, MarketError> {
    let tenant = caller.tenant_to_read(tenant)?;
    let rows = sqlx::query_as::<_, EndpointRow>(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id"
    ))
    .bind(tenant.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    let mut endpoints = Vec::with_capacity(rows.len());
    for row in rows {
        endpoints.push(endpoint_of(market, row).await?);
    }
    Ok(endpoints)
}

pub async fn update(
    market: &Market,
    caller: &Caller,
    id: &WebhookEndpointId,
    update: EndpointUpdate,
) -> Result<Endpoint, MarketError> {
    let row = owned(market, caller, id, TenantScope::Installs).await?;
    let tenant = row.tenant_id.clone();
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
    let updated = sqlx::query(
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
    still_there(updated, id)?;
    if let Some(kinds) = &update.kinds {
        subscribe(&mut tx, id.as_str(), &tenant, kinds).await?;
    }
    let detail = json!({ "url": update.url, "enabled": update.enabled,
                         "kinds": update.kinds.as_ref().map(|k| k.iter().map(|k| k.as_str()).collect::<Vec<_>>()) });
    audit::record(&mut *tx, &caller.actor(), "webhook.updated", id.as_str(), detail).await?;
    tx.commit().await?;
    get(market, caller, id).await
}

/// Deletes an endpoint; what was queued for it is not sent.
pub async fn delete(market: &Market, caller: &Caller, id: &WebhookEndpointId) -> Result<(), MarketError> {
    owned(market, caller, id, TenantScope::Installs).await?;
    let mut tx = market.db.write_tx().await?;
    // The endpoint's row first: on PostgreSQL its lock orders two deletes of one endpoint.
    let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *tx).await?;
    still_there(deleted, id)?;
    sqlx::query("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND state IN ('queued', 'retrying')")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(&mut *tx, &caller.actor(), "webhook.deleted", id.as_str(), json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// A new secret; the current one keeps signing beside it for the overlap.
pub async fn rotate(
    market: &Market,
    caller: &Caller,
    id: &WebhookEndpointId,
    rotation: Rotation,
) -> Result<WithSecret, MarketError> {
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
    let rotated = sqlx::query(
        "UPDATE webhook_endpoints SET previous_secret_sealed = secret_sealed, previous_until = $1, secret_sealed = $2, \
         updated_at = $3 WHERE id = $4",
    )
    .bind(now + i64::from(overlap) * 3_600_000)
    .bind(sealed(market, id.as_str(), &secret)?)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    still_there(rotated, id)?;
    audit::record(
        &mut *tx,
        &caller.actor(),
        "webhook.secret_rotated",
        id.as_str(),
        json!({ "overlap_hours": overlap }),
    )
    .await?;
    tx.commit().await?;
    Ok(WithSecret { endpoint: get(market, caller, id).await?, secret })
}

/// An endpoint deleted between the ownership check and the write is not found, and the
/// transaction (dropped with the error) writes nothing.
fn still_there(result: sqlx::any::AnyQueryResult, id: &WebhookEndpointId) -> Result<(), MarketError> {
    match result.rows_affected() {
        0 => Err(MarketError::NotFound(format!("webhook endpoint {id}"))),
        _ => Ok(()),
    }
}
