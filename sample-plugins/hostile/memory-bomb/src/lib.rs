//! Hostile: allocates and touches memory in 1 MiB steps until the host's memory limit stops it.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "memory-bomb".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xAB; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

nexus_plugin_sdk::export!(Plugin);
