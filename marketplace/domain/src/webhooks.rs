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

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::accounts::TenantId;
use crate::error::MarketError;
use crate::market::Market;

mod endpoints;
mod log;
pub mod sender;

pub use endpoints::{
    Endpoint, EndpointUpdate, MAX_ENDPOINTS, MAX_OVERLAP_HOURS, MAX_URL_BYTES, NewEndpoint, Rotation, WithSecret,
    check_url, create, delete, get, list, rotate, update,
};
pub use log::{LogQuery, Recovered, Recovery, WebhookDelivery, log, recover};

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

/// Queues message `message_id` of `kind` for each endpoint of `tenant` subscribed to it, in
/// the caller's transaction (so it commits with what caused it). The body is
/// `{"type", "timestamp", "data"}`. Writing the same message again adds nothing.
pub async fn enqueue(
    tx: &mut sqlx::AnyConnection,
    at_ms: i64,
    tenant: &TenantId,
    kind: WebhookKind,
    message_id: &str,
    data: Value,
) -> Result<u64, MarketError> {
    let body = json!({ "type": kind.as_str(), "timestamp": crate::timestamps::iso(at_ms), "data": data }).to_string();
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
pub async fn listening(market: &Market, tenant: &TenantId, kind: WebhookKind) -> Result<bool, MarketError> {
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
    tenants: &[&TenantId],
    kind: WebhookKind,
) -> Result<std::collections::HashSet<TenantId>, MarketError> {
    let mut unique: Vec<&TenantId> = tenants.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut found = std::collections::HashSet::new();
    for chunk in unique.chunks(500) {
        let sql = nexus_registry::db::backend_of(conn).positional(format!(
            "SELECT DISTINCT s.tenant_id FROM webhook_subscriptions s JOIN webhook_endpoints e ON e.id = s.endpoint_id \
             WHERE s.kind = $1 AND e.enabled = 1 AND s.tenant_id IN ({})",
            nexus_registry::db::placeholders(2, chunk.len())
        ));
        let mut query = sqlx::query_scalar::<_, TenantId>(&sql).bind(kind.as_str());
        for tenant in chunk {
            query = query.bind(*tenant);
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
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
    let (tenant, plugin, version): (TenantId, String, String) =
        sqlx::query_as("SELECT tenant_id, plugin_id, version FROM installs WHERE id = $1")
            .bind(install)
            .fetch_one(&mut *tx)
            .await?;
    let data = json!({ "install": install, "plugin": plugin,
                       "version": version, "cause": cause, "reason": reason });
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
    let tenant: TenantId =
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
    let installs: Vec<(String, TenantId)> =
        sqlx::query_as("SELECT id, tenant_id FROM installs WHERE plugin_id = $1 AND status <> 'uninstalled'")
            .bind(plugin)
            .fetch_all(&mut *tx)
            .await?;
    for (id, tenant) in installs {
        let data = json!({ "plugin": plugin, "install": id, "reason": reason,
                           "effect": "the install keeps running; new installs are refused while delisted" });
        enqueue(tx, at_ms, &tenant, WebhookKind::PluginDelisted, &format!("msg_delisted_{id}_{at_ms}"), data).await?;
    }
    Ok(())
}
