//! A named consistency check with its first differences, as `nexus ledger verify` reports each
//! invariant. Below billing and records, which both run checks (`billing::ledger::verify`,
//! `records::usage_hours::check`).

use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// Up to 20 differences, each naming what differs and by how much.
    pub differences: Vec<String>,
}
