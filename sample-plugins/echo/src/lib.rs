//! The smallest useful plugin: returns the event payload as its data, prefixed by the
//! install's `prefix` config. One host call per event; the benchmarks use it as the
//! "trivial plugin".

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError, config};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "echo".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let prefix = config::get("prefix")?.unwrap_or_default();
        Ok(Outcome { data: Some(format!("{prefix}{}", event.payload)), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);
