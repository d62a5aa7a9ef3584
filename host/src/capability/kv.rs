//! Capability `kv`: a key-value store scoped to (tenant, install), with quotas. Writes of an
//! invocation are staged and committed in one batch only when it succeeds, so a failed
//! invocation leaves nothing half-written.

mod dir;
mod memory;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use dir::DirKv;
pub use memory::MemoryKv;

use super::CallError;
use crate::bindings::latest::nexus::plugin::kv::Host;
use crate::bindings::latest::nexus::plugin::types::HostError;
use crate::error::{Limit, LimitExceeded};
use crate::grants::Capability;
use crate::limits::{Limits, MAX_KV_KEY_BYTES};
use crate::state::InvocationState;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whose data: one tenant's install of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KvScope {
    pub tenant: String,
    pub install: String,
}

/// Keys and bytes (keys plus values) a scope holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    pub keys: u64,
    pub bytes: u64,
}

/// The quota a commit must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    pub keys: u64,
    pub bytes: u64,
}

impl KvQuota {
    pub fn of(limits: &Limits) -> Self {
        Self { keys: limits.kv_keys, bytes: limits.kv_bytes }
    }

    /// The first limit `usage` breaks, if any.
    pub fn check(&self, usage: KvUsage) -> Result<(), LimitExceeded> {
        if usage.keys > self.keys {
            return Err(LimitExceeded { limit: Limit::KvKeys, used: usage.keys, max: self.keys });
        }
        if usage.bytes > self.bytes {
            return Err(LimitExceeded { limit: Limit::KvBytes, used: usage.bytes, max: self.bytes });
        }
        Ok(())
    }
}

/// Whatever a store holds while a scope is locked across processes (a database transaction
/// holding an advisory lock, say); dropping it releases the lock.
pub type ScopeGuard = Box<dyn std::any::Any + Send>;

/// A staged write: `None` deletes.
pub type KvWrite = (String, Option<Vec<u8>>);

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error(transparent)]
    Quota(LimitExceeded),
    #[error("kv store: {0}")]
    Backend(String),
    /// Another invocation of the same install committed first (on another node); the
    /// invocation's reads are stale, so its writes are refused and it may be retried.
    #[error("another invocation of this install changed its KV data first; retry the event")]
    Conflict,
}

/// Where KV data lives. The marketplace implements it over its database; [`MemoryKv`] and
/// [`DirKv`] serve tests and `nexus plugin run`.
pub trait KvStore: Send + Sync {
    fn get<'a>(&'a self, scope: &'a KvScope, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>>;
    fn list_keys<'a>(&'a self, scope: &'a KvScope, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, KvError>>;
    fn usage<'a>(&'a self, scope: &'a KvScope) -> BoxFuture<'a, Result<KvUsage, KvError>>;
    /// The scope's current revision, read when an invocation first touches KV, for stores
    /// shared by several processes (the host's per-scope lock covers only its own
    /// process). `None`: the store needs no check.
    fn revision<'a>(&'a self, _scope: &'a KvScope) -> BoxFuture<'a, Result<Option<u64>, KvError>> {
        Box::pin(async { Ok(None) })
    }
    /// Serializes the scope's invocations across every process sharing the store (the
    /// host's own lock covers one process): taken at the first KV call, held until the
    /// returned guard is dropped, after the commit. `None`: the store needs no such lock.
    fn lock_scope<'a>(&'a self, _scope: &'a KvScope) -> BoxFuture<'a, Result<Option<ScopeGuard>, KvError>> {
        Box::pin(async { Ok(None) })
    }
    /// Applies every write or none, refusing with [`KvError::Quota`] if the result would
    /// break `quota` (checked atomically with the write, so concurrent invocations of one
    /// install cannot overshoot it together), and with [`KvError::Conflict`] if `base` (the
    /// revision the invocation read at) is no longer current.
    fn commit<'a>(
        &'a self,
        scope: &'a KvScope,
        writes: Vec<KvWrite>,
        quota: KvQuota,
        base: Option<u64>,
    ) -> BoxFuture<'a, Result<(), KvError>>;
}

/// `entries` with `writes` applied, if the result stays within `quota`: the one commit rule
/// every store in this crate applies atomically.
pub(crate) fn apply_within(
    entries: &BTreeMap<String, Vec<u8>>,
    writes: Vec<KvWrite>,
    quota: KvQuota,
) -> Result<BTreeMap<String, Vec<u8>>, KvError> {
    let mut next = entries.clone();
    for (key, value) in writes {
        match value {
            Some(value) => next.insert(key, value),
            None => next.remove(&key),
        };
    }
    quota.check(usage_of(&next)).map_err(KvError::Quota)?;
    Ok(next)
}

pub(crate) fn usage_of(entries: &BTreeMap<String, Vec<u8>>) -> KvUsage {
    let bytes = entries.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    KvUsage { keys: entries.len() as u64, bytes }
}

/// One lock per scope, so invocations of one install that use KV run one at a time: a
/// plugin's read-modify-write (a running total) never loses another invocation's update.
/// Invocations that never call `kv` take no lock.
#[derive(Debug, Default)]
pub struct KvLocks {
    scopes: std::sync::Mutex<std::collections::HashMap<KvScope, Arc<tokio::sync::Mutex<()>>>>,
}

/// Scopes kept without a holder before the table is swept of idle locks.
const IDLE_LOCKS_BEFORE_SWEEP: usize = 4096;

