//! Hostile: never returns. The host must end it by its CPU (fuel) or wall-clock limit.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "spin-loop".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        let mut counter = event.payload.len() as u64;
        loop {
            // black_box keeps the optimiser from proving the loop pointless.
            counter = std::hint::black_box(counter.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

nexus_plugin_sdk::export!(Plugin);
