//! Asynchronous events: `POST /v1/events` with `Prefer: respond-async` keeps the event and
//! one delivery per install it is for, in one transaction, and answers 202 once that is
//! durable. Workers (`worker.rs`, on every node) run the deliveries; this file is what
//! tenants and operators see and do: an event's deliveries, the deliveries in a state, and
//! replaying dead or failed ones.
//!
//! A delivery's states: `queued` (waiting for a worker), `running` (claimed; the claim
//! lapses if its node dies), `retrying` (a transient failure; due again at
//! `next_attempt_at`), and the ends: `applied`, `failed` (a failure retrying cannot fix),
//! `dead` (still failing when the retry schedule ran out) and `cancelled` (the install was
//! uninstalled). Dead and failed deliveries can be replayed: queued again with fresh attempts.

use nexus_host::Event;
use nexus_registry::{Db, PluginId};
use serde::{Deserialize, Serialize};

mod manage;

pub use manage::{DeliveryQuery, MAX_REPLAY_IDS, ReplayRequest, Replayed, list, replay};

use super::views::EventCaller;
use super::{EventRequest, Skipped, event, not_running};
use crate::accounts::{Caller, TenantId, TenantScope};
use crate::error::{MarketError, storage};
use crate::ids::{DeliveryId, InstallId, InvocationId};
use crate::installs::Target;
use crate::market::Market;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Running,
    Retrying,
    Applied,
    Failed,
    Dead,
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [Self; 7] =
        [Self::Queued, Self::Running, Self::Retrying, Self::Applied, Self::Failed, Self::Dead, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    fn stored(text: &str) -> Result<Self, MarketError> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| MarketError::Storage(format!("unknown delivery state {text:?}")))
    }

    /// Dead and failed deliveries may be queued again.
    pub fn replayable(self) -> bool {
        matches!(self, Self::Dead | Self::Failed)
    }
}

/// One install's delivery of an asynchronous event.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueuedDelivery {
    pub id: DeliveryId,
    pub tenant: TenantId,
    pub event_id: String,
    pub install: InstallId,
    #[schema(value_type = String)]
    pub plugin: PluginId,
    pub state: DeliveryState,
    /// Attempts made so far (a replay starts again from 0).
    pub attempts: i64,
    /// When a queued or retrying delivery is due (milliseconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// The latest attempt's outcome (`ok`, or its error code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The invocation that applied the event (`GET /v1/installs/{install}/invocations/{id}`
    /// shows what it answered), or the latest failed attempt's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation: Option<InvocationId>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An asynchronous event and where each of its deliveries stands.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueuedEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub accepted_at: i64,
    pub deliveries: Vec<QueuedDelivery>,
    /// Installs that handle the type but were not running when the event was accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

pub(super) const DELIVERY_COLUMNS: &str = "id, tenant_id, event_id, install_id, plugin_id, state, attempts, next_attempt_at, \
                                last_outcome, last_error, invocation_id, created_at, updated_at";

