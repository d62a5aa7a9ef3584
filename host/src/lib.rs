//! The Nexus plugin host: the sandboxed runtime that compiles, caches, links, limits and
//! invokes plugin components against the `nexus:plugin` WIT contract (`wit/`).
//!
//! It owns the engine, the component caches, the contract bindings (one module per
//! version), and the capability implementations. It must not touch HTTP routing or SQL:
//! callers (the marketplace, the CLI) pass each install's grants, settings and KV store in
//! an [`InvocationContext`] and persist what the [`Report`] says.
//!
//! Default deny: a plugin gets no files, environment, sockets or ambient network; each
//! capability works only if the install's [`Grants`] include it.

mod bindings;
mod cache;
pub mod capability;
pub mod contract;
mod digest;
mod error;
mod grants;
mod invoke;
pub mod limits;
mod report;
mod runtime;
mod slots;
mod state;
mod types;

pub use capability::Denial;
pub use capability::config::Secrets;
pub use capability::http::OutboundPolicy;
pub use capability::kv::{DirKv, KvScope, KvStore, MemoryKv};
pub use capability::log::{Level, LogLine};
pub use contract::ContractVersion;
pub use digest::Digest;
pub use error::{InvocationError, Limit, LimitExceeded, LoadError};
pub use grants::{Capability, Grants, HostPattern};
pub use invoke::{Finished, StagedKv};
pub use limits::Limits;
pub use report::{Invocation, MetricsSnapshot, Report};
pub use runtime::{Compiler, Host, HostConfig, LoadSource, Plugin};
pub use state::InvocationContext;
pub use types::{Action, Event, Info, Outcome, PluginErrorKind};

impl Host {
    /// The counters since this host started.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }
}
