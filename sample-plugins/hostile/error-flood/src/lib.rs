//! Hostile: fails with an 8 MiB error message. The host must bound what it keeps of a
//! plugin's error, as it bounds the output of a success.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

/// 8 MiB: eight times the default output limit.
const MESSAGE_BYTES: usize = 8 * 1024 * 1024;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "error-flood".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        Err(PluginError::internal("e".repeat(MESSAGE_BYTES)))
    }
}

nexus_plugin_sdk::export!(Plugin);
