//! The Nexus marketplace: the service tenants, builders, partners and operators use, and
//! the `nexus` command. It drives the host (`nexus-host`) and the registry
//! (`nexus-registry`) and must not reach into wasm internals: everything about running a
//! plugin goes through `nexus_host::Host`.

pub mod cli;
pub mod server;
