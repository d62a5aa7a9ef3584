//! Invocation records: every invocation's row (what billing and dashboards read), written
//! by one task that commits whatever has queued up in a single transaction (group commit).
//! Each invocation still waits for its own row to be durable before its caller gets an
//! answer; the batching only shares the commit (one fsync on SQLite) among the invocations
//! that finished meanwhile, instead of making every writer wait for the lock in turn. On
//! SQLite a batch is one script (begin, insert, usage, commit) sent to the connection's
//! thread at once: one hand-off per batch rather than one per statement. The same transaction
//! adds the batch's usage to its install's hours ([`usage_hours`]), which billing reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nexus_host::capability::kv::KvError;
use nexus_host::{LogLine, StagedKv};
use nexus_registry::db::Backend;
use nexus_registry::{Db, ErrorCode};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::Caller;
use crate::error::{CursorPage, MarketError, storage};
use crate::installs;
use crate::market::Market;

pub mod usage_hours;

/// Rows written in one transaction at most.
const MAX_BATCH: usize = 512;
/// Rows waiting for the writer before appenders wait for room.
const QUEUE: usize = 4096;
/// While invocations are still running towards their rows, the writer lets the tasks that
/// can run go first, at most this many times, before it commits what has queued: rows that
/// are microseconds away then share the commit instead of waiting for the next one. A turn
/// costs next to nothing when nothing else is runnable, and none is taken when nothing runs.
const GATHER_TURNS: usize = 4;
/// The writer keeps its connection from one batch to the next for at most this long, then
/// gives it back to the pool (whose queue is fair) and takes it again: taking a pooled
/// connection and giving it back cost a round trip each (the pool checks it both ways), and
/// on SQLite every other write waits for this one connection, at most this long for it.
const HOLD_AT_MOST: Duration = Duration::from_millis(10);

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
/// the writer gathers before it commits (see [`GATHER_TURNS`]).
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
        tokio::spawn(write_batches(db, receiver, coming.clone()));
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

async fn write_batches(db: Db, mut receiver: mpsc::Receiver<Pending>, coming: Arc<AtomicUsize>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut held: Option<(PoolConnection<sqlx::Any>, Instant)> = None;
    loop {
        let received = match held {
            Some((_, since)) => {
                // Kept for the next batch until HOLD_AT_MOST, or until another write transaction
                // wants the writer (`Db::write_tx` tells), whichever comes first.
                let until = since + HOLD_AT_MOST;
                tokio::select! {
                    biased;
                    received = tokio::time::timeout_at(until.into(), receiver.recv_many(&mut batch, MAX_BATCH)) => {
                        match received {
                            Ok(received) => received,
                            Err(_) => {
                                held = None;
                                continue;
                            }
                        }
                    }
                    () = db.writer_wanted().notified() => {
                        held = None;
                        continue;
                    }
                }
            }
            None => receiver.recv_many(&mut batch, MAX_BATCH).await,
        };
        if received == 0 {
            return;
        }
        for _ in 0..GATHER_TURNS {
            if coming.load(Ordering::Acquire) == 0 || batch.len() >= MAX_BATCH {
                break;
            }
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH
                && let Ok(pending) = receiver.try_recv()
            {
                batch.push(pending);
            }
        }
        let (records, waiting): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        tracing::debug!(rows = records.len(), "invocation records to commit");
        if held.as_ref().is_some_and(|(_, since)| since.elapsed() >= HOLD_AT_MOST) {
            held = None;
        }
        let written = async {
            let connection = match &mut held {
                Some((connection, _)) => connection,
                None => &mut held.insert((db.writer().acquire().await?, Instant::now())).0,
            };
            insert_batch(connection, db.backend, &records).await
        }
        .await;
        let results = written.map_err(|error| {
            // A connection that failed is not trusted again: the next batch takes another.
            held = None;
            tracing::error!(%error, rows = records.len(), "invocation records not written");
            error.to_string()
        });
        for (index, done) in waiting.into_iter().enumerate() {
            let result = match &results {
                Ok(written) => Ok(written[index].clone()),
                Err(error) => Err(error.clone()),
            };
            // An appender that gave up (its request was dropped) no longer listens.
            let _ = done.send(result);
        }
    }
}

