//! Running plugins for tenants: `POST /v1/events` fans an event out to every live install of
//! the tenant that handles its type; direct invocation runs one install. Each run goes through
//! the host with the install's grants, settings and limits, is recorded in `invocations`, and
//! feeds the circuit breaker and the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_host::{Event, Host, InvocationError, Plugin, PluginErrorKind};
use nexus_registry::{Db, ErrorCode, PluginId};
use serde::{Deserialize, Serialize};

use crate::accounts::TenantId;
use crate::error::MarketError;
use crate::ids::{GeneratedEventId, InstallId, InvocationId};
use crate::kv::SqlKv;
use crate::metrics::Metrics;
use crate::records::InvocationLog;

/// Longest event type, and event id, accepted.
pub const MAX_EVENT_TYPE_BYTES: usize = 128;
pub const MAX_EVENT_ID_BYTES: usize = 128;

/// Per-tenant admission: a rate (with a burst) and a cap on events (and direct invocations)
/// in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    pub events_per_second: u32,
    pub burst: u32,
    pub in_flight: usize,
    /// How long an event waits for an in-flight slot before it is refused.
    pub queue_wait: Duration,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self { events_per_second: 200, burst: 400, in_flight: 32, queue_wait: Duration::from_secs(2) }
    }
}

mod accepts;
mod actions;
mod admission;
mod deliver;
mod generations;
mod loading;
pub mod queue;
pub mod retention;
pub mod schedules;
mod send;
mod views;
pub mod worker;

pub use views::EventCaller;

pub use deliver::LOAD_FAILED;
pub use loading::{EVENT_COMPILE_WAIT, Loading};
use send::not_running;
pub use send::{event_caller, invoke_install, send_event, send_event_as};

pub struct Runner {
    host: Arc<Host>,
    records: InvocationLog,
    kv: Arc<SqlKv>,
    admission: admission::Admission,
    /// Loaded components by `plugin@version`, with the cache generation they were verified
    /// at; versions are immutable, but the keys that verified them may be revoked.
    plugins: Mutex<HashMap<String, (i64, Arc<Plugin>)>>,
    /// How long an event waits for its component's compile before it is answered busy.
    event_compile_wait: Duration,
    /// What events read before they run (callers, installs), cached by generation.
    views: views::EventViews,
    /// Commits accepted asynchronous events in shared transactions (`accepts.rs`).
    accepts: accepts::Accepts,
    /// Tells this node's delivery worker that deliveries or webhooks were queued (`worker.rs`).
    queue_wake: tokio::sync::Notify,
    /// Posts tenants' webhooks under the host's outbound policy (`webhooks/sender.rs`).
    pub(crate) webhook_client: reqwest::Client,
    pub metrics: Arc<Metrics>,
}

/// `POST /v1/events` and `POST /v1/installs/{id}/invoke`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// The caller's id for the event (for the plugin's idempotency); generated if absent.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// What happened to an event (the CLI reads it back with the same type).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventReceipt {
    pub event_id: String,
    pub deliveries: Vec<Delivery>,
    pub skipped: Vec<Skipped>,
}

/// One install's invocation.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub invocation: InvocationId,
    pub install: InstallId,
    #[schema(value_type = String)]
    pub plugin: PluginId,
    pub version: String,
    /// `ok` or the error code (`plugin_error`, `limit_exceeded`, ...).
    pub outcome: String,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<nexus_host::Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when this failure paused the install.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Set when the failure is transient (the plugin's own service failed, a time limit, the
    /// component or the host could not serve it now): the same event may succeed later. An
    /// asynchronous event's delivery is retried on the schedule (`runner/queue.rs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
    /// Set when the event had already applied to this install (the same event id was
    /// delivered before): nothing ran again; this is the applied invocation with the data
    /// and actions it returned then, kept with its record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Skipped {
    pub install: InstallId,
    #[schema(value_type = String)]
    pub plugin: PluginId,
    /// `paused`, with the pause's reason.
    pub reason: String,
}

