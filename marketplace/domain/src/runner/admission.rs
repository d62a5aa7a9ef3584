//! Per-tenant admission of events: a rate with a burst, and a cap on events in flight. The
//! configured limits are for the whole marketplace: with several nodes each allows its share
//! (the limits divided by the live nodes in the `nodes` table, `nodes.rs`). With requests
//! spread evenly over the nodes, as a load balancer does, a tenant gets its configured
//! limits overall; sent all to one node, it gets that node's share only: stricter, never
//! more. (Shared counters in the database would be exact, at a round trip per event.)

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::TenantLimits;
use crate::accounts::TenantId;
use crate::error::MarketError;

type Limiter = RateLimiter<String, governor::state::keyed::DefaultKeyedStateStore<String>, DefaultClock>;

/// This node's share of the limits, rebuilt when the number of live nodes changes.
struct Share {
    nodes: u32,
    limits: TenantLimits,
    rate: Limiter,
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
}

pub(super) struct Admission {
    configured: TenantLimits,
    share: RwLock<Arc<Share>>,
}

/// `total` divided among `nodes`, at least 1.
fn part(total: u32, nodes: u32) -> u32 {
    (total / nodes.max(1)).max(1)
}

impl Share {
    fn new(configured: TenantLimits, nodes: u32) -> Self {
        let nodes = nodes.max(1);
        let limits = TenantLimits {
            events_per_second: part(configured.events_per_second, nodes),
            burst: part(configured.burst, nodes),
            in_flight: part(u32::try_from(configured.in_flight).unwrap_or(u32::MAX), nodes) as usize,
            queue_wait: configured.queue_wait,
        };
        let per_second = NonZeroU32::new(limits.events_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst).unwrap_or(per_second);
        let rate = RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst));
        Self { nodes, limits, rate, in_flight: Mutex::new(HashMap::new()) }
    }
}

impl Admission {
    pub(super) fn new(configured: TenantLimits) -> Self {
        Self { configured, share: RwLock::new(Arc::new(Share::new(configured, 1))) }
    }

    /// Takes this node's share for `nodes` live nodes. A change starts fresh counters; events
    /// in flight keep the permits they hold.
    pub(super) fn share_among(&self, nodes: u32) {
        let mut share = self.share.write().unwrap_or_else(PoisonError::into_inner);
        if share.nodes != nodes.max(1) {
            *share = Arc::new(Share::new(self.configured, nodes));
        }
    }

    /// The live nodes the limits are divided among now.
    pub(super) fn nodes(&self) -> u32 {
        self.share.read().unwrap_or_else(PoisonError::into_inner).nodes
    }

    /// This node's limits now.
    pub(super) fn limits(&self) -> TenantLimits {
        self.share.read().unwrap_or_else(PoisonError::into_inner).limits
    }

    /// Admits one event of `tenant`: within its rate, and with an in-flight slot.
    pub(super) async fn admit(&self, tenant: &TenantId) -> Result<OwnedSemaphorePermit, MarketError> {
        let share = self.share.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Err(not_until) = share.rate.check_key(&tenant.to_string()) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(MarketError::RateLimited { retry_after: wait.max(Duration::from_secs(1)) });
        }
        let semaphore = share
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(share.limits.in_flight)))
            .clone();
        match tokio::time::timeout(share.limits.queue_wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(MarketError::Busy(share.limits.in_flight)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_takes_its_share_of_the_configured_limits() {
        let configured = TenantLimits { events_per_second: 200, burst: 400, in_flight: 32, ..TenantLimits::default() };
        let admission = Admission::new(configured);
        assert_eq!(admission.limits(), configured);
        admission.share_among(3);
        let share = admission.limits();
        assert_eq!((share.events_per_second, share.burst, share.in_flight), (66, 133, 10));
        // Never below one.
        admission.share_among(1000);
        assert_eq!((admission.limits().events_per_second, admission.limits().in_flight), (1, 1));
        admission.share_among(0);
        assert_eq!(admission.limits(), configured);
    }

    #[test]
    fn the_burst_is_this_nodes_share() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        rt.block_on(async {
            let configured =
                TenantLimits { events_per_second: 1, burst: 30, in_flight: 100, ..TenantLimits::default() };
            let admission = Admission::new(configured);
            admission.share_among(3);
            let tenant: TenantId = "globex".parse().expect("id");
            let mut admitted = 0;
            for _ in 0..30 {
                if let Ok(permit) = admission.admit(&tenant).await {
                    admitted += 1;
                    drop(permit);
                }
            }
            assert_eq!(admitted, 10);
        })
    }
}
