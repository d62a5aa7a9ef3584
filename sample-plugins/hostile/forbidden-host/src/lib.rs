//! Hostile: calls a URL given in the payload, which the tests make a host the tenant did not
//! allow. It passes the host's refusal on as its own error.

use nexus_plugin_sdk::http::{Method, Request, send};
use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "forbidden-host".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let request = Request { method: Method::Get, url: event.payload, headers: vec![], body: None };
        let response = send(&request)?;
        Ok(Outcome { data: Some(response.status.to_string()), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);
