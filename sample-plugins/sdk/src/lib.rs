//! Guest-side bindings for the `nexus:plugin@1.0.0` contract (`wit/v1.0`), for plugins
//! written in Rust. A plugin implements [`Guest`] and calls [`export!`]:
//!
//! ```ignore
//! struct MyPlugin;
//! impl nexus_plugin_sdk::Guest for MyPlugin { /* describe, handle */ }
//! nexus_plugin_sdk::export!(MyPlugin);
//! ```
//!
//! The helpers below only shorten common calls; everything is also reachable through the
//! generated modules under [`nexus::plugin`].

wit_bindgen::generate!({
    path: "../../wit/v1.0",
    world: "plugin",
    pub_export_macro: true,
    default_bindings_module: "nexus_plugin_sdk",
});

pub use exports::nexus::plugin::handler::Guest;
pub use nexus::plugin::types::{Action, Capability, ErrorKind, Event, HostError, Info, Outcome, PluginError};
pub use nexus::plugin::{config, http, kv, usage};

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    pub fn invalid_payload(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidPayload, message)
    }

    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A failure of a service the plugin called; the platform may retry the event later.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }

    /// An event type the plugin does not handle, naming the ones it does.
    pub fn unsupported_event(event_type: &str, handled: &[&str]) -> Self {
        Self::new(
            ErrorKind::UnsupportedEvent,
            format!("event type {event_type} is not handled; handled: {}", handled.join(", ")),
        )
    }
}

/// Reading JSON event payloads, with errors that name the field (`invalid-payload`).
pub mod payload {
    use serde_json::{Map, Value};

    use crate::PluginError;

    pub type Fields = Map<String, Value>;

    /// The payload as a JSON object.
    pub fn object(payload: &str) -> Result<Fields, PluginError> {
        let value: Value = serde_json::from_str(payload)
            .map_err(|e| PluginError::invalid_payload(format!("payload is not valid JSON: {e}")))?;
        match value {
            Value::Object(fields) => Ok(fields),
            _ => Err(PluginError::invalid_payload("payload must be a JSON object")),
        }
    }

    pub fn string<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, PluginError> {
        fields
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| PluginError::invalid_payload(format!("payload field {name} must be a string")))
    }

    /// A string field that may be absent or `null`; any other type is an error.
    pub fn optional_string<'a>(fields: &'a Fields, name: &str) -> Result<Option<&'a str>, PluginError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(PluginError::invalid_payload(format!("payload field {name} must be a string"))),
        }
    }

    pub fn integer(fields: &Fields, name: &str) -> Result<i64, PluginError> {
        fields
            .get(name)
            .and_then(Value::as_i64)
            .ok_or_else(|| PluginError::invalid_payload(format!("payload field {name} must be an integer")))
    }

    /// An integer field that may be absent or `null` (`None`).
    pub fn optional_integer(fields: &Fields, name: &str) -> Result<Option<i64>, PluginError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| PluginError::invalid_payload(format!("payload field {name} must be an integer"))),
        }
    }
}

impl From<HostError> for PluginError {
    /// A refused capability call becomes the plugin's own `denied` or `upstream` error, so a
    /// handler can use `?` on host calls.
    fn from(error: HostError) -> Self {
        let (kind, message) = match error {
            HostError::NotGranted(cap) => (ErrorKind::Denied, format!("capability {cap:?} not granted")),
            HostError::HostNotAllowed(host) => (ErrorKind::Denied, format!("host {host} not allowed")),
            HostError::InvalidArgument(why) => (ErrorKind::Internal, format!("invalid argument: {why}")),
            HostError::Transport(why) => (ErrorKind::Upstream, format!("transport: {why}")),
        };
        Self { kind, message }
    }
}

/// Log helpers. Logging is best effort: when `log` is not granted the line is dropped.
pub mod log {
    use crate::nexus::plugin::log::{Level, write};

    pub fn debug(message: &str) {
        let _ = write(Level::Debug, message);
    }
    pub fn info(message: &str) {
        let _ = write(Level::Info, message);
    }
    pub fn warn(message: &str) {
        let _ = write(Level::Warn, message);
    }
    pub fn error(message: &str) {
        let _ = write(Level::Error, message);
    }
}
