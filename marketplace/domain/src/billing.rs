//! Where the money moves: plans, charges, collection, the ledger, the revenue share and
//! refunds. The arithmetic is `nexus-money` (pure); this module stores and orchestrates it
//! beside installs, without HTTP types.
//!
//! An install pays a plan revision ([`plans`]). A billing run ([`run`]) finds what is due
//! and writes charges ([`charges`]), each unique by install, line and period start, with the
//! ledger transaction that bills the tenant, in one database transaction. Collection
//! ([`collect`]) asks the [`PaymentProvider`] for each charge under an idempotency key per
//! attempt; a collected charge is split by the revenue-share policy ([`share`]) and posted
//! to the ledger ([`ledger`]). Refunds ([`refunds`]) reverse a part of a charge and its fee
//! in proportion. Tenants, partners and operators read what concerns them ([`views`]).

use std::sync::Arc;

pub mod adjustments;
pub mod charges;
pub mod clock;
pub mod collect;
pub mod estimate;
pub mod gmv;
pub mod growth;
pub mod holds;
pub mod idempotency;
pub use crate::ids;
pub mod ledger;
pub mod payouts;
pub mod plans;
pub mod provider;
pub mod purchase;
pub mod refunds;
pub mod rollups;
pub mod run;
pub mod schedule;
pub mod settle;
pub mod share;
pub mod statements;
pub mod views;

pub use crate::error::money_error;
pub use clock::{Clock, ManualClock, SystemClock};
pub use provider::{Outcome, PaymentProvider, PayoutProvider, ProviderError, SandboxProvider, Scripted};

/// How a marketplace bills and pays: its clock, its providers, its retry and payout schedules.
#[derive(Clone)]
pub struct BillingConfig {
    pub clock: Arc<dyn Clock>,
    pub payments: Arc<dyn PaymentProvider>,
    pub payouts: Arc<dyn PayoutProvider>,
    pub payout_schedule: payouts::Schedule,
    /// Wait after each failed collection attempt before the next; once all are used, the
    /// install is paused with `payment_failed` until its tenant settles.
    pub retry_after_ms: Vec<i64>,
}

/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for BillingConfig {
    /// The system clock, one sandbox for collections and payouts (everything succeeds
    /// unless scripted), retries after 1, 3 and 5 days, payouts twice a month.
    fn default() -> Self {
        Self::sandboxed(Arc::new(SystemClock::default()), Arc::new(SandboxProvider::default()))
    }
}

impl BillingConfig {
    /// `clock`, with `sandbox` as the payment and the payout provider, and the default
    /// schedules.
    pub fn sandboxed(clock: Arc<dyn Clock>, sandbox: Arc<SandboxProvider>) -> Self {
        Self {
            clock,
            payments: sandbox.clone(),
            payouts: sandbox,
            payout_schedule: payouts::Schedule::default(),
            retry_after_ms: vec![DAY_MS, 3 * DAY_MS, 5 * DAY_MS],
        }
    }
}

impl BillingConfig {
    /// The same, with both providers called only once earlier commits are durable
    /// ([`provider::AfterDurable`]).
    pub fn after_durable(self, db: &nexus_registry::Db) -> Self {
        Self {
            payments: Arc::new(provider::AfterDurable::new(db.clone(), self.payments)),
            payouts: Arc::new(provider::AfterDurable::new(db.clone(), self.payouts)),
            ..self
        }
    }
}

impl std::fmt::Debug for BillingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingConfig").field("retry_after_ms", &self.retry_after_ms).finish_non_exhaustive()
    }
}
