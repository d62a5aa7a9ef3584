//! Hostile: returns one million empty actions. Each is tiny, so a byte limit on the output
//! alone would let far more through than the platform can carry out.

use nexus_plugin_sdk::{Action, Event, Guest, Info, Outcome, PluginError};

/// Far above any sensible action limit, and cheap: an empty action is 24 bytes on wasm32.
const ACTIONS: usize = 1_000_000;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "action-flood".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        let actions = (0..ACTIONS).map(|_| Action { kind: String::new(), payload: String::new() }).collect();
        Ok(Outcome { data: None, actions })
    }
}

nexus_plugin_sdk::export!(Plugin);
