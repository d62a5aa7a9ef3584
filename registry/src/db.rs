//! The registry's database: SQLite by default (one file in the data folder, WAL), PostgreSQL
//! when given a `postgres://` URL so several nodes share one registry. Both run the same
//! queries through sqlx's `Any` driver; only the migrations differ per backend.
//!
//! - `connect.rs`: opening the pools of either backend; `limits.rs`: how many connections.
//! - `migrate.rs`: the migrations and their checksums.
//! - `wal.rs`: SQLite's shared fsync of the write-ahead log ([`Db::durable`]).
//! - `positional.rs`: statements with lists of parameters, bound by position on SQLite.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;

use crate::error::RegistryError;

mod connect;
mod limits;
mod migrate;
mod positional;
mod wal;

pub use connect::sqlite_file;
pub use limits::{DbLimits, MAX_CONNECTIONS};
pub use positional::{backend_of, placeholders, value_rows};
use wal::WalSync;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// [`Db::for_update`] for code handed a connection and its backend rather than the [`Db`].
pub fn for_update(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    }
}

/// Connections for reading, and the writer, and which backend they talk to.
///
/// SQLite has one writer per database file. Rather than letting every pooled connection
/// fight for the file lock (busy timeouts, `database is locked` under a few concurrent
/// requests), the server schedules it: every write goes through [`Db::writer`], a pool of
/// exactly one connection, so writers queue in arrival order (sqlx's pool is fair) and a
/// write transaction never waits on the lock. The reading connections are opened read-only
/// (`query_only`), so a write that bypasses the writer fails in tests instead of contending
/// in production. On PostgreSQL both are the same pool and rows are locked where they are
/// read.
///
/// Rule for callers: never hold a connection of one pool while acquiring another (a write
/// transaction reads through itself, not through [`Db::pool`]), and never keep a write
/// transaction open across a plugin run or a call to another service.
#[derive(Debug, Clone)]
pub struct Db {
    /// Connections for reads (read-only on SQLite).
    pub pool: AnyPool,
    /// The connection(s) writes go through: one on SQLite, the shared pool on PostgreSQL.
    writer: AnyPool,
    /// PostgreSQL only: connections that hold nothing but an advisory lock for as long as
    /// the work it guards runs (a plugin's KV scope across nodes). Kept apart from the pool
    /// so a lock holder, which needs pooled connections for its reads and commit, never
    /// takes one that another request's statement is waiting for.
    locks: Option<AnyPool>,
    /// SQLite only: the write-ahead log's shared fsync (see [`Db::durable`]).
    wal: Option<Arc<WalSync>>,
    /// Told by every [`Db::write_tx`] before it waits for the writer, so a task that keeps the
    /// writer connection between its batches (the invocation writer) hands it over at once.
    writer_wanted: Arc<tokio::sync::Notify>,
    pub backend: Backend,
}

/// Something that must commit with every write of one request (the marketplace's
/// idempotency key): run at the start of each [`Db::write_tx`] begun inside
/// [`with_write_hook`].
pub trait WriteHook: Send + Sync {
    fn on_begin<'a>(&'a self, tx: &'a mut sqlx::AnyConnection) -> HookFuture<'a>;
    fn on_location<'a>(&'a self, tx: &'a mut sqlx::AnyConnection, location: &'a str) -> HookFuture<'a>;
}

pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

tokio::task_local! {
    static WRITE_HOOK: Arc<dyn WriteHook>;
}

/// Runs `work` with `hook` on every write transaction it begins on this task (not on tasks
/// it spawns: their writes are not the request's effect).
pub async fn with_write_hook<F: Future>(hook: Arc<dyn WriteHook>, work: F) -> F::Output {
    WRITE_HOOK.scope(hook, work).await
}

