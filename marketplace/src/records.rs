//! Invocation records: every invocation's row (what billing and dashboards read), written
//! by one task that commits whatever has queued up in a single transaction (group commit).
//! Each invocation still waits for its own row to be durable before its caller gets an
//! answer; the batching only shares the commit (one fsync on SQLite) among the invocations
//! that finished meanwhile, instead of making every writer wait for the lock in turn.

use std::collections::BTreeMap;

use nexus_registry::{Backend, Db};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::Caller;
use crate::error::{MarketError, Page, storage};
use crate::installs;
use crate::market::Market;

/// Rows written in one transaction at most.
const MAX_BATCH: usize = 512;
/// Rows waiting for the writer before appenders wait for room.
const QUEUE: usize = 4096;

/// A recorded invocation: what billing and dashboards read.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvocationRecord {
    pub id: String,
    pub tenant: String,
    pub install: String,
    pub plugin: String,
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
}

type Pending = (InvocationRecord, oneshot::Sender<Result<(), String>>);

/// The handle invocations append through; cheap to clone.
#[derive(Clone)]
pub struct InvocationLog {
    sender: mpsc::Sender<Pending>,
}

impl InvocationLog {
    /// Starts the writer task on the current runtime. It ends when every handle is dropped,
    /// after writing what is queued.
    pub fn start(db: Db) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(db, receiver));
        Self { sender }
    }

    /// Writes `record` and returns once it is committed.
    pub async fn append(&self, record: InvocationRecord) -> Result<(), MarketError> {
        let (done, committed) = oneshot::channel();
        self.sender.send((record, done)).await.map_err(|_| storage("the invocation writer has stopped"))?;
        committed.await.map_err(|_| storage("the invocation writer has stopped"))?.map_err(MarketError::Storage)
    }
}

async fn write_batches(db: Db, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, waiting): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let result = insert(&db, &records).await.map_err(|error| {
            tracing::error!(%error, rows = records.len(), "invocation records not written");
            error.to_string()
        });
        for done in waiting {
            // An appender that gave up (its request was dropped) no longer listens.
            let _ = done.send(result.clone());
        }
    }
}

async fn insert(db: &Db, records: &[InvocationRecord]) -> Result<(), sqlx::Error> {
    // SQLite: take the write lock up front rather than fail to upgrade a read lock.
    let mut tx = match db.backend {
        Backend::Sqlite => db.pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => db.pool.begin().await?,
    };
    for record in records {
        sqlx::query(
            "INSERT INTO invocations (id, tenant_id, install_id, plugin_id, version, event_id, event_type, \
             started_at, duration_us, outcome, error_message, fuel_used, peak_memory_bytes, http_requests, \
             kv_writes, denials, usage) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&record.id)
        .bind(&record.tenant)
        .bind(&record.install)
        .bind(&record.plugin)
        .bind(&record.version)
        .bind(&record.event_id)
        .bind(&record.event_type)
        .bind(record.started_at)
        .bind(record.duration_us)
        .bind(&record.outcome)
        .bind(record.error.as_deref())
        .bind(record.fuel_used)
        .bind(record.peak_memory_bytes)
        .bind(record.http_requests)
        .bind(record.kv_writes)
        .bind(record.denials)
        .bind(serde_json::to_string(&record.usage).unwrap_or_else(|_| "{}".into()))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Filters for reading invocations.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvocationQuery {
    pub outcome: Option<String>,
    /// 1-based page, newest first.
    pub page: Option<u32>,
    /// 1 to 500, default 50.
    pub per_page: Option<u32>,
}

/// An install's invocations, newest first; the install must be visible to the caller.
pub async fn list(
    market: &Market,
    caller: &Caller,
    install: &str,
    query: &InvocationQuery,
) -> Result<Page<InvocationRecord>, MarketError> {
    installs::get(market, caller, install).await?;
    let per_page = query.per_page.unwrap_or(50).clamp(1, 500);
    let page = query.page.unwrap_or(1).max(1);
    let filter = "WHERE install_id = $1 AND ($2 IS NULL OR outcome = $2)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM invocations {filter}"))
        .bind(install)
        .bind(query.outcome.as_deref())
        .fetch_one(&market.db.pool)
        .await?;
    let rows = sqlx::query(&format!(
        "SELECT * FROM invocations {filter} ORDER BY started_at DESC, id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(install)
    .bind(query.outcome.as_deref())
    .bind(i64::from(per_page))
    .bind(i64::from(page - 1) * i64::from(per_page))
    .fetch_all(&market.db.pool)
    .await?;
    let items = rows
        .iter()
        .map(|row| {
            let usage: String = row.try_get("usage")?;
            Ok(InvocationRecord {
                id: row.try_get("id")?,
                tenant: row.try_get("tenant_id")?,
                install: row.try_get("install_id")?,
                plugin: row.try_get("plugin_id")?,
                version: row.try_get("version")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                started_at: row.try_get("started_at")?,
                duration_us: row.try_get("duration_us")?,
                outcome: row.try_get("outcome")?,
                error: row.try_get("error_message")?,
                fuel_used: row.try_get("fuel_used")?,
                peak_memory_bytes: row.try_get("peak_memory_bytes")?,
                http_requests: row.try_get("http_requests")?,
                kv_writes: row.try_get("kv_writes")?,
                denials: row.try_get("denials")?,
                usage: serde_json::from_str(&usage).map_err(storage)?,
            })
        })
        .collect::<Result<Vec<_>, MarketError>>()?;
    Ok(Page::new(items, page, per_page, total))
}
