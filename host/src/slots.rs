//! Invocation slots shared fairly between tenants. The host runs at most `total` invocations
//! at once (the instance pool is sized for exactly that many, runtime.rs), and one tenant
//! holds at most `per_tenant` of them. When slots are short, a freed slot goes to the waiting
//! tenant that holds the fewest (first come first served among equals), so a tenant that
//! floods the host waits behind everyone else instead of starving them. A wait is bounded:
//! past it the invocation is refused as busy, the host's condition rather than the plugin's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

#[derive(Debug)]
pub(crate) struct Slots {
    state: Mutex<State>,
    per_tenant: usize,
    wait: Duration,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    held: HashMap<Arc<str>, usize>,
    waiting: VecDeque<Waiter>,
    next_ticket: u64,
    closed: bool,
}

#[derive(Debug)]
struct Waiter {
    tenant: Arc<str>,
    ticket: u64,
    grant: oneshot::Sender<()>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No slot this tenant may use became free within the wait.
    Busy,
    /// The host is shutting down.
    Closed,
}

/// A held slot; dropping it frees the slot for the next waiter.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    slots: &'a Slots,
    tenant: Arc<str>,
}

impl Slots {
    pub(crate) fn new(total: usize, per_tenant: usize, wait: Duration) -> Self {
        let state = State { free: total, ..State::default() };
        Self { state: Mutex::new(state), per_tenant: per_tenant.clamp(1, total.max(1)), wait }
    }

    /// Takes a slot for `tenant`, waiting at most the configured wait.
    pub(crate) async fn acquire(&self, tenant: &str) -> Result<Slot<'_>, Refused> {
        let (tenant, ticket, granted) = {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed);
            }
            let tenant: Arc<str> = state.held.get_key_value(tenant).map_or_else(|| tenant.into(), |(k, _)| k.clone());
            let held = state.held.get(&tenant).copied().unwrap_or(0);
            // Free slots mean nobody eligible is waiting (every release hands slots out), so
            // taking one here never jumps a queue.
            if state.free > 0 && held < self.per_tenant {
                state.free -= 1;
                *state.held.entry(tenant.clone()).or_insert(0) += 1;
                return Ok(Slot { slots: self, tenant });
            }
            let (grant, granted) = oneshot::channel();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiting.push_back(Waiter { tenant: tenant.clone(), ticket, grant });
            (tenant, ticket, granted)
        };
        match tokio::time::timeout(self.wait, granted).await {
            Ok(Ok(())) => Ok(Slot { slots: self, tenant }),
            // The sender is dropped only when the host closes the slots.
            Ok(Err(_)) => Err(Refused::Closed),
            Err(_) => {
                let mut state = self.lock();
                match state.waiting.iter().position(|w| w.ticket == ticket) {
                    Some(index) => {
                        state.waiting.remove(index);
                    }
                    // Granted between the timeout and this lock: the slot is ours to give back.
                    None => self.release(&mut state, &tenant),
                }
                Err(Refused::Busy)
            }
        }
    }

    /// Refuses every waiter and every later acquire.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.waiting.clear();
    }

    /// Slots held by `tenant` now.
    #[cfg(test)]
    fn held(&self, tenant: &str) -> usize {
        self.lock().held.get(tenant).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, state: &mut State, tenant: &Arc<str>) {
        if let Some(held) = state.held.get_mut(tenant) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(tenant);
            }
        }
        state.free += 1;
        self.hand_out(state);
    }

    /// Gives free slots to waiters: the tenant holding the fewest first, then the earliest.
    fn hand_out(&self, state: &mut State) {
        while state.free > 0 {
            let held = |tenant: &Arc<str>| state.held.get(tenant).copied().unwrap_or(0);
            let next = state
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| held(&w.tenant) < self.per_tenant)
                .min_by_key(|(index, w)| (held(&w.tenant), *index))
                .map(|(index, _)| index);
            let Some(waiter) = next.and_then(|index| state.waiting.remove(index)) else {
                return;
            };
            if waiter.grant.send(()).is_ok() {
                state.free -= 1;
                *state.held.entry(waiter.tenant).or_insert(0) += 1;
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        self.slots.release(&mut state, &self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
    }

    #[test]
    fn one_tenant_never_holds_more_than_its_share() {
        runtime().block_on(async {
            let slots = Slots::new(4, 2, Duration::from_millis(20));
            let a1 = slots.acquire("a").await.expect("first");
            let _a2 = slots.acquire("a").await.expect("second");
            assert_eq!(slots.acquire("a").await.err(), Some(Refused::Busy));
            let _b = slots.acquire("b").await.expect("another tenant gets a free slot at once");
            assert_eq!(slots.held("a"), 2);
            drop(a1);
            assert_eq!(slots.held("a"), 1);
            let _a3 = slots.acquire("a").await.expect("back under its share");
        })
    }

    #[test]
    fn a_freed_slot_goes_to_the_tenant_holding_fewest() {
        runtime().block_on(async {
            let slots = Arc::new(Slots::new(2, 2, Duration::from_secs(5)));
            let a1 = slots.acquire("a").await.expect("a1");
            let a2 = slots.acquire("a").await.expect("a2");
            // `a` queues first, `b` second; `b` holds nothing, so it is served first.
            let queued_a = tokio::spawn({
                let slots = slots.clone();
                async move { slots.acquire("a").await.map(drop) }
            });
            tokio::task::yield_now().await;
            let queued_b = tokio::spawn({
                let slots = slots.clone();
                async move {
                    let slot = slots.acquire("b").await;
                    let held = slots.held("b");
                    (slot.map(drop), held)
                }
            });
            tokio::task::yield_now().await;
            drop(a1);
            assert_eq!(queued_b.await.expect("join"), (Ok(()), 1));
            drop(a2);
            assert_eq!(queued_a.await.expect("join"), Ok(()));
            assert_eq!(slots.held("a"), 0);
            assert_eq!(slots.held("b"), 0);
        })
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_no_slot_behind() {
        runtime().block_on(async {
            let slots = Slots::new(1, 1, Duration::from_millis(10));
            let held = slots.acquire("a").await.expect("a");
            assert_eq!(slots.acquire("b").await.err(), Some(Refused::Busy));
            drop(held);
            let _b = slots.acquire("b").await.expect("the slot came back");
            slots.close();
            assert_eq!(slots.acquire("c").await.err(), Some(Refused::Closed));
        })
    }
}