impl KvLocks {
    async fn lock(&self, scope: &KvScope) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            // A poisoned table only means another thread panicked mid-insert; the map is
            // still usable.
            let mut scopes = self.scopes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if scopes.len() > IDLE_LOCKS_BEFORE_SWEEP {
                scopes.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            scopes.entry(scope.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// One invocation's view of its scope: staged writes over the store.
pub struct KvTxn {
    scope: KvScope,
    store: Arc<dyn KvStore>,
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Usage with the staged writes applied; loaded on the first write.
    usage: Option<KvUsage>,
    locks: Arc<KvLocks>,
    /// Held from the first KV call until the invocation's state is dropped.
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// The store's cross-process lock of the scope, when it has one; released with `guard`.
    /// (In a mutex only to be `Sync`: it is never touched, only dropped.)
    shared: Option<std::sync::Mutex<ScopeGuard>>,
    /// The store's revision when the lock was taken.
    base: Option<u64>,
}

impl KvTxn {
    pub fn new(scope: KvScope, store: Arc<dyn KvStore>, locks: Arc<KvLocks>) -> Self {
        Self { scope, store, writes: BTreeMap::new(), usage: None, locks, guard: None, shared: None, base: None }
    }

    /// Takes the scope's lock, and notes the store's revision, before the first read or write.
    async fn enter(&mut self) -> Result<(), KvError> {
        if self.guard.is_none() {
            self.guard = Some(self.locks.lock(&self.scope).await);
            self.shared = self.store.lock_scope(&self.scope).await?.map(std::sync::Mutex::new);
            self.base = self.store.revision(&self.scope).await?;
        }
        Ok(())
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self.writes.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => self.store.get(&self.scope, key).await,
        }
    }

    /// Stages a write after checking that the scope stays within `quota` and the invocation
    /// within `max_writes` distinct staged keys (deletes count too: each is kept until commit).
    async fn stage(
        &mut self,
        key: String,
        value: Option<Vec<u8>>,
        quota: KvQuota,
        max_writes: u64,
    ) -> Result<bool, CallError> {
        let staged = self.writes.len() as u64;
        if staged >= max_writes && !self.writes.contains_key(&key) {
            return Err(LimitExceeded { limit: Limit::KvWrites, used: staged + 1, max: max_writes }.into());
        }
        self.enter().await.map_err(trap)?;
        let mut usage = match self.usage {
            Some(usage) => usage,
            None => self.store.usage(&self.scope).await.map_err(trap)?,
        };
        let old = self.read(&key).await.map_err(trap)?;
        let existed = old.is_some();
        if let Some(old) = old {
            // Saturating: another node may have changed the scope since its usage was read
            // (the commit then fails its revision check).
            usage.keys = usage.keys.saturating_sub(1);
            usage.bytes = usage.bytes.saturating_sub((key.len() + old.len()) as u64);
        }
        if let Some(value) = &value {
            usage.keys += 1;
            usage.bytes += (key.len() + value.len()) as u64;
            quota.check(usage)?;
        }
        self.usage = Some(usage);
        self.writes.insert(key, value);
        Ok(existed)
    }

    /// Commits the staged writes through the store, when the invocation succeeded.
    pub async fn commit(&mut self, quota: KvQuota) -> Result<(), KvError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        self.store.commit(&self.scope, self.staged_writes(), quota, self.base).await
    }

    /// Moves this invocation's view out (staged writes, lock, revision), leaving an empty
    /// one over the same scope.
    pub(crate) fn take(&mut self) -> Self {
        let empty = Self::new(self.scope.clone(), self.store.clone(), self.locks.clone());
        std::mem::replace(self, empty)
    }

    pub(crate) fn scope(&self) -> &KvScope {
        &self.scope
    }

    pub(crate) fn base(&self) -> Option<u64> {
        self.base
    }

    pub(crate) fn staged_count(&self) -> usize {
        self.writes.len()
    }

    pub(crate) fn staged_writes(&self) -> Vec<KvWrite> {
        self.writes.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
    }
}

fn trap(error: KvError) -> CallError {
    match error {
        KvError::Quota(limit) => limit.into(),
        KvError::Backend(message) => CallError::Trap(wasmtime::Error::msg(format!("kv store: {message}"))),
        KvError::Conflict => CallError::Trap(wasmtime::Error::msg(KvError::Conflict.to_string())),
    }
}

fn check_key(key: &str) -> Result<(), CallError> {
    if key.is_empty() || key.len() > MAX_KV_KEY_BYTES {
        let why = format!("kv keys must be 1 to {MAX_KV_KEY_BYTES} bytes, got {}", key.len());
        return Err(HostError::InvalidArgument(why).into());
    }
    Ok(())
}

impl Host for InvocationState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CallError> {
        self.require(Capability::Kv)?;
        check_key(&key)?;
        self.kv.enter().await.map_err(trap)?;
        self.kv.read(&key).await.map_err(trap)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), CallError> {
        self.require(Capability::Kv)?;
        check_key(&key)?;
        let max = self.limits().kv_value_bytes;
        if value.len() as u64 > max {
            return Err(LimitExceeded { limit: Limit::KvValueBytes, used: value.len() as u64, max }.into());
        }
        let (quota, max_writes) = (KvQuota::of(self.limits()), self.limits().kv_writes);
        self.kv.stage(key, Some(value), quota, max_writes).await.map(drop)
    }

    async fn delete(&mut self, key: String) -> Result<bool, CallError> {
        self.require(Capability::Kv)?;
        check_key(&key)?;
        let (quota, max_writes) = (KvQuota::of(self.limits()), self.limits().kv_writes);
        self.kv.stage(key, None, quota, max_writes).await
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, CallError> {
        self.require(Capability::Kv)?;
        self.kv.enter().await.map_err(trap)?;
        let stored = self.kv.store.list_keys(&self.kv.scope, &prefix).await.map_err(trap)?;
        let mut keys: std::collections::BTreeSet<String> = stored.into_iter().collect();
        for (key, value) in self.kv.writes.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            match value {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        Ok(keys.into_iter().collect())
    }
}
