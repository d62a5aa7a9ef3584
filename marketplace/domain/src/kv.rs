//! Plugin KV data in the marketplace database, shared by every node. Each scope (tenant,
//! install) has a row in `kv_scopes` with its usage and a revision that moves on every
//! commit: a commit made from an older revision (another node committed in between) is
//! refused with `KvError::Conflict`, and the quota is checked in the same transaction.

use std::sync::Arc;

use nexus_host::capability::kv::{BoxFuture, KvError, KvQuota, KvUsage, KvWrite, ScopeGuard};
use nexus_host::{KvScope, KvStore, StagedKv};
use nexus_registry::{Backend, Db};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub struct SqlKv {
    db: Db,
    /// Invocations holding a scope's cross-node lock at once, one per connection of
    /// [`Db::locks`]: they queue here (in order, without a timeout) rather than in the pool.
    lock_holders: Arc<Semaphore>,
}

/// Scopes locked across nodes at once on one node: the size of [`Db::locks`].
const MAX_LOCK_HOLDERS: usize = 6;

impl SqlKv {
    pub fn new(db: Db) -> Self {
        Self { db, lock_holders: Arc::new(Semaphore::new(MAX_LOCK_HOLDERS)) }
    }
}

/// The advisory lock key of a scope: the first 8 bytes of sha256(tenant, install). Two
/// scopes sharing a key only wait for each other.
fn lock_key(scope: &KvScope) -> i64 {
    let digest = Sha256::new().chain_update(&scope.tenant).chain_update([0]).chain_update(&scope.install).finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

fn backend(error: sqlx::Error) -> KvError {
    KvError::Backend(error.to_string())
}

/// A scope's stored `keys` and `bytes` counts (never negative; a negative one reads as 0).
fn stored_usage(keys: i64, bytes: i64) -> KvUsage {
    KvUsage { keys: u64::try_from(keys).unwrap_or(0), bytes: u64::try_from(bytes).unwrap_or(0) }
}

impl SqlKv {
    async fn commit_writes(
        &self,
        scope: &KvScope,
        writes: Vec<KvWrite>,
        quota: KvQuota,
        base: Option<u64>,
    ) -> Result<(), KvError> {
        let mut tx = self.db.write_tx().await.map_err(backend)?;
        let staged = StagedKv { scope: scope.clone(), writes, quota, base };
        apply(&mut tx, self.db.backend, &staged).await?;
        tx.commit().await.map_err(backend)
    }
}

/// Applies staged writes within `tx` (a write transaction the caller commits, with its
/// record of the invocation): refused with [`KvError::Conflict`] if the scope's revision is
/// no longer `base`, with [`KvError::Quota`] if the result would break the quota. On an
/// error the caller rolls back.
pub async fn apply(tx: &mut sqlx::AnyConnection, backend_kind: Backend, staged: &StagedKv) -> Result<(), KvError> {
    let StagedKv { scope, writes, quota, base } = staged;
    let (quota, base) = (*quota, *base);
    let (stored, revision, mut usage) = read_scope(tx, backend_kind, scope).await?;
    if base.is_some_and(|base| i64::try_from(base).ok() != Some(revision)) {
        return Err(KvError::Conflict);
    }
    for (key, value) in writes {
        write_entry(tx, scope, key, value.as_deref(), &mut usage).await?;
    }
    quota.check(usage).map_err(KvError::Quota)?;
    if move_revision(tx, scope, stored.then_some(revision), usage).await? == 0 {
        return Err(KvError::Conflict);
    }
    Ok(())
}

/// Whether the scope has a row, its revision and its usage (0 and none without a row).
async fn read_scope(
    tx: &mut sqlx::AnyConnection,
    backend_kind: Backend,
    scope: &KvScope,
) -> Result<(bool, i64, KvUsage), KvError> {
    // Locked on PostgreSQL, so the usage read here is the one the entries below belong to.
    let lock = nexus_registry::db::for_update(backend_kind);
    let select = format!("SELECT revision, keys, bytes FROM kv_scopes WHERE tenant_id = $1 AND install_id = $2{lock}");
    let row: Option<(i64, i64, i64)> = sqlx::query_as(&select)
        .bind(&scope.tenant)
        .bind(&scope.install)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
    Ok(match row {
        Some((revision, keys, bytes)) => (true, revision, stored_usage(keys, bytes)),
        None => (false, 0, KvUsage::default()),
    })
}

/// Writes (`value` Some) or deletes one key, keeping `usage` in step.
async fn write_entry(
    tx: &mut sqlx::AnyConnection,
    scope: &KvScope,
    key: &str,
    value: Option<&[u8]>,
    usage: &mut KvUsage,
) -> Result<(), KvError> {
    let old: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT value FROM kv_entries WHERE tenant_id = $1 AND install_id = $2 AND key = $3")
            .bind(&scope.tenant)
            .bind(&scope.install)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
    if let Some(old) = &old {
        usage.keys = usage.keys.saturating_sub(1);
        usage.bytes = usage.bytes.saturating_sub((key.len() + old.len()) as u64);
    }
    match value {
        Some(value) => {
            usage.keys += 1;
            usage.bytes += (key.len() + value.len()) as u64;
            sqlx::query(
                "INSERT INTO kv_entries (tenant_id, install_id, key, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, install_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(&scope.tenant)
            .bind(&scope.install)
            .bind(key)
            .bind(value.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        None if old.is_some() => {
            sqlx::query("DELETE FROM kv_entries WHERE tenant_id = $1 AND install_id = $2 AND key = $3")
                .bind(&scope.tenant)
                .bind(&scope.install)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        None => {}
    }
    Ok(())
}

/// Moves the scope's revision on from `revision` (None: the scope has no row yet) and
/// stores its usage: how many rows moved, 0 when another commit came first.
async fn move_revision(
    tx: &mut sqlx::AnyConnection,
    scope: &KvScope,
    revision: Option<i64>,
    usage: KvUsage,
) -> Result<u64, KvError> {
    // The conditional update is what makes two nodes' commits exclusive: the second
    // finds the revision moved (PostgreSQL re-reads the row after the first commits;
    // SQLite has one writer at a time).
    if let Some(revision) = revision {
        return Ok(sqlx::query(
            "UPDATE kv_scopes SET revision = revision + 1, keys = $1, bytes = $2 \
             WHERE tenant_id = $3 AND install_id = $4 AND revision = $5",
        )
        .bind(usage.keys as i64)
        .bind(usage.bytes as i64)
        .bind(&scope.tenant)
        .bind(&scope.install)
        .bind(revision)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected());
    }
    let inserted =
        sqlx::query("INSERT INTO kv_scopes (tenant_id, install_id, revision, keys, bytes) VALUES ($1, $2, 1, $3, $4)")
            .bind(&scope.tenant)
            .bind(&scope.install)
            .bind(usage.keys as i64)
            .bind(usage.bytes as i64)
            .execute(&mut *tx)
            .await;
    match inserted {
        Ok(result) => Ok(result.rows_affected()),
        Err(error) if nexus_registry::db::is_unique_violation(&error) => Ok(0),
        Err(error) => Err(backend(error)),
    }
}

impl KvStore for SqlKv {
    fn get<'a>(&'a self, scope: &'a KvScope, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT value FROM kv_entries WHERE tenant_id = $1 AND install_id = $2 AND key = $3")
                .bind(&scope.tenant)
                .bind(&scope.install)
                .bind(key)
                .fetch_optional(&self.db.pool)
                .await
                .map_err(backend)
        })
    }

    fn list_keys<'a>(&'a self, scope: &'a KvScope, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, KvError>> {
        Box::pin(async move {
            let rows: Vec<String> =
                sqlx::query_scalar("SELECT key FROM kv_entries WHERE tenant_id = $1 AND install_id = $2 ORDER BY key")
                    .bind(&scope.tenant)
                    .bind(&scope.install)
                    .fetch_all(&self.db.pool)
                    .await
                    .map_err(backend)?;
            let mut keys = Vec::new();
            for key in rows {
                if key.starts_with(prefix) {
                    keys.push(key);
                }
            }
            Ok(keys)
        })
    }

    fn usage<'a>(&'a self, scope: &'a KvScope) -> BoxFuture<'a, Result<KvUsage, KvError>> {
        Box::pin(async move {
            let row: Option<(i64, i64)> =
                sqlx::query_as("SELECT keys, bytes FROM kv_scopes WHERE tenant_id = $1 AND install_id = $2")
                    .bind(&scope.tenant)
                    .bind(&scope.install)
                    .fetch_optional(&self.db.pool)
                    .await
                    .map_err(backend)?;
            Ok(row.map_or_else(KvUsage::default, |(keys, bytes)| stored_usage(keys, bytes)))
        })
    }

    /// On PostgreSQL, a transaction holding `pg_advisory_xact_lock` on the scope: every node
    /// runs one KV invocation of an install at a time, so commits across nodes do not
    /// conflict (the revision check stays as the guarantee). Dropping the transaction rolls
    /// it back, which releases the lock. SQLite has one node.
    fn lock_scope<'a>(&'a self, scope: &'a KvScope) -> BoxFuture<'a, Result<Option<ScopeGuard>, KvError>> {
        Box::pin(async move {
            let Some(locks) = self.db.locks() else {
                return Ok(None);
            };
            let permit =
                self.lock_holders.clone().acquire_owned().await.map_err(|e| KvError::Backend(e.to_string()))?;
            // A connection of its own (not the pool's): it holds the lock and nothing else
            // while the plugin runs, and the reads and the commit take pooled connections.
            let mut tx = locks.begin().await.map_err(backend)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key(scope))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            Ok(Some(Box::new((tx, permit)) as ScopeGuard))
        })
    }

    fn revision<'a>(&'a self, scope: &'a KvScope) -> BoxFuture<'a, Result<Option<u64>, KvError>> {
        Box::pin(async move {
            let revision: Option<i64> =
                sqlx::query_scalar("SELECT revision FROM kv_scopes WHERE tenant_id = $1 AND install_id = $2")
                    .bind(&scope.tenant)
                    .bind(&scope.install)
                    .fetch_optional(&self.db.pool)
                    .await
                    .map_err(backend)?;
            Ok(Some(u64::try_from(revision.unwrap_or(0)).unwrap_or(0)))
        })
    }

    fn commit<'a>(
        &'a self,
        scope: &'a KvScope,
        writes: Vec<KvWrite>,
        quota: KvQuota,
        base: Option<u64>,
    ) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(self.commit_writes(scope, writes, quota, base))
    }
}
