//! An in-process KV store, for tests and single-process use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{BoxFuture, KvError, KvQuota, KvScope, KvStore, KvUsage, KvWrite, apply_within, usage_of};

#[derive(Debug, Default)]
pub struct MemoryKv {
    scopes: Mutex<HashMap<KvScope, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, scope: &KvScope, f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> R) -> Result<R, KvError> {
        let mut scopes = self.scopes.lock().map_err(|_| KvError::Backend("memory store poisoned".into()))?;
        Ok(f(scopes.entry(scope.clone()).or_default()))
    }
}

impl KvStore for MemoryKv {
    fn get<'a>(&'a self, scope: &'a KvScope, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(async move { self.with(scope, |entries| entries.get(key).cloned()) })
    }

    fn list_keys<'a>(&'a self, scope: &'a KvScope, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, KvError>> {
        Box::pin(async move {
            self.with(scope, |entries| entries.keys().filter(|k| k.starts_with(prefix)).cloned().collect())
        })
    }

    fn usage<'a>(&'a self, scope: &'a KvScope) -> BoxFuture<'a, Result<KvUsage, KvError>> {
        Box::pin(async move { self.with(scope, |entries| usage_of(entries)) })
    }

    fn commit<'a>(
        &'a self,
        scope: &'a KvScope,
        writes: Vec<KvWrite>,
        quota: KvQuota,
        _base: Option<u64>,
    ) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            self.with(scope, |entries| {
                *entries = apply_within(entries, writes, quota)?;
                Ok(())
            })?
        })
    }
}
