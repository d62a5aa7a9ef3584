//! Hostile: sends a `GET` with headers chosen by the payload, which the tests fill with
//! headers a plugin must not set (`Host`, hop-by-hop headers, CR/LF injections). It passes
//! the host's refusal on as its own error.

use nexus_plugin_sdk::http::{Method, Request, send};
use nexus_plugin_sdk::payload::{self, Fields};
use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "header-smuggler".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let fields = payload::object(&event.payload)?;
        let url = payload::string(&fields, "url")?.to_owned();
        let request = Request { method: Method::Get, url, headers: headers(&fields)?, body: None };
        let response = send(&request)?;
        Ok(Outcome { data: Some(response.status.to_string()), actions: vec![] })
    }
}

/// The `headers` field: a list of `[name, value]` pairs.
fn headers(fields: &Fields) -> Result<Vec<(String, String)>, PluginError> {
    let value = fields.get("headers").cloned().unwrap_or_default();
    serde_json::from_value(value).map_err(|e| {
        PluginError::invalid_payload(format!("payload field headers must be a list of [name, value] pairs: {e}"))
    })
}

nexus_plugin_sdk::export!(Plugin);