async fn insert_batch(
    connection: &mut PoolConnection<sqlx::Any>,
    backend: Backend,
    records: &[InvocationRecord],
) -> Result<Vec<Written>, sqlx::Error> {
    if backend == Backend::Sqlite {
        let mut written = Vec::with_capacity(records.len());
        for part in within_parameters(records) {
            written.extend(insert_script(connection, part).await?);
        }
        return Ok(written);
    }
    let mut tx = sqlx::Connection::begin(&mut **connection).await?;
    let mut written = Vec::with_capacity(records.len());
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        written.extend(insert_rows(&mut tx, chunk).await?);
    }
    tx.commit().await?;
    Ok(written)
}

/// Rows per multi-row `INSERT`: 21 parameters a row stays far below SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters per statement.
const ROWS_PER_STATEMENT: usize = 256;
/// Parameters of one SQLite script at most: SQLite's largest parameter number (its default
/// `SQLITE_MAX_VARIABLE_NUMBER`); a script numbers its parameters across its statements.
const SQLITE_MAX_PARAMETERS: usize = 32_766;

/// `records` cut into parts whose scripts stay within [`SQLITE_MAX_PARAMETERS`] (a row's
/// columns and two per usage meter); a single row always fits, as the host caps its meters.
fn within_parameters(records: &[InvocationRecord]) -> Vec<&[InvocationRecord]> {
    let mut parts = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (index, record) in records.iter().enumerate() {
        let needs = ROW_PARAMETERS + 2 * record.usage.len();
        if used + needs > SQLITE_MAX_PARAMETERS && index > start {
            parts.push(&records[start..index]);
            (start, used) = (index, 0);
        }
        used += needs;
    }
    parts.push(&records[start..]);
    parts
}

/// SQLite: `records` and their usage in one transaction sent as one script, so the
/// connection's thread runs it without handing back between statements. Rows without usage
/// (most) are one `INSERT` in SQLite's autocommit: the statement is the transaction, so
/// SQLite keeps no statement journal (a temporary file per batch otherwise). Usage rows are
/// kept only for rows that were inserted (ids are random, so an id in `invocations` is a row
/// this script inserted), and so are their hours (summed by the script itself, as which rows
/// are refused is known only as it runs); refused rows come back as [`Written::Duplicate`].
async fn insert_script(
    connection: &mut PoolConnection<sqlx::Any>,
    records: &[InvocationRecord],
) -> Result<Vec<Written>, sqlx::Error> {
    let billable = billable_usage(records, |_| true)?;
    let script = sqlite_script(records.len(), &billable);
    let mut query = sqlx::query_scalar::<_, String>(&script);
    for record in records {
        query = bind_row(query, record)?;
    }
    for (_, meter, units) in &billable {
        query = query.bind(*meter).bind(*units);
    }
    let inserted: std::collections::HashSet<String> = match query.fetch_all(&mut **connection).await {
        Ok(ids) => ids.into_iter().collect(),
        Err(error) => {
            // The script stopped inside its transaction (or before it began): end it, and if
            // that fails too, do not give the connection back to the pool in that state.
            if sqlx::query("ROLLBACK").execute(&mut **connection).await.is_err() {
                connection.close_on_drop();
            }
            return Err(error);
        }
    };
    let mut written = Vec::with_capacity(records.len());
    for record in records {
        if inserted.contains(&record.id) {
            written.push(Written::Inserted);
        } else {
            written.push(Written::Duplicate(applied_id(connection, record).await?));
        }
    }
    Ok(written)
}

