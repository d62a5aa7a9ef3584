//! Hostile: returns 8 MiB of data, more than the host's output limit allows.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "huge-output".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        Ok(Outcome { data: Some("x".repeat(8 << 20)), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);
