//! A plugin built against the test-only `nexus:plugin@1.1.0` contract (`wit/v1.1-test`),
//! which adds `log.enabled`. It proves a 1.1 plugin and 1.0 plugins run in one host.

// What `wit_bindgen::generate!({ path: "../../wit/v1.1-test", world: "plugin" })` expands
// to, committed like the SDK's (see sample-plugins/tools/regenerate-bindings).
include!("bindings.rs");

use exports::nexus::plugin::handler::Guest;
use nexus::plugin::log::{Level, enabled, write};
use nexus::plugin::types::{Event, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "contract-v1-1".into(), version: "1.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let debug = enabled(Level::Debug);
        if debug {
            let _ = write(Level::Debug, &format!("handling {}", event.id));
        }
        Ok(Outcome { data: Some(format!("{{\"contract\":\"1.1.0\",\"debug_enabled\":{debug}}}")), actions: vec![] })
    }
}

export!(Plugin);
