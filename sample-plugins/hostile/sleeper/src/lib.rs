//! Hostile: sleeps for the number of milliseconds given as the payload. Sleeping is a WASI
//! poll, which burns no fuel, so only a wall-clock limit can end a long sleep.

use std::time::Duration;

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "sleeper".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let millis: u64 = event
            .payload
            .parse()
            .map_err(|e| PluginError::invalid_payload(format!("payload is not a number of milliseconds: {e}")))?;
        std::thread::sleep(Duration::from_millis(millis));
        Ok(Outcome { data: Some(format!("slept {millis}")), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);
