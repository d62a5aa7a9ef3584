//! Hostile: panics. The host must report the panic message as a trap, not crash.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "panicker".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        panic!("plugin gave up on event {}", event.id);
    }
}

nexus_plugin_sdk::export!(Plugin);
