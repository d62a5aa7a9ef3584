//! Hostile: calls `config.get` without end. The result is ignored, so the loop runs the same
//! whether `config` is granted or refused: only the fuel that host calls cost can end it.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError, config};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "host-call-loop".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        loop {
            let _ = config::get("key");
        }
    }
}

nexus_plugin_sdk::export!(Plugin);