impl Runner {
    /// Must be called within a tokio runtime: it starts the invocation writer.
    pub fn new(
        host: Arc<Host>,
        db: Db,
        limits: TenantLimits,
        event_compile_wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let webhook_client = nexus_host::capability::http::guarded_client(
            &host.config().outbound,
            concat!("nexus-webhooks/", env!("CARGO_PKG_VERSION")),
        );
        Self {
            host,
            records: InvocationLog::start(db.clone()),
            accepts: accepts::Accepts::start(db.clone()),
            views: views::EventViews::new(db.clone()),
            kv: Arc::new(SqlKv::new(db)),
            admission: admission::Admission::new(limits),
            plugins: Mutex::new(HashMap::new()),
            event_compile_wait,
            queue_wake: tokio::sync::Notify::new(),
            webhook_client,
            metrics,
        }
    }

    /// Wakes this node's delivery worker: deliveries were queued or replayed.
    pub fn wake_workers(&self) {
        self.queue_wake.notify_one();
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Admits one event of `tenant` within this node's share of its limits.
    async fn admit(&self, tenant: &TenantId) -> Result<tokio::sync::OwnedSemaphorePermit, MarketError> {
        self.admission.admit(tenant).await
    }

    /// Divides the per-tenant limits among `nodes` live nodes (see `runner/admission.rs`).
    pub fn share_among(&self, nodes: u32) {
        self.admission.share_among(nodes);
    }

    /// The live nodes the limits are divided among now.
    pub fn live_nodes(&self) -> u32 {
        self.admission.nodes()
    }

    /// This node's share of the per-tenant limits now.
    pub fn limits(&self) -> TenantLimits {
        self.admission.limits()
    }
}

/// The event to deliver, and whether its id is the client's (only a client's id can come
/// again: a generated one is new).
fn event(request: EventRequest) -> Result<(Event, bool), MarketError> {
    let bad = |message: String| MarketError::invalid(ErrorCode::InvalidEvent, message);
    let event_type = request.event_type.trim().to_string();
    if event_type.is_empty() || event_type.len() > MAX_EVENT_TYPE_BYTES {
        return Err(bad(format!("`type` must be 1 to {MAX_EVENT_TYPE_BYTES} bytes")));
    }
    if !event_type.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
        return Err(bad(format!("`type` `{event_type}` may hold only letters, digits, '.', '-' and '_'")));
    }
    if !request.payload.is_object() {
        return Err(bad("`payload` must be a JSON object".into()));
    }
    let (id, from_client) = match request.id {
        Some(id) if id.is_empty() || id.len() > MAX_EVENT_ID_BYTES => {
            return Err(bad(format!("`id` must be 1 to {MAX_EVENT_ID_BYTES} bytes")));
        }
        Some(id) => (id, true),
        None => (GeneratedEventId::ordered()?.into(), false),
    };
    Ok((Event { id, event_type, payload: request.payload.to_string() }, from_client))
}

/// Whether an error counts against the circuit breaker. Errors that describe the event
/// (unsupported type, invalid payload) say nothing about the plugin's health.
/// Host conditions (`busy`, a KV conflict) say nothing about it either.
fn counts_against_plugin(error: &InvocationError) -> bool {
    !matches!(
        error,
        InvocationError::PluginError { kind: PluginErrorKind::InvalidPayload | PluginErrorKind::UnsupportedEvent, .. }
            | InvocationError::KvConflict
            | InvocationError::Busy { .. }
    )
}

/// Whether a failure is transient, so the same event may succeed when tried again: the
/// plugin's own service failed (`upstream`), it ran out of time, or the host could not
/// complete it (its KV store failed, another node committed first).
fn retryable(error: &InvocationError) -> bool {
    use nexus_host::Limit;
    match error {
        InvocationError::PluginError { kind, .. } => *kind == PluginErrorKind::Upstream,
        InvocationError::LimitExceeded(exceeded) => matches!(exceeded.limit, Limit::WallClockMs | Limit::HttpTimeoutMs),
        InvocationError::Host { .. } | InvocationError::KvConflict | InvocationError::Busy { .. } => true,
        InvocationError::Panicked { .. } | InvocationError::Trapped { .. } => false,
    }
}
/// How long a client told the host is busy should wait before retrying.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);