/// The [`DELIVERY_COLUMNS`] of a `deliveries` row.
#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: DeliveryId,
    tenant_id: TenantId,
    event_id: String,
    install_id: InstallId,
    plugin_id: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_outcome: Option<String>,
    last_error: Option<String>,
    invocation_id: Option<InvocationId>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<DeliveryRow> for QueuedDelivery {
    type Error = MarketError;

    fn try_from(row: DeliveryRow) -> Result<Self, MarketError> {
        let state = DeliveryState::stored(&row.state)?;
        let due = matches!(state, DeliveryState::Queued | DeliveryState::Retrying);
        Ok(QueuedDelivery {
            id: row.id,
            tenant: row.tenant_id,
            event_id: row.event_id,
            install: row.install_id,
            plugin: row.plugin_id.parse().map_err(|e| storage(format!("stored plugin id: {e}")))?,
            state,
            attempts: row.attempts,
            next_attempt_at: due.then_some(row.next_attempt_at),
            last_outcome: row.last_outcome,
            last_error: row.last_error,
            invocation: row.invocation_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Queues an event for every running install of the tenant that handles its type and
/// answers what was queued. The same event id again (a client's retry) queues nothing and
/// answers the event as it stands.
pub async fn accept(market: &Market, who: &EventCaller, request: EventRequest) -> Result<QueuedEvent, MarketError> {
    let tenant = who.caller.tenant(TenantScope::Events)?;
    let (event, _) = event(request)?;
    let runner = &market.runner;
    drop(runner.admit(tenant).await?);
    let now = market.billing.clock.now_ms();
    let mut queued = Vec::new();
    let mut skipped = Vec::new();
    for target in runner.views.targets(market, who, tenant).await? {
        if !target.handles(&event.event_type) {
            continue;
        }
        if let Some(reason) = not_running(&target) {
            skipped.push(Skipped { install: target.id.clone(), plugin: target.plugin.clone(), reason });
            continue;
        }
        queued.push((DeliveryId::ordered()?, target));
    }
    let accept = super::accepts::Accept { tenant: tenant.clone(), event: event.clone(), targets: queued.clone(), now };
    if !runner.accepts.write(accept).await? {
        // Accepted before: its deliveries are the answer.
        return status_of(&market.db, tenant, &event.id)
            .await?
            .ok_or_else(|| MarketError::Storage(format!("event {} was accepted but cannot be read back", event.id)));
    }
    runner.metrics.record_event(0);
    runner.wake_workers();
    let deliveries = queued
        .into_iter()
        .map(|(id, target)| QueuedDelivery {
            id,
            tenant: tenant.clone(),
            event_id: event.id.clone(),
            install: target.id,
            plugin: target.plugin.clone(),
            state: DeliveryState::Queued,
            attempts: 0,
            next_attempt_at: Some(now),
            last_outcome: None,
            last_error: None,
            invocation: None,
            created_at: now,
            updated_at: now,
        })
        .collect();
    Ok(QueuedEvent { event_id: event.id, event_type: event.event_type, accepted_at: now, deliveries, skipped })
}

/// Writes an event and its deliveries (`(delivery id, install)`) in the caller's
/// transaction; false, with nothing written, when the tenant's event id was queued before.
pub(super) async fn insert_event(
    tx: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    event: &Event,
    targets: &[(&DeliveryId, &Target)],
    now: i64,
) -> Result<bool, MarketError> {
    let inserted = sqlx::query(
        "INSERT INTO queued_events (tenant_id, id, event_type, payload, accepted_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, id) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(&event.id)
    .bind(&event.event_type)
    .bind(&event.payload)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    for (id, target) in targets {
        sqlx::query(
            "INSERT INTO deliveries (id, tenant_id, event_id, install_id, plugin_id, ordered, state, attempts, \
             next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $7, $7)",
        )
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(&event.id)
        .bind(&target.id)
        .bind(target.plugin.to_string())
        .bind(i64::from(target.ordered))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(true)
}

/// The tenant a request reads or changes deliveries of: a tenant its own; an operator the
/// one it names, or every tenant where `all_allowed`.
pub(super) fn tenant_of(
    caller: &Caller,
    named: Option<&TenantId>,
    scope: TenantScope,
) -> Result<Option<TenantId>, MarketError> {
    match (caller, named) {
        (Caller::Operator { .. }, named) => Ok(named.cloned()),
        (_, named) => {
            let own = caller.tenant(scope)?;
            if named.is_some_and(|named| named != own) {
                return Err(MarketError::NotFound(format!("tenant {}", named.map(TenantId::as_str).unwrap_or(""))));
            }
            Ok(Some(own.clone()))
        }
    }
}

/// `GET /v1/events/{id}`: an asynchronous event of the caller's tenant (operators name it).
pub async fn status(
    market: &Market,
    caller: &Caller,
    tenant: Option<&TenantId>,
    event_id: &str,
) -> Result<QueuedEvent, MarketError> {
    let tenant = caller.tenant_to_read(tenant)?;
    status_of(&market.db, &tenant, event_id).await?.ok_or_else(|| MarketError::NotFound(format!("event {event_id}")))
}

async fn status_of(db: &Db, tenant: &TenantId, event_id: &str) -> Result<Option<QueuedEvent>, MarketError> {
    let Some((event_type, accepted_at)): Option<(String, i64)> =
        sqlx::query_as("SELECT event_type, accepted_at FROM queued_events WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(event_id)
            .fetch_optional(&db.pool)
            .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query_as::<_, DeliveryRow>(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant_id = $1 AND event_id = $2 ORDER BY seq"
    ))
    .bind(tenant.as_str())
    .bind(event_id)
    .fetch_all(&db.pool)
    .await?;
    Ok(Some(QueuedEvent {
        event_id: event_id.to_string(),
        event_type,
        accepted_at,
        deliveries: rows.into_iter().map(QueuedDelivery::try_from).collect::<Result<_, _>>()?,
        skipped: Vec::new(),
    }))
}