/// The script of [`insert_script`] for `rows` rows bound by [`bind_row`] (row `r`'s id is
/// parameter `21 r + 1`) followed by the meter and units of each `billable` entry.
fn sqlite_script(rows: usize, billable: &[(usize, &str, i64)]) -> String {
    if rows <= ROWS_PER_STATEMENT && billable.is_empty() {
        // Positional parameters: SQLite looks a numbered one up by a scan of the statement's
        // names, which for a few hundred parameters was a visible share of the writer's time.
        let row = format!("({})", vec!["?"; ROW_PARAMETERS].join(", "));
        return format!(
            "INSERT INTO invocations ({ROW_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
            vec![row; rows].join(", ")
        );
    }
    let inserts: Vec<String> = (0..rows)
        .collect::<Vec<_>>()
        .chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            let values: Vec<String> = chunk.iter().map(|&row| row_slots(row)).collect();
            format!(
                "INSERT INTO invocations ({ROW_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id;\n",
                values.join(", ")
            )
        })
        .collect();
    let mut script = String::from("BEGIN IMMEDIATE;\n") + &inserts.concat();
    let first = rows * ROW_PARAMETERS;
    let entries: Vec<(usize, &(usize, &str, i64))> = billable.iter().enumerate().collect();
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(n, (row, _, _))| {
                format!("(${}, ${}, ${})", row * ROW_PARAMETERS + 1, first + 2 * n + 1, first + 2 * n + 2)
            })
            .collect();
        script += &format!(
            "INSERT INTO invocation_usage (invocation_id, meter, units) SELECT u.column1, u.column2, u.column3 \
             FROM (VALUES {}) AS u WHERE EXISTS (SELECT 1 FROM invocations i WHERE i.id = u.column1);\n",
            values.join(", ")
        );
    }
    if !billable.is_empty() {
        let entries: Vec<(usize, usize, usize)> = billable
            .iter()
            .enumerate()
            .map(|(n, (row, _, _))| (row * ROW_PARAMETERS + 1, first + 2 * n + 1, first + 2 * n + 2))
            .collect();
        script += &usage_hours::script_statement(&entries);
    }
    script + "COMMIT;"
}

/// `(first + 1, ..., first + 21)` as `$n` placeholders, for row `row`.
fn row_slots(row: usize) -> String {
    let first = row * ROW_PARAMETERS;
    let slots: Vec<String> = (1..=ROW_PARAMETERS).map(|n| format!("${}", first + n)).collect();
    format!("({})", slots.join(", "))
}

/// The usage of the applied (`ok`) records among `records` that `keep` accepts, as
/// (record index, meter, units). Billable units are stored as reported or not at all, never
/// clamped.
fn billable_usage(
    records: &[InvocationRecord],
    keep: impl Fn(&InvocationRecord) -> bool,
) -> Result<Vec<(usize, &str, i64)>, sqlx::Error> {
    records
        .iter()
        .enumerate()
        .filter(|(_, record)| record.outcome == "ok" && keep(record))
        .flat_map(|(row, record)| record.usage.iter().map(move |(meter, units)| (row, meter, *units)))
        .map(|(row, meter, units)| {
            Ok((row, meter.as_str(), i64::try_from(units).map_err(|e| sqlx::Error::Encode(Box::new(e)))?))
        })
        .collect()
}

/// The columns of an invocation row, in the order [`bind_row`] binds them.
const ROW_COLUMNS: &str = "id, tenant_id, install_id, plugin_id, version, event_id, event_type, started_at, \
                           duration_us, outcome, error_message, fuel_used, peak_memory_bytes, http_requests, \
                           kv_writes, denials, usage, logs, stderr, outcome_data, actions";
const ROW_PARAMETERS: usize = 21;

/// Inserts `records` in one statement (their usage in another, and its hours, summed per key
/// here first, in a third): a round trip to the database per batch, not per row, which is
/// what bounded events per second. Rows refused by the applied-once index come back as
/// [`Written::Duplicate`] with the applied row's id, and none of their usage is kept.
async fn insert_rows(tx: &mut sqlx::AnyConnection, records: &[InvocationRecord]) -> Result<Vec<Written>, sqlx::Error> {
    let values: Vec<String> = (0..records.len()).map(row_slots).collect();
    let statement = format!(
        "INSERT INTO invocations ({ROW_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING RETURNING id",
        values.join(", ")
    );
    let mut query = sqlx::query_scalar::<_, String>(&statement);
    for record in records {
        query = bind_row(query, record)?;
    }
    let inserted: std::collections::HashSet<String> = query.fetch_all(&mut *tx).await?.into_iter().collect();
    let mut written = Vec::with_capacity(records.len());
    for record in records {
        if inserted.contains(&record.id) {
            written.push(Written::Inserted);
        } else {
            written.push(Written::Duplicate(applied_id(tx, record).await?));
        }
    }
    let billable = billable_usage(records, |record| inserted.contains(&record.id))?;
    for chunk in billable.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> =
            (0..chunk.len()).map(|n| format!("(${}, ${}, ${})", 3 * n + 1, 3 * n + 2, 3 * n + 3)).collect();
        let statement = nexus_registry::db::backend_of(tx).positional(format!(
            "INSERT INTO invocation_usage (invocation_id, meter, units) VALUES {}",
            values.join(", ")
        ));
        let mut query = sqlx::query(&statement);
        for (row, meter, units) in chunk {
            query = query.bind(records[*row].id.as_str()).bind(*meter).bind(*units);
        }
        query.execute(&mut *tx).await?;
    }
    let mut hours = usage_hours::Hours::new();
    for (row, meter, units) in &billable {
        let record = &records[*row];
        let key = (record.install.as_str(), *meter, usage_hours::hour_of(record.started_at));
        let sum = hours.entry(key).or_default();
        *sum = sum.checked_add(*units).ok_or_else(|| sqlx::Error::Protocol("usage units overflow".into()))?;
    }
    usage_hours::add(tx, &hours).await?;
    Ok(written)
}

