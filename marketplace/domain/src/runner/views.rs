//! What an event reads before anything runs, cached on each node: the caller of a tenant
//! token and the tenant's installs. Each is kept with the [`Generations`] it was read at:
//! the tenant's `tenants.generation`, which database triggers bump in the same transaction
//! as every write to that tenant's installs or tokens (migration 0013), and the marketplace's
//! `cache_generation` (key revocations, delistings). An event reads both (a statement that
//! starts after it arrived, shared with the events that arrived meanwhile:
//! `generations.rs`) and uses what is cached at them, reading anything older again. So a
//! revocation, a pause, an uninstall or an upgrade reaches every node at its next event, as
//! when everything was read per event, and an unchanged tenant costs a share of one small
//! read instead of two larger ones.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use nexus_registry::db::now_ms;
use nexus_registry::publishers::secret_hash;
use nexus_registry::{Db, RegistryError};

use super::generations::{GenerationReads, Generations};
use crate::accounts::{self, Caller, ReadCaller, TenantId, TokenKind};
use crate::error::MarketError;
use crate::installs::{self, Target};
use crate::market::Market;

/// Entries kept per cache; past it, the cache starts over (a flood of distinct tokens
/// cannot grow a node's memory).
const MAX_ENTRIES: usize = 50_000;

/// The per-node caches of the events route.
pub struct EventViews {
    generations: GenerationReads,
    /// Tenant tokens by the sha256 of their secret.
    callers: Mutex<HashMap<String, ReadCaller>>,
    /// Each tenant's live installs, and the generations they were read at.
    targets: Mutex<HashMap<TenantId, (Generations, Vec<Target>)>>,
}

/// Who sent an event, and the generations that were current when the route started.
#[derive(Debug, Clone)]
pub struct EventCaller {
    pub caller: Caller,
    /// `None` for callers that are not tenants (the route then refuses them), or when the
    /// installs are to be read afresh.
    seen: Option<Generations>,
}

impl EventCaller {
    /// A caller authenticated elsewhere (the idempotency layer): installs are read afresh.
    pub fn fresh(caller: Caller) -> Self {
        Self { caller, seen: None }
    }
}

impl EventViews {
    /// Must be called within a tokio runtime: it starts the generation reader.
    pub fn new(db: Db) -> Self {
        Self {
            generations: GenerationReads::start(db),
            callers: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
        }
    }

    /// The caller of `token` for the events route. A tenant token known at the tenant's
    /// current generation costs one read of that generation; any other token is checked
    /// as every route checks it.
    pub async fn caller(&self, market: &Market, token: &str) -> Result<EventCaller, MarketError> {
        let token = token.trim();
        if TokenKind::of(token) != TokenKind::Account {
            let caller = accounts::authenticate(&market.db, &market.registry, token).await?;
            return Ok(EventCaller::fresh(caller));
        }
        let hash = secret_hash(token);
        let cached = lock(&self.callers).get(&hash).cloned();
        if let Some(cached) = cached
            && let Caller::Tenant { tenant, .. } = &cached.caller
        {
            let current = self.generations.current(tenant).await?;
            // A token's row changes only with its tenant's generation (the trigger).
            if current.tenant == cached.tenant_generation {
                if cached.expires_at.is_some_and(|at| at <= now_ms()) {
                    return Err(RegistryError::TokenExpired.into());
                }
                return Ok(EventCaller { caller: cached.caller, seen: Some(current) });
            }
        }
        let read = match accounts::account_caller(&market.db, &hash).await {
            Ok(read) => read,
            Err(error) => {
                lock(&self.callers).remove(&hash);
                return Err(error);
            }
        };
        let seen = matches!(read.caller, Caller::Tenant { .. })
            .then_some(Generations { global: read.generation, tenant: read.tenant_generation });
        let caller = read.caller.clone();
        if seen.is_some() {
            insert_bounded(&mut lock(&self.callers), hash, read);
        }
        Ok(EventCaller { caller, seen })
    }

    /// The tenant's live installs: cached when they were read at the generations the caller
    /// saw (or newer ones), read again otherwise.
    pub async fn targets(
        &self,
        market: &Market,
        who: &EventCaller,
        tenant: &TenantId,
    ) -> Result<Vec<Target>, MarketError> {
        if let Some(seen) = who.seen
            && let Some((at, targets)) = lock(&self.targets).get(tenant)
            && at.covers(seen)
        {
            return Ok(targets.clone());
        }
        let (targets, (global, tenant_generation)) = installs::targets_read(market, tenant).await?;
        let at = Generations { global, tenant: tenant_generation };
        insert_bounded(&mut lock(&self.targets), tenant.clone(), (at, targets.clone()));
        Ok(targets)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn insert_bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, value);
}
