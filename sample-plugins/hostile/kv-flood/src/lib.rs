//! Hostile: writes 64 KiB values under new keys without end, to exhaust the install's KV quota.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError, kv};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "kv-flood".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        let value = vec![0x5A; 64 << 10];
        for n in 0u64.. {
            kv::set(&format!("flood/{n}"), &value)?;
        }
        unreachable!("the loop above never ends")
    }
}

nexus_plugin_sdk::export!(Plugin);