type ScalarQuery<'q> = sqlx::query::QueryScalar<'q, sqlx::Any, String, sqlx::any::AnyArguments<'q>>;

/// Binds one row's [`ROW_COLUMNS`].
fn bind_row<'q>(query: ScalarQuery<'q>, record: &'q InvocationRecord) -> Result<ScalarQuery<'q>, sqlx::Error> {
    // A map of strings to integers always serializes; the error arm only keeps billable
    // data from being written as anything but what it is.
    let usage = serde_json::to_string(&record.usage).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let logs = serde_json::to_string(&record.logs).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let actions = serde_json::to_string(&record.actions).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok(query
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
        .bind(usage)
        .bind(logs)
        .bind(&record.stderr)
        .bind(record.data.as_deref())
        .bind(actions))
}

/// The id of the row that applied `record`'s event to its install (the applied-once index
/// refused `record`; ids are random and unique, so nothing else can).
async fn applied_id(tx: &mut sqlx::AnyConnection, record: &InvocationRecord) -> Result<String, sqlx::Error> {
    let applied: Option<String> =
        sqlx::query_scalar("SELECT id FROM invocations WHERE install_id = $1 AND event_id = $2 AND outcome = 'ok'")
            .bind(&record.install)
            .bind(&record.event_id)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(applied.unwrap_or_default())
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
    let mut written = insert_rows(tx, std::slice::from_ref(record)).await?;
    written.pop().ok_or_else(|| sqlx::Error::Protocol("no result for the inserted row".into()))
}

/// The invocations that applied event `event_id` for installs of `tenant`, by install.
pub async fn applied(
    market: &Market,
    tenant: &str,
    event_id: &str,
) -> Result<BTreeMap<String, InvocationRecord>, MarketError> {
    let rows = sqlx::query("SELECT * FROM invocations WHERE tenant_id = $1 AND event_id = $2 AND outcome = 'ok'")
        .bind(tenant)
        .bind(event_id)
        .fetch_all(&market.db.pool)
        .await?;
    rows.iter().map(|row| record_of(row).map(|r| (r.install.clone(), r))).collect()
}

/// The applied invocations of each `(install, event id)` pair that has one, in one read.
pub async fn applied_to(
    market: &Market,
    pairs: &[(&str, &str)],
) -> Result<HashMap<(String, String), InvocationRecord>, MarketError> {
    let mut found = HashMap::new();
    for chunk in pairs.chunks(250) {
        let sql = market.db.backend.positional(format!(
            "SELECT * FROM invocations WHERE outcome = 'ok' AND install_id IN ({}) AND event_id IN ({})",
            nexus_registry::db::placeholders(1, chunk.len()),
            nexus_registry::db::placeholders(chunk.len() + 1, chunk.len())
        ));
        let mut query = sqlx::query(&sql);
        for (install, _) in chunk {
            query = query.bind(*install);
        }
        for (_, event) in chunk {
            query = query.bind(*event);
        }
        for row in query.fetch_all(&market.db.pool).await? {
            let record = record_of(&row)?;
            let key = (record.install.clone(), record.event_id.clone());
            if chunk.iter().any(|(install, event)| *install == key.0 && *event == key.1) {
                found.insert(key, record);
            }
        }
    }
    Ok(found)
}

/// One invocation by id.
pub async fn get(market: &Market, id: &str) -> Result<InvocationRecord, MarketError> {
    let row = sqlx::query("SELECT * FROM invocations WHERE id = $1")
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("invocation {id}")))?;
    record_of(&row)
}

