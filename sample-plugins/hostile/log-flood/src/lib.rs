//! Hostile: writes log lines without end. The host's log limit must end the invocation.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "log-flood".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        let line = "flood ".repeat(20);
        for n in 0u64.. {
            nexus_plugin_sdk::log::info(&format!("{n} {line}"));
        }
        unreachable!("the loop above never ends")
    }
}

nexus_plugin_sdk::export!(Plugin);
