//! Bindings for `nexus:plugin@1.1.0` (`wit/v1.1-test`), the newest contract the host
//! supports. Every capability import is implemented against these types.

wasmtime::component::bindgen!({
    path: "../wit/v1.1-test",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    trappable_error_type: {
        "nexus:plugin/types.host-error" => crate::capability::CallError,
    },
});