/// One invocation of `install`, which must be visible to the caller.
pub async fn of_install(
    market: &Market,
    caller: &Caller,
    install: &str,
    invocation: &str,
) -> Result<InvocationRecord, MarketError> {
    installs::get(market, caller, install).await?;
    let row = sqlx::query("SELECT * FROM invocations WHERE id = $1 AND install_id = $2")
        .bind(invocation)
        .bind(install)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("invocation {invocation} of install {install}")))?;
    record_of(&row)
}

/// Filters for reading invocations.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InvocationQuery {
    pub outcome: Option<String>,
    /// Continue after this invocation (a page's `next_after`); newest first.
    pub after: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// An install's invocations, newest first; the install must be visible to the caller.
pub async fn list(
    market: &Market,
    caller: &Caller,
    install: &str,
    query: &InvocationQuery,
) -> Result<CursorPage<InvocationRecord>, MarketError> {
    installs::get(market, caller, install).await?;
    let per_page = crate::error::per_page(query.per_page, 50)?;
    MarketError::check_text(ErrorCode::InvalidQuery, "outcome", query.outcome.as_deref().unwrap_or(""), 64)?;
    // The cursor is the last row seen: everything strictly older than it, in the order shown.
    let (before_at, before_id) = match &query.after {
        None => (i64::MAX, String::new()),
        Some(after) => {
            let at: Option<i64> =
                sqlx::query_scalar("SELECT started_at FROM invocations WHERE id = $1 AND install_id = $2")
                    .bind(after)
                    .bind(install)
                    .fetch_optional(&market.db.pool)
                    .await?;
            let at = at.ok_or_else(|| {
                MarketError::invalid(
                    ErrorCode::InvalidQuery,
                    format!("`after` {after} is not an invocation of this install"),
                )
            })?;
            (at, after.clone())
        }
    };
    let filter = "WHERE install_id = $1 AND ($2 IS NULL OR outcome = $2)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM invocations {filter}"))
        .bind(install)
        .bind(query.outcome.as_deref())
        .fetch_one(&market.db.pool)
        .await?;
    let rows = sqlx::query(&format!(
        "SELECT * FROM invocations {filter} AND (started_at < $3 OR (started_at = $3 AND id < $4)) \
         ORDER BY started_at DESC, id DESC LIMIT $5"
    ))
    .bind(install)
    .bind(query.outcome.as_deref())
    .bind(before_at)
    .bind(&before_id)
    .bind(i64::from(per_page) + 1)
    .fetch_all(&market.db.pool)
    .await?;
    let items = rows.iter().map(record_of).collect::<Result<Vec<_>, MarketError>>()?;
    Ok(CursorPage::new(items, per_page, total, |record| record.id.clone()))
}

fn record_of(row: &sqlx::any::AnyRow) -> Result<InvocationRecord, MarketError> {
    let usage: String = row.try_get("usage")?;
    let logs: String = row.try_get("logs")?;
    let actions: String = row.try_get("actions")?;
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
        logs: serde_json::from_str(&logs).map_err(storage)?,
        stderr: row.try_get("stderr")?,
        data: row.try_get("outcome_data")?,
        actions: serde_json::from_str(&actions).map_err(storage)?,
    })
}

/// How one version of a plugin is doing, over every install: figures only, never a
/// tenant's payload, data or secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VersionHealth {
    pub version: String,
    pub invocations: i64,
    pub ok: i64,
    /// Failed invocations by outcome code (`plugin_error`, `panicked`, `limit_exceeded`, ...).
    pub errors: BTreeMap<String, i64>,
    /// Failed / all, in basis points (10000 = every one failed).
    pub error_rate_bp: i64,
    pub mean_duration_us: i64,
    /// Installs that ran this version at least once.
    pub installs: i64,
    pub last_at: Option<i64>,
}

