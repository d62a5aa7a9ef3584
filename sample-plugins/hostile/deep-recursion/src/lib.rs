//! Hostile: recurses without end until the wasm stack overflows.

use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError};

struct Plugin;

#[inline(never)]
fn descend(depth: u64, trail: &mut [u64; 16]) -> u64 {
    trail[(depth % 16) as usize] = depth;
    if depth == u64::MAX {
        return depth; // never reached: the stack runs out first
    }
    // The addition after the call keeps this from becoming a loop.
    descend(std::hint::black_box(depth + 1), trail) + trail[0]
}

impl Guest for Plugin {
    fn describe() -> Info {
        Info { name: "deep-recursion".into(), version: "0.1.0".into(), event_types: vec!["*".into()] }
    }

    fn handle(_event: Event) -> Result<Outcome, PluginError> {
        let mut trail = [0u64; 16];
        let depth = descend(0, &mut trail);
        Ok(Outcome { data: Some(depth.to_string()), actions: vec![] })
    }
}

nexus_plugin_sdk::export!(Plugin);
