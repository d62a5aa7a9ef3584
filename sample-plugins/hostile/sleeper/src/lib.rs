//! Hostile: sleeps for the milliseconds in the payload's `ms` field. Sleeping is a WASI
//! poll, which burns no fuel, so only a wall-clock limit can end a long sleep.

use std::time::Duration;

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError, payload};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "sleeper".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let fields = payload::object(&event.payload)?;
        let millis = u64::try_from(payload::integer(&fields, "ms")?)
            .map_err(|_| PluginError::invalid_payload("payload field ms must not be negative"))?;
        std::thread::sleep(Duration::from_millis(millis));
        Ok(Outcome { data: Some(format!("slept {millis}")), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);