/// How many times each of a publisher's plugins ran since `since`, in one query: plugins
/// that did not run are absent.
pub async fn invocations_by_plugin(
    market: &Market,
    publisher: &str,
    since: i64,
) -> Result<BTreeMap<String, i64>, MarketError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT i.plugin_id, COUNT(*) FROM invocations i JOIN listings l ON l.plugin_id = i.plugin_id \
         WHERE l.publisher = $1 AND i.started_at >= $2 GROUP BY i.plugin_id",
    )
    .bind(publisher)
    .bind(since)
    .fetch_all(&market.db.pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// [`VersionHealth`] of every version of `plugin` with invocations since `since` (ms),
/// newest version first.
pub async fn version_health(market: &Market, plugin: &str, since: i64) -> Result<Vec<VersionHealth>, MarketError> {
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT version, outcome, COUNT(*), CAST(COALESCE(SUM(duration_us), 0) AS BIGINT), MAX(started_at) \
         FROM invocations WHERE plugin_id = $1 AND started_at >= $2 GROUP BY version, outcome",
    )
    .bind(plugin)
    .bind(since)
    .fetch_all(&market.db.pool)
    .await?;
    let installs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT version, COUNT(DISTINCT install_id) FROM invocations WHERE plugin_id = $1 AND started_at >= $2 \
         GROUP BY version",
    )
    .bind(plugin)
    .bind(since)
    .fetch_all(&market.db.pool)
    .await?;
    let mut by_version: BTreeMap<String, (VersionHealth, i64)> = BTreeMap::new();
    for (version, outcome, count, duration_sum, last_at) in rows {
        let (health, durations) = by_version.entry(version.clone()).or_insert_with(|| {
            let health = VersionHealth {
                version,
                invocations: 0,
                ok: 0,
                errors: BTreeMap::new(),
                error_rate_bp: 0,
                mean_duration_us: 0,
                installs: 0,
                last_at: None,
            };
            (health, 0)
        });
        health.invocations += count;
        *durations += duration_sum;
        health.last_at = health.last_at.max(Some(last_at));
        if outcome == "ok" {
            health.ok += count;
        } else {
            *health.errors.entry(outcome).or_default() += count;
        }
    }
    for (version, count) in installs {
        if let Some((health, _)) = by_version.get_mut(&version) {
            health.installs = count;
        }
    }
    let mut versions: Vec<VersionHealth> = by_version
        .into_values()
        .map(|(mut health, durations)| {
            let failed = health.invocations - health.ok;
            health.error_rate_bp = (failed * 10_000 + health.invocations / 2) / health.invocations.max(1);
            health.mean_duration_us = durations / health.invocations.max(1);
            health
        })
        .collect();
    versions.sort_by(|a, b| {
        let parsed = |v: &str| semver::Version::parse(v).ok();
        parsed(&b.version).cmp(&parsed(&a.version)).then_with(|| b.version.cmp(&a.version))
    });
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(usage: &[(&str, u64)]) -> InvocationRecord {
        InvocationRecord {
            id: "inv_1".into(),
            tenant: "acme".into(),
            install: "ins_1".into(),
            plugin: "acme/echo".into(),
            version: "1.0.0".into(),
            event_id: "evt_1".into(),
            event_type: "ping".into(),
            started_at: 0,
            duration_us: 0,
            outcome: "ok".into(),
            error: None,
            fuel_used: 0,
            peak_memory_bytes: 0,
            http_requests: 0,
            kv_writes: 0,
            denials: 0,
            usage: usage.iter().map(|(meter, units)| (meter.to_string(), *units)).collect(),
            logs: Vec::new(),
            stderr: String::new(),
            data: None,
            actions: Vec::new(),
        }
    }

    #[test]
    fn a_script_numbers_rows_then_usage_and_keeps_usage_of_inserted_rows_only() {
        let records = [record(&[]), record(&[("calls", 2), ("bytes", 7)])];
        let billable = billable_usage(&records, |_| true).unwrap();
        assert_eq!(billable, vec![(1, "bytes", 7), (1, "calls", 2)]);
        let script = sqlite_script(records.len(), &billable);
        assert!(script.starts_with("BEGIN IMMEDIATE;\nINSERT INTO invocations ("), "{script}");
        assert!(
            script.contains("($1, $2,") && script.contains("$42) ON CONFLICT DO NOTHING RETURNING id;"),
            "{script}"
        );
        assert!(script.contains("FROM (VALUES ($22, $43, $44), ($22, $45, $46)) AS u WHERE EXISTS"), "{script}");
        // Their hours, from the same parameters, for the invocations the script kept.
        assert!(
            script.contains(
                "INSERT INTO usage_hours (install_id, meter, hour_start, units) SELECT i.install_id, u.column2, "
            ) && script
                .contains("FROM (VALUES ($22, $43, $44), ($22, $45, $46)) AS u JOIN invocations i ON i.id = u.column1"),
            "{script}"
        );
        assert!(script.ends_with(";\nCOMMIT;"), "{script}");
        // Without usage, one statement in autocommit, its parameters in order.
        let script = sqlite_script(3, &[]);
        assert!(
            script.starts_with("INSERT INTO invocations (")
                && script.ends_with("?) ON CONFLICT DO NOTHING RETURNING id"),
            "{script}"
        );
        assert_eq!((script.matches('?').count(), script.matches('$').count(), script.matches(';').count()), (63, 0, 0));
        let script = sqlite_script(ROWS_PER_STATEMENT + 1, &[]);
        assert!(script.starts_with("BEGIN IMMEDIATE;") && script.ends_with("COMMIT;"), "{script}");
        assert_eq!(script.matches("INSERT INTO invocations").count(), 2, "{script}");
        let failed = InvocationRecord { outcome: "trapped".into(), ..record(&[("calls", 1)]) };
        assert_eq!(billable_usage(&[failed], |_| true).unwrap(), Vec::new());
        assert!(billable_usage(&[record(&[("calls", u64::MAX)])], |_| true).is_err());
    }

    #[test]
    fn scripts_stay_within_sqlites_parameters() {
        let small: Vec<InvocationRecord> = (0..MAX_BATCH).map(|_| record(&[("calls", 1)])).collect();
        assert_eq!(within_parameters(&small).iter().map(|part| part.len()).collect::<Vec<_>>(), vec![MAX_BATCH]);
        let meters: Vec<(String, u64)> = (0..4000).map(|n| (format!("m{n}"), 1)).collect();
        let meters: Vec<(&str, u64)> = meters.iter().map(|(m, u)| (m.as_str(), *u)).collect();
        let large: Vec<InvocationRecord> = (0..9).map(|_| record(&meters)).collect();
        let parts = within_parameters(&large);
        assert_eq!(parts.iter().map(|part| part.len()).collect::<Vec<_>>(), vec![4, 4, 1]);
        for part in parts {
            let used: usize = part.iter().map(|r| ROW_PARAMETERS + 2 * r.usage.len()).sum();
            assert!(used <= SQLITE_MAX_PARAMETERS, "{used}");
        }
    }
}

