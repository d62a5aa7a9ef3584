//! Invocation records: every invocation's row (what billing and dashboards read), written
//! by one task that commits whatever has queued up in a single transaction (group commit).
//! Each invocation still waits for its own row to be durable before its caller gets an
//! answer; the batching only shares the commit (one fsync on SQLite) among the invocations
//! that finished meanwhile, instead of making every writer wait for the lock in turn. On
//! SQLite a batch is one script (begin, insert, usage, commit) sent to the connection's
//! thread at once: one hand-off per batch rather than one per statement. The same transaction
//! adds the batch's usage to its install's hours ([`usage_hours`]), which billing reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nexus_host::capability::kv::KvError;
use nexus_host::{LogLine, StagedKv};
use nexus_registry::{Db, PluginId};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::TenantId;
use crate::error::{MarketError, storage};
use crate::ids::{InstallId, InvocationId};

mod health;
mod read;
mod rows;
pub mod usage_hours;
mod writer;

pub use health::{InstallHealth, LastError, VersionHealth, install_health, invocations_by_plugin, version_health};
pub use read::{InvocationQuery, applied, applied_to, get, list, of_install};

/// Rows waiting for the writer before appenders wait for room.
const QUEUE: usize = 4096;

/// A recorded invocation: what billing and dashboards read.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvocationRecord {
    pub id: InvocationId,
    pub tenant: TenantId,
    pub install: InstallId,
    #[schema(value_type = String)]
    pub plugin: PluginId,
    pub version: String,
    pub event_id: String,
    pub event_type: String,
    pub started_at: i64,
    pub duration_us: i64,
    pub outcome: String,
    pub error: Option<String>,
    pub fuel_used: i64,
    pub peak_memory_bytes: i64,
    pub http_requests: i64,
    pub kv_writes: i64,
    pub denials: i64,
    pub usage: BTreeMap<String, u64>,
    /// The plugin's log lines, the first [`MAX_KEPT_LOG_BYTES`] of them.
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<LogLine>,
    /// The last [`MAX_KEPT_STDERR_BYTES`] of what the plugin wrote to stderr.
    pub stderr: String,
    /// What an applied invocation answered: its data (within the host's output limit, as
    /// the actions), kept so that every later answer about it is the first one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<nexus_host::Action>,
}

/// Log text kept per invocation record (the host's own limit per invocation is larger).
pub const MAX_KEPT_LOG_BYTES: usize = 8 << 10;
/// The end of stderr kept per invocation record: where a runtime prints the exception.
pub const MAX_KEPT_STDERR_BYTES: usize = 4 << 10;

/// The log lines of a report that fit in [`MAX_KEPT_LOG_BYTES`] of messages, in order.
pub fn kept_logs(lines: &[LogLine]) -> Vec<LogLine> {
    let mut total = 0;
    lines
        .iter()
        .take_while(|line| {
            total += line.message.len();
            total <= MAX_KEPT_LOG_BYTES
        })
        .cloned()
        .collect()
}

/// The last [`MAX_KEPT_STDERR_BYTES`] of `stderr`, cut at a character boundary.
pub fn kept_stderr(stderr: &str) -> String {
    let mut start = stderr.len().saturating_sub(MAX_KEPT_STDERR_BYTES);
    while !stderr.is_char_boundary(start) {
        start += 1;
    }
    stderr[start..].to_string()
}

/// What writing a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Inserted,
    /// The event had already been applied to this install (another delivery of the same
    /// event id won): nothing of this attempt was kept; the applied record is this one.
    Duplicate(String),
}

type Pending = (InvocationRecord, oneshot::Sender<Result<Written, String>>);

/// The handle invocations append through; cheap to clone.
#[derive(Clone)]
pub struct InvocationLog {
    sender: mpsc::Sender<Pending>,
    /// Invocations running that have not queued their row yet ([`Coming`]).
    coming: Arc<AtomicUsize>,
}

/// An invocation on its way to a row: taken when it starts, given back once its row is
/// queued, or dropped when it ends without one (a KV commit, a busy host). While any are out
/// the writer gathers before it commits (see `GATHER_TURNS` in `writer.rs`).
#[derive(Debug)]
pub struct Coming(Arc<AtomicUsize>);

impl Drop for Coming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InvocationLog {
    /// Starts the writer task on the current runtime. It ends when every handle is dropped,
    /// after writing what is queued.
    pub fn start(db: Db) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let coming = Arc::new(AtomicUsize::new(0));
        tokio::spawn(writer::write_batches(db, receiver, coming.clone()));
        Self { sender, coming }
    }

    /// Announces a row to come (an invocation starts).
    pub fn coming(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::AcqRel);
        Coming(self.coming.clone())
    }

    /// Writes `record` and returns once it is committed; `coming` is given back as soon as
    /// the row is queued.
    pub async fn append(&self, record: InvocationRecord, coming: Coming) -> Result<Written, MarketError> {
        let (done, committed) = oneshot::channel();
        let queued = self.sender.send((record, done)).await;
        drop(coming);
        queued.map_err(|_| storage("the invocation writer has stopped"))?;
        committed.await.map_err(|_| storage("the invocation writer has stopped"))?.map_err(MarketError::Storage)
    }
}

/// Commits an applied invocation that staged KV writes: its row and usage first (so a
/// second delivery of the same event finds it applied and keeps nothing), then the writes,
/// all in one transaction. A crash leaves either all of it or none.
pub async fn commit_applied(db: &Db, staged: &StagedKv, record: &InvocationRecord) -> Result<Written, KvError> {
    let backend = |error: sqlx::Error| KvError::Backend(error.to_string());
    let mut tx = db.write_tx().await.map_err(backend)?;
    let written = insert(&mut tx, record).await.map_err(backend)?;
    if written != Written::Inserted {
        return Ok(written);
    }
    crate::kv::apply(&mut tx, db.backend, staged).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Written::Inserted)
}

/// Inserts one row (and, for an applied invocation, its usage rows). An applied row for an
/// event already applied to the install is not inserted: the existing row's id comes back.
async fn insert(tx: &mut sqlx::AnyConnection, record: &InvocationRecord) -> Result<Written, sqlx::Error> {
    let mut written = rows::insert_rows(tx, std::slice::from_ref(record)).await?;
    written.pop().ok_or_else(|| sqlx::Error::Protocol("no result for the inserted row".into()))
}

#[cfg(test)]
mod tests;
