//! The Nexus marketplace service and the `nexus` command: the JSON API (`server`), the web
//! console (`console`) and the command line (`cli`), all over the domain crate
//! (`nexus-domain`), whose modules are re-exported here under their own names.

pub use nexus_domain::{Market, MarketConfig};
pub use nexus_domain::{
    MarketError, accounts, audit, billing, catalog, checks, co_marketing, consent, dev_tenants, dev_versions,
    directory, error, ids, installs, kv, mail, market, media, metrics, nodes, org_tokens, organizations, outbox,
    partner_program, partner_tiers, pause, people, plans, publisher_domains, publisher_profiles, records, reviews,
    runner, secrets, sessions, settings, timestamps, webhooks, write_limits,
};

pub mod cli;
pub mod console;
pub mod server;