/// How one install has been doing over a window: what its tenant's install page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InstallHealth {
    /// The window's start (milliseconds since the epoch); it ends now.
    pub since: i64,
    pub runs: i64,
    pub failed: i64,
    /// Failed / runs, in basis points (10000 = every one failed); 0 without runs.
    pub error_rate_bp: i64,
    /// The newest failure in the window: when, its outcome and its message.
    pub last_error: Option<LastError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LastError {
    pub at: i64,
    pub outcome: String,
    pub message: Option<String>,
}

/// An install's runs, failures and newest failure since `since`. `install` is one the
/// caller read through [`installs::get`] (which checked it may see it), so it is not read
/// again per window. Two index range reads over `(install_id, started_at)`.
pub async fn install_health(
    market: &Market,
    install: &installs::Install,
    since: i64,
) -> Result<InstallHealth, MarketError> {
    let install = install.id.as_str();
    let mut conn = market.db.pool.acquire().await?;
    let counts = sqlx::query(
        "SELECT COUNT(*) AS runs, COALESCE(SUM(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END), 0) AS failed \
         FROM invocations WHERE install_id = $1 AND started_at >= $2",
    )
    .bind(install)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    let (runs, failed): (i64, i64) = (counts.try_get("runs")?, counts.try_get("failed")?);
    let last_error = sqlx::query(
        "SELECT started_at, outcome, error_message FROM invocations \
         WHERE install_id = $1 AND started_at >= $2 AND outcome <> 'ok' ORDER BY started_at DESC LIMIT 1",
    )
    .bind(install)
    .bind(since)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| -> Result<LastError, MarketError> {
        Ok(LastError {
            at: row.try_get("started_at")?,
            outcome: row.try_get("outcome")?,
            message: row.try_get("error_message")?,
        })
    })
    .transpose()?;
    let error_rate_bp = if runs == 0 { 0 } else { failed * 10_000 / runs };
    Ok(InstallHealth { since, runs, failed, error_rate_bp, last_error })
}
