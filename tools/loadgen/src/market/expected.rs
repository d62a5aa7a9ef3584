//! What the answers say must now be true, gathered while the load runs and checked through
//! the API after it: each install a purchase created, its plan and plan changes, what the
//! operator refunded of its charge, whether it was uninstalled, and the invocations its
//! events' receipts reported.

use std::collections::BTreeMap;

/// One install a purchase answered `201` for.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub tenant: String,
    /// `bench/<sample>`.
    pub plugin: String,
    /// The plan it was bought on.
    pub bought: String,
    /// The plan it is on after its plan changes.
    pub plan: String,
    /// Plan changes answered `200`: each leaves one `proration` charge.
    pub plan_changes: u32,
    /// Refunds of its charge answered `201`, in minor units.
    pub refunded_minor: i64,
    pub uninstalled: bool,
    /// Deliveries to it in event receipts: each is one invocation row.
    pub deliveries: u64,
}

impl Purchase {
    pub fn new(tenant: &str, plugin: &str, plan: &str) -> Self {
        Self {
            tenant: tenant.to_string(),
            plugin: plugin.to_string(),
            bought: plan.to_string(),
            plan: plan.to_string(),
            plan_changes: 0,
            refunded_minor: 0,
            uninstalled: false,
            deliveries: 0,
        }
    }
}

/// Purchases by install id.
#[derive(Debug, Default)]
pub struct Expected {
    pub purchases: BTreeMap<String, Purchase>,
    /// Deliveries to installs no purchase answered for (they should not exist).
    pub stray_deliveries: BTreeMap<String, u64>,
}

impl Expected {
    pub fn merge(&mut self, other: Expected) {
        self.purchases.extend(other.purchases);
        for (install, count) in other.stray_deliveries {
            *self.stray_deliveries.entry(install).or_default() += count;
        }
    }

    /// Counts a delivery to `install`.
    pub fn delivered(&mut self, install: &str) {
        match self.purchases.get_mut(install) {
            Some(purchase) => purchase.deliveries += 1,
            None => *self.stray_deliveries.entry(install.to_string()).or_default() += 1,
        }
    }

    pub fn deliveries(&self) -> u64 {
        self.purchases.values().map(|p| p.deliveries).sum::<u64>() + self.stray_deliveries.values().sum::<u64>()
    }
}
