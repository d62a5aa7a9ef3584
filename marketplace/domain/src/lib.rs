//! The marketplace's domain: who may do what (`accounts`), what can be installed
//! (`catalog`), installs and their consent (`installs`), running tenants' events (`runner`),
//! and the money (`billing`). It drives the host (`nexus-host`) and the registry
//! (`nexus-registry`) and must not reach into wasm internals: everything about running a
//! plugin goes through `nexus_host::Host`.
//!
//! This crate has no HTTP in it, by construction: it does not depend on axum. The JSON API
//! (`nexus_marketplace::server`) and the web console (`nexus_marketplace::console`) are two
//! edges over these functions; neither has SQL of its own.

pub mod accounts;
pub mod audit;
pub mod billing;
pub mod catalog;
pub mod checks;
pub mod co_marketing;
pub mod consent;
pub mod dev_tenants;
pub mod dev_versions;
pub mod directory;
pub mod error;
pub mod ids;
pub mod installs;
pub mod kv;
pub mod mail;
pub mod market;
pub mod media;
pub mod metrics;
pub mod nodes;
pub mod org_tokens;
pub mod organizations;
pub mod outbox;
pub mod partner_program;
pub mod partner_tiers;
pub mod pause;
pub mod people;
pub mod plans;
pub mod publisher_domains;
pub mod publisher_profiles;
pub mod records;
pub mod reviews;
pub mod runner;
pub mod secrets;
pub mod sessions;
pub mod settings;
pub mod timestamps;
pub mod webhooks;
pub mod write_limits;

pub use error::MarketError;
pub use market::{Market, MarketConfig};
