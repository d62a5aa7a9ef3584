//! Bindings for `nexus:plugin@1.0.0` (`wit/v1.0`). Its types are identical to the newest
//! contract's, so they are mapped onto [`super::latest`]; only the export differs.

wasmtime::component::bindgen!({
    path: "../wit/v1.0",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "nexus:plugin/types": super::latest::nexus::plugin::types,
        "nexus:plugin/log": super::latest::nexus::plugin::log,
        "nexus:plugin/config": super::latest::nexus::plugin::config,
        "nexus:plugin/kv": super::latest::nexus::plugin::kv,
        "nexus:plugin/http": super::latest::nexus::plugin::http,
        "nexus:plugin/usage": super::latest::nexus::plugin::usage,
    },
});