impl Db {
    /// A transaction that will write, the one way on both backends: on SQLite it takes the
    /// write lock at once (a deferred transaction that reads first cannot upgrade to a writer
    /// once another connection wrote: "database is locked" without waiting out the busy
    /// timeout); on PostgreSQL rows are locked where they are read (`FOR UPDATE`).
    ///
    /// Inside [`with_write_hook`] (a request carrying an idempotency key), the hook runs
    /// first in every such transaction, so what it writes commits or rolls back with the
    /// effect.
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let mut tx = match self.backend {
            Backend::Sqlite => {
                self.writer_wanted.notify_one();
                self.writer.begin_with("BEGIN IMMEDIATE").await?
            }
            Backend::Postgres => self.writer.begin().await?,
        };
        if let Ok(hook) = WRITE_HOOK.try_with(Arc::clone) {
            hook.on_begin(&mut tx).await?;
        }
        Ok(tx)
    }

    /// Tells the write hook of the running request (if any) which resource its effect
    /// created (`/v1/installs/ins_…`), inside the transaction that created it: the answer
    /// can be rebuilt from it if the process dies before answering.
    pub async fn note_location(&self, tx: &mut sqlx::AnyConnection, location: &str) -> Result<(), sqlx::Error> {
        match WRITE_HOOK.try_with(Arc::clone) {
            Ok(hook) => hook.on_location(tx, location).await,
            Err(_) => Ok(()),
        }
    }

    /// Waits until every transaction committed before this call is durable (on disk, not
    /// only in the operating system's cache), sharing the work with every other caller:
    /// group commit.
    ///
    /// SQLite's writer commits with `synchronous = NORMAL`: a commit writes its pages to the
    /// write-ahead log without an fsync of its own, so it survives the process being killed
    /// but not yet a power loss. What makes it durable is one fsync of the log, issued here
    /// on behalf of every commit made before it started: under load, many requests' commits
    /// share one fsync instead of each waiting for its own behind the single writer. Nothing
    /// is answered and no other service is called on the strength of a commit before this
    /// returns (the server waits for it before answering a changing request; the payment and
    /// payout providers are called through it). A checkpoint moving the log into the
    /// database syncs both files itself. On PostgreSQL a commit is durable when it returns,
    /// and this does nothing.
    pub async fn durable(&self) -> Result<(), sqlx::Error> {
        match &self.wal {
            Some(wal) => wal.sync().await,
            None => Ok(()),
        }
    }

    /// Closes the readers and the writer, waiting for connections in use to come back.
    pub async fn close(&self) {
        if let Err(error) = self.durable().await {
            tracing::warn!(%error, "syncing the write-ahead log before closing the database");
        }
        self.pool.close().await;
        self.writer.close().await;
        if let Some(locks) = &self.locks {
            locks.close().await;
        }
    }

    /// Notified when a [`Db::write_tx`] is about to wait for the writer connection (SQLite): a
    /// task keeping that connection between batches releases it on this.
    pub fn writer_wanted(&self) -> &tokio::sync::Notify {
        &self.writer_wanted
    }

    /// Where a single write statement outside a transaction goes (`query.execute(db.writer())`).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// PostgreSQL: the connections kept for advisory locks held across work that is not
    /// a database transaction (see the field); `None` on SQLite (one node, nothing to lock
    /// across).
    pub fn locks(&self) -> Option<&AnyPool> {
        self.locks.as_ref()
    }

    /// What locks the rows a `SELECT` reads inside [`Db::write_tx`]: ` FOR UPDATE` on
    /// PostgreSQL, nothing on SQLite (where the write transaction holds the whole database).
    pub fn for_update(&self) -> &'static str {
        for_update(self.backend)
    }

    /// [`Db::for_update`] of one table of a join (` FOR UPDATE OF alias`).
    pub fn for_update_of(&self, alias: &str) -> String {
        match self.backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => format!(" FOR UPDATE OF {alias}"),
        }
    }
}

/// This process's id: it names the process in what a process claims (a request's id, a
/// charge being collected), so that a claim whose process is gone can be recovered at once
/// by this process, or by any process on SQLite, where one server writes a file.
pub fn process_id() -> &'static str {
    static ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        crate::publishers::random_hex(6).unwrap_or_else(|_| format!("{}", std::process::id()))
    });
    &ID
}

/// Milliseconds since the Unix epoch, the time type of every table.
/// How far this process's "now" is from the wall clock; 0 except in `nexus serve --demo`.
static PROCESS_CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the epoch: every record's timestamp (versions, tokens, installs,
/// invocations, the audit log) and the system billing clock read it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .saturating_add(PROCESS_CLOCK_OFFSET_MS.load(Ordering::Relaxed))
}

/// Moves this process's "now" `offset_ms` from the wall clock. Only the demo does, to live
/// through a month of history before it serves at the real time (offset 0 again), so its
/// audit log, listings and bills all date the same events alike. Never in a server.
pub fn shift_process_clock(offset_ms: i64) {
    PROCESS_CLOCK_OFFSET_MS.store(offset_ms, Ordering::Relaxed);
}

pub fn storage(error: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(error.to_string())
}

/// Whether a database error is a unique-constraint violation (SQLSTATE 23505 on
/// PostgreSQL, extended code 2067/1555 on SQLite).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("23505" | "2067" | "1555"))
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
