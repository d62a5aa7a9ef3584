//! Hostile: creates a million WASI pollables and never drops them. Each is a handle in the
//! host's resource table, so only a limit on resource handles can stop the table growing.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};
use wasi::clocks::monotonic_clock::subscribe_duration;

const POLLABLES: u32 = 1_000_000;

/// One second, in nanoseconds; the pollables are never waited on, so any duration works.
const DURATION_NANOS: u64 = 1_000_000_000;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "resource-hog".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        for _ in 0..POLLABLES {
            // Forgotten, so the guest never tells the host to free the handle.
            std::mem::forget(subscribe_duration(DURATION_NANOS));
        }
        Ok(Outcome { data: None, actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);
