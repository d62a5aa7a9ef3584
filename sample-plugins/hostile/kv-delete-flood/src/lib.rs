//! Hostile: deletes keys that never existed, `gone/0`, `gone/1`, ..., without end. Each
//! delete is a staged write that stores nothing, so a byte quota never fills: only a limit
//! on staged writes can end it.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError, kv};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "kv-delete-flood".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        for n in 0u64.. {
            kv::delete(&format!("gone/{n}"))?;
        }
        unreachable!("the loop above never ends")
    }
}

nexus_plugin_sdk::export!(Plugin);
