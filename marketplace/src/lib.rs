//! The Nexus marketplace: the service tenants, builders, partners and operators use, and
//! the `nexus` command. It drives the host (`nexus-host`) and the registry
//! (`nexus-registry`) and must not reach into wasm internals: everything about running a
//! plugin goes through `nexus_host::Host`.

pub mod accounts;
pub mod audit;
pub mod billing;
pub mod catalog;
pub mod cli;
pub mod error;
pub mod installs;
pub mod kv;
pub mod market;
pub mod metrics;
pub mod nodes;
pub mod records;
pub mod runner;
pub mod secrets;
pub mod server;

pub use error::MarketError;
pub use market::{Market, MarketConfig};
