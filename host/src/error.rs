//! The host's errors: why a component could not be loaded, and why an invocation failed.
//! A plugin's own error, a limit, and a trap stay distinct so callers can bill, retry and
//! alert on each differently.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::PluginErrorKind;

/// Why a component was refused or could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component targets no supported contract version: {0}")]
    UnsupportedContract(String),
    #[error("the component imports `{0}`, which the host does not provide")]
    UnsupportedImport(String),
    #[error("the component cannot be linked: {0}")]
    Link(String),
    #[error("component cache: {0}")]
    Cache(String),
    /// The component needs more of the host than any one invocation may hold (core
    /// instances, memories, tables, or their sizes): it could take other tenants' share of
    /// the instance pool, so it is refused whatever it would do.
    #[error("the component exceeds the host's per-plugin limits: {0}")]
    ExceedsHostLimits(String),
}

impl LoadError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAComponent(_) => "not_a_component",
            Self::UnsupportedContract(_) => "unsupported_contract",
            Self::UnsupportedImport(_) => "unsupported_import",
            Self::Link(_) => "link_failed",
            Self::Cache(_) => "cache_failed",
            Self::ExceedsHostLimits(_) => "exceeds_host_limits",
        }
    }
}

/// A limit that ended an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Fuel,
    MemoryBytes,
    TableElements,
    Instances,
    StackBytes,
    WallClockMs,
    InputBytes,
    OutputBytes,
    LogLines,
    LogBytes,
    KvBytes,
    KvKeys,
    KvValueBytes,
    HttpRequests,
    HttpRequestBytes,
    HttpResponseBytes,
    HttpTimeoutMs,
    UsageMeters,
    Actions,
    KvWrites,
    ResourceHandles,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned));
        f.write_str(name.as_deref().unwrap_or("unknown"))
    }
}

/// `used` is what the plugin asked for or reached; `max` is the limit in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("limit {limit} exceeded: {used} > {max}")]
pub struct LimitExceeded {
    pub limit: Limit,
    pub used: u64,
    pub max: u64,
}

/// Why an invocation did not produce an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum InvocationError {
    /// The plugin returned its own error.
    #[error("plugin error ({kind:?}): {message}")]
    PluginError { kind: PluginErrorKind, message: String },
    #[error("{0}")]
    LimitExceeded(LimitExceeded),
    /// The plugin panicked; `message` is its panic message.
    #[error("plugin panicked: {message}")]
    Panicked { message: String },
    /// Any other trap (unreachable, bad memory access, ...).
    #[error("plugin trapped: {message}")]
    Trapped { message: String },
    /// The host could not complete the invocation (for example, the KV store failed).
    #[error("host failure: {message}")]
    #[serde(rename = "host_failure")]
    Host { message: String },
    /// Another invocation of the same install committed KV data first (on another node
    /// sharing the store); nothing was written and the event may be retried.
    #[error("kv conflict: another invocation of this install changed its KV data first")]
    KvConflict,
    /// The host had no capacity for the invocation (every slot this tenant may use was busy
    /// for the whole wait, or the instance pool was full). Nothing ran; the host's condition,
    /// not the plugin's: retry after `retry_after_ms`.
    #[error("the host is busy: no invocation slot became free; retry in {retry_after_ms} ms")]
    Busy { retry_after_ms: u64 },
}

impl InvocationError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::PluginError { .. } => "plugin_error",
            Self::LimitExceeded(_) => "limit_exceeded",
            Self::Panicked { .. } => "panicked",
            Self::Trapped { .. } => "trapped",
            Self::Host { .. } => "host_failure",
            Self::KvConflict => "kv_conflict",
            Self::Busy { .. } => "busy",
        }
    }
}
