//! Host-side types of the contract, independent of any bindings version, so callers (the
//! marketplace, the CLI) never touch wasm internals.

use serde::{Deserialize, Serialize};

use crate::bindings::latest::nexus::plugin::types as wit;

/// An event delivered to a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// JSON text.
    pub payload: String,
}

/// Something the plugin asks the platform to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: String,
    pub payload: String,
}

/// A successful handling.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub data: Option<String>,
    pub actions: Vec<Action>,
}

impl Outcome {
    /// Bytes the outcome takes, as counted against the output limit.
    pub fn size(&self) -> u64 {
        let data = self.data.as_ref().map_or(0, String::len);
        let actions: u64 = self
            .actions
            .iter()
            .map(|a| (a.kind.len() + a.payload.len()) as u64 + crate::limits::ACTION_OVERHEAD_BYTES)
            .sum();
        data as u64 + actions
    }
}

/// The plugin's own error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginErrorKind {
    UnsupportedEvent,
    InvalidPayload,
    InvalidConfig,
    Upstream,
    Denied,
    Internal,
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub event_types: Vec<String>,
}

impl Info {
    /// Whether the plugin says it handles `event_type` (`*` handles all).
    pub fn handles(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == "*" || t == event_type)
    }
}

impl From<&Event> for wit::Event {
    fn from(event: &Event) -> Self {
        Self { id: event.id.clone(), event_type: event.event_type.clone(), payload: event.payload.clone() }
    }
}

impl From<wit::Outcome> for Outcome {
    fn from(outcome: wit::Outcome) -> Self {
        let actions = outcome.actions.into_iter().map(|a| Action { kind: a.kind, payload: a.payload }).collect();
        Self { data: outcome.data, actions }
    }
}

impl From<wit::ErrorKind> for PluginErrorKind {
    fn from(kind: wit::ErrorKind) -> Self {
        match kind {
            wit::ErrorKind::UnsupportedEvent => Self::UnsupportedEvent,
            wit::ErrorKind::InvalidPayload => Self::InvalidPayload,
            wit::ErrorKind::InvalidConfig => Self::InvalidConfig,
            wit::ErrorKind::Upstream => Self::Upstream,
            wit::ErrorKind::Denied => Self::Denied,
            wit::ErrorKind::Internal => Self::Internal,
        }
    }
}

impl From<wit::Info> for Info {
    fn from(info: wit::Info) -> Self {
        Self { name: info.name, version: info.version, event_types: info.event_types }
    }
}
