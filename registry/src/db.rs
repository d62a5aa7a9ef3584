//! The registry's database: SQLite by default (one file in the data folder, WAL), PostgreSQL
//! when given a `postgres://` URL so several nodes share one registry. Both run the same
//! queries through sqlx's `Any` driver; only the migrations differ per backend.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::error::RegistryError;

/// Migrations in order; each runs once, in its own transaction, recorded in
/// `registry_migrations`. Never edit one that has shipped: add the next.
const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_registry.sql"),
    include_str!("../migrations/common/0002_token_origin.sql"),
];
const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_registry.sql"),
    include_str!("../migrations/common/0002_token_origin.sql"),
];

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

/// How many connections a [`Db`] opens and how long a request waits for one.
#[derive(Debug, Clone, Copy)]
pub struct DbLimits {
    /// PostgreSQL: connections per node for reads and writes; SQLite: reading connections
    /// (the writer is always one). `None`: the backend's default (16 on PostgreSQL, 8
    /// readers on SQLite).
    pub connections: Option<u32>,
    /// How long a statement waits for a free connection before failing with a storage
    /// error (`storage_failure`, never a hang).
    pub acquire_timeout: Duration,
}

/// The most connections `NEXUS_DB_CONNECTIONS` may ask for: PostgreSQL's default
/// `max_connections` is 100, and each one is a file the process holds open.
pub const MAX_CONNECTIONS: u32 = 1000;

impl Default for DbLimits {
    fn default() -> Self {
        Self { connections: None, acquire_timeout: Duration::from_secs(30) }
    }
}

impl DbLimits {
    /// The defaults, overridden by `NEXUS_DB_CONNECTIONS` (1 to [`MAX_CONNECTIONS`]) and
    /// `NEXUS_DB_ACQUIRE_TIMEOUT_MS`; a value that does not parse is an error naming it.
    pub fn from_env() -> Result<Self, RegistryError> {
        let mut limits = Self::default();
        if let Some(count) = env_number("NEXUS_DB_CONNECTIONS")? {
            let within = u32::try_from(count).ok().filter(|c| (1..=MAX_CONNECTIONS).contains(c));
            limits.connections = Some(within.ok_or_else(|| {
                RegistryError::Storage(format!(
                    "NEXUS_DB_CONNECTIONS={count}: expected a count from 1 to {MAX_CONNECTIONS}"
                ))
            })?);
        }
        if let Some(ms) = env_number("NEXUS_DB_ACQUIRE_TIMEOUT_MS")? {
            limits.acquire_timeout = Duration::from_millis(ms);
        }
        Ok(limits)
    }
}

fn env_number(name: &str) -> Result<Option<u64>, RegistryError> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| RegistryError::Storage(format!("{name}={value}: expected a whole number"))),
        Err(_) => Ok(None),
    }
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

/// Reading connections to a SQLite file: WAL readers never wait for the writer.
const SQLITE_READERS: u32 = 8;
/// Connections to PostgreSQL per node (reads and writes).
const POSTGRES_CONNECTIONS: u32 = 16;
/// Connections to PostgreSQL per node that hold advisory locks ([`Db::locks`]).
const POSTGRES_LOCK_CONNECTIONS: u32 = 6;

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

    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`) and migrates, with
    /// the [`DbLimits`] of the environment.
    pub async fn connect(url: &str) -> Result<Self, RegistryError> {
        Self::connect_with(url, DbLimits::from_env()?).await
    }

    /// [`Db::connect`] with these limits.
    pub async fn connect_with(url: &str, limits: DbLimits) -> Result<Self, RegistryError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(RegistryError::Storage(format!(
                "unsupported database URL `{url}`: expected sqlite://<file> or postgres://..."
            )));
        };
        let options = AnyConnectOptions::from_str(url).map_err(storage)?.disable_statement_logging();
        let db = match backend {
            Backend::Sqlite => {
                let writer = sqlite_pool(options.clone(), 1, false, limits).await?;
                // The writer first: it creates the file and switches it to WAL before any
                // read-only connection opens it.
                let readers = limits.connections.unwrap_or(SQLITE_READERS);
                let pool = sqlite_pool(options, readers, true, limits).await?;
                let wal = sqlite_file(url).map(|file| Arc::new(WalSync::new(file)));
                Self { pool, writer, locks: None, wal, backend, writer_wanted: Arc::default() }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(limits.connections.unwrap_or(POSTGRES_CONNECTIONS))
                    .acquire_timeout(limits.acquire_timeout)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // Statements are prepared once per connection; after five runs
                            // PostgreSQL may switch to a generic plan that guesses range
                            // sizes, which on skewed data (a month of a million ledger
                            // transactions) picks a plan 20 times slower. Plan each run with
                            // its values.
                            connection.execute("SET plan_cache_mode = force_custom_plan").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await
                    .map_err(storage)?;
                let locks = AnyPoolOptions::new()
                    .max_connections(POSTGRES_LOCK_CONNECTIONS)
                    .min_connections(0)
                    .acquire_timeout(limits.acquire_timeout)
                    .connect_lazy_with(options);
                Self {
                    writer: pool.clone(),
                    pool,
                    locks: Some(locks),
                    wal: None,
                    backend,
                    writer_wanted: Arc::default(),
                }
            }
        };
        db.migrate().await?;
        Ok(db)
    }

    /// A SQLite database in `folder/registry.db`, created if missing.
    pub async fn sqlite_in(folder: &Path) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(folder).map_err(|e| RegistryError::Storage(format!("{}: {e}", folder.display())))?;
        Self::connect(&format!("sqlite://{}?mode=rwc", folder.join("registry.db").display())).await
    }

    async fn migrate(&self) -> Result<(), RegistryError> {
        self.apply_migrations("registry_migrations", SQLITE_MIGRATIONS, POSTGRES_MIGRATIONS).await
    }

    /// Runs the migrations of one component (the registry, the marketplace) that `table`
    /// has not recorded yet, in one transaction. Never edit a migration that has shipped:
    /// add the next one. Each applied migration's sha256 is kept (in `<table>_checksums`),
    /// and a database whose applied migrations differ from this binary's (an edited
    /// migration, or a database migrated by a newer binary) is refused before anything runs.
    pub async fn apply_migrations(&self, table: &str, sqlite: &[&str], postgres: &[&str]) -> Result<(), RegistryError> {
        let migrations = match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        let mut tx = self.writer.begin().await.map_err(storage)?;
        if self.backend == Backend::Postgres {
            // Several nodes may start at once on a fresh database: before anything is
            // touched (even the bookkeeping table, whose `CREATE TABLE IF NOT EXISTS` is not
            // safe under concurrency), one takes this lock and migrates, the others wait for
            // it and find the work done. Released when the transaction ends.
            tx.execute(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})").as_str()).await.map_err(storage)?;
        }
        for bookkeeping in [
            format!("CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)"),
            format!("CREATE TABLE IF NOT EXISTS {table}_checksums (version BIGINT PRIMARY KEY, sha256 TEXT NOT NULL)"),
        ] {
            tx.execute(bookkeeping.as_str()).await.map_err(storage)?;
        }
        let applied: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut *tx).await.map_err(storage)?;
        let applied = usize::try_from(applied).unwrap_or(0);
        if applied > migrations.len() {
            return Err(RegistryError::Storage(format!(
                "the database has {applied} {table} applied but this nexus knows {}: it was migrated by a newer \
                 version; run that version (or a newer one)",
                migrations.len()
            )));
        }
        check_applied(&mut tx, table, &migrations[..applied]).await?;
        for (index, migration) in migrations.iter().enumerate().skip(applied) {
            sqlx::raw_sql(migration).execute(&mut *tx).await.map_err(storage)?;
            let version = index as i64 + 1;
            sqlx::query(&format!("INSERT INTO {table} (version, applied_at) VALUES ($1, $2)"))
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
            sqlx::query(&format!("INSERT INTO {table}_checksums (version, sha256) VALUES ($1, $2)"))
                .bind(version)
                .bind(checksum(migration))
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
        }
        tx.commit().await.map_err(storage)
    }
}

fn checksum(migration: &str) -> String {
    hex::encode(Sha256::digest(migration.as_bytes()))
}

/// Refuses applied migrations whose text has changed since; records the checksums of
/// those applied before checksums were kept, as they are now.
async fn check_applied(tx: &mut sqlx::AnyConnection, table: &str, applied: &[&str]) -> Result<(), RegistryError> {
    let kept: Vec<(i64, String)> = sqlx::query_as(&format!("SELECT version, sha256 FROM {table}_checksums"))
        .fetch_all(&mut *tx)
        .await
        .map_err(storage)?;
    let kept: std::collections::HashMap<i64, String> = kept.into_iter().collect();
    for (index, migration) in applied.iter().enumerate() {
        let version = index as i64 + 1;
        let shipped = checksum(migration);
        match kept.get(&version) {
            Some(stored) if *stored == shipped => {}
            Some(_) => {
                return Err(RegistryError::Storage(format!(
                    "{table} migration {version} was edited after this database applied it; restore it as \
                     shipped and put the change in a new migration"
                )));
            }
            None => {
                sqlx::query(&format!("INSERT INTO {table}_checksums (version, sha256) VALUES ($1, $2)"))
                    .bind(version)
                    .bind(shipped)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage)?;
            }
        }
    }
    Ok(())
}

/// A pool of `size` connections to a SQLite file; `read_only` ones refuse every write.
async fn sqlite_pool(
    options: AnyConnectOptions,
    size: u32,
    read_only: bool,
    limits: DbLimits,
) -> Result<AnyPool, RegistryError> {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(limits.acquire_timeout)
        .after_connect(move |connection, _| {
            Box::pin(async move {
                // WAL lets readers run beside the writer; foreign keys are off by default in
                // SQLite. The busy timeout is for other processes on the same file (a CLI
                // command given the server's data folder): the server's own writes never
                // meet the lock, they queue for the one writer.
                connection.execute("PRAGMA journal_mode = WAL").await?;
                connection.execute("PRAGMA foreign_keys = ON").await?;
                connection.execute("PRAGMA busy_timeout = 5000").await?;
                if read_only {
                    connection.execute("PRAGMA query_only = ON").await?;
                } else {
                    // Commits are made durable together by `Db::durable` (group commit).
                    connection.execute("PRAGMA synchronous = NORMAL").await?;
                    // The writer touches the indexes of every table a batch writes (ledger,
                    // rollups, charges, attempts): a page cache that holds them saves a read
                    // from the OS per random page. 64 MiB at most, grown only as used.
                    connection.execute("PRAGMA cache_size = -65536").await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(storage)
}

/// The database file of a `sqlite:` URL (`sqlite://path?mode=rwc`); `None` for an
/// in-memory database, which has nothing to make durable.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

/// The group fsync of a SQLite write-ahead log ([`Db::durable`]).
#[derive(Debug)]
struct WalSync {
    /// `<database>-wal`.
    log: PathBuf,
    /// Tickets handed to callers, in order: a caller's commits all came before its ticket.
    issued: AtomicU64,
    /// The highest ticket an fsync has covered; held while an fsync runs, so callers that
    /// arrive meanwhile wait for it and then for (at most) one more.
    synced: tokio::sync::Mutex<u64>,
    /// fsyncs made, for tests and figures.
    syncs: AtomicU64,
}

impl WalSync {
    fn new(database: PathBuf) -> Self {
        let mut log = database.into_os_string();
        log.push("-wal");
        Self {
            log: PathBuf::from(log),
            issued: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    async fn sync(&self) -> Result<(), sqlx::Error> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().await;
        if *synced >= ticket {
            return Ok(());
        }
        // Every ticket issued until now belongs to a commit that already happened.
        let covers = self.issued.load(Ordering::SeqCst);
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || sync_file(&log))
            .await
            .map_err(|joined| sqlx::Error::Io(std::io::Error::other(joined)))??;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        *synced = covers;
        Ok(())
    }
}

/// The last handle on a database (a CLI command that wrote and ends) makes its commits
/// durable on the way out; a blocking fsync here is the end of that database's use.
impl Drop for WalSync {
    fn drop(&mut self) {
        if let Err(error) = sync_file(&self.log) {
            tracing::warn!(%error, log = %self.log.display(), "syncing the write-ahead log on close");
        }
    }
}

/// fsync of a file by name (an fsync reaches the file's data whichever descriptor asks); a
/// log that does not exist has nothing unsynced (SQLite removes it only after a checkpoint).
fn sync_file(path: &Path) -> std::io::Result<()> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_data(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// The PostgreSQL advisory lock key migrations take (any constant that nothing else uses:
/// the bytes of "nexusmig").
const MIGRATION_LOCK: i64 = 0x6e65_7875_736d_6967;

/// This process's id: it names the process in what a process claims (a request's id, a
/// charge being collected), so that a claim whose process is gone can be recovered at once
/// by this process, or by any process on SQLite, where one server writes a file.
pub fn process_id() -> &'static str {
    static ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        crate::publishers::random_hex(6).unwrap_or_else(|_| format!("{}", std::process::id()))
    });
    &ID
}

/// `$first, …, $(first + n - 1)`: the placeholders of `n` values bound in order, for
/// statements that take a list (`IN (…)`, `VALUES (…)`).
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// The backend a connection talks to.
pub fn backend_of(conn: &sqlx::AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") { Backend::Sqlite } else { Backend::Postgres }
}

impl Backend {
    /// `sql` as this backend binds it fastest. A statement is written with numbered
    /// parameters (`$1`, `$2`, …), which both backends take; on SQLite the driver looks up
    /// the name of every numbered parameter, and SQLite finds a name by a scan of all of
    /// them, so a multi-row statement with thousands of values spends quadratic time before
    /// it runs (most of a billing run, measured). Unnamed parameters (`?`) bind by position
    /// without a lookup: on SQLite, a statement whose parameters appear as `$1`, `$2`, …
    /// each once and in that order (as [`placeholders`] writes them) gets `?` for each. Any
    /// other statement is returned as it is, which is correct, only slower.
    pub fn positional(self, sql: String) -> String {
        match self {
            Self::Postgres => sql,
            Self::Sqlite => unnamed(&sql).unwrap_or(sql),
        }
    }
}

/// `sql` with `$1`, `$2`, … (in order, each once, outside quotes) as `?`; `None` when its
/// parameters are not so.
fn unnamed(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut quote, mut next, mut copied, mut i) = (None::<u8>, 1usize, 0usize, 0usize);
    while i < bytes.len() {
        let byte = bytes[i];
        match quote {
            Some(open) if byte == open => quote = None,
            Some(_) => {}
            None if byte == b'\'' || byte == b'"' => quote = Some(byte),
            None if byte == b'$' => {
                let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                if digits > 0 {
                    let number: usize = sql[i + 1..i + 1 + digits].parse().ok()?;
                    if number != next {
                        return None;
                    }
                    out.push_str(&sql[copied..i]);
                    out.push('?');
                    next += 1;
                    i += 1 + digits;
                    copied = i;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
    Some(out)
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
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn numbered_parameters_in_order_become_unnamed_and_any_other_statement_stays() {
        let sql = format!("INSERT INTO t (a, b) VALUES {} RETURNING '$9', \"$8\"", "($1, $2), ($3, $4)");
        assert_eq!(unnamed(&sql).as_deref(), Some("INSERT INTO t (a, b) VALUES (?, ?), (?, ?) RETURNING '$9', \"$8\""));
        assert_eq!(unnamed("SELECT 1").as_deref(), Some("SELECT 1"));
        // Out of order, repeated or skipped: numbered is the only correct binding.
        assert_eq!(unnamed("UPDATE t SET a = $2 WHERE b = $1"), None);
        assert_eq!(unnamed("SELECT $1 WHERE $1 = 0"), None);
        assert_eq!(unnamed("SELECT $1, $3"), None);
    }

    #[test]
    fn a_statement_with_thousands_of_values_binds_them_in_order_on_sqlite() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::sqlite_in(dir.path()).await.unwrap();
            let mut conn = db.writer().acquire().await.unwrap();
            sqlx::query("CREATE TABLE t (a BIGINT, b TEXT)").execute(&mut *conn).await.unwrap();
            let rows: Vec<String> = (0..2_000).map(|r| format!("({})", placeholders(r * 2 + 1, 2))).collect();
            let sql = backend_of(&conn).positional(format!("INSERT INTO t (a, b) VALUES {}", rows.join(", ")));
            assert!(sql.starts_with("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"), "{}", &sql[..60]);
            let mut insert = sqlx::query(&sql);
            for r in 0..2_000i64 {
                insert = insert.bind(r).bind(format!("row {r}"));
            }
            insert.execute(&mut *conn).await.unwrap();
            let wrong: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t WHERE b <> 'row ' || a")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut *conn).await.unwrap();
            assert_eq!((count, wrong), (2_000, 0));
        });
    }

    #[test]
    fn an_edited_or_unknown_migration_is_refused_and_nothing_runs() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::sqlite_in(dir.path()).await.unwrap();
            let first = ["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (x BIGINT)"];
            db.apply_migrations("test_migrations", &first, &first).await.unwrap();
            // The same again, and one more: only the new one runs.
            let more = ["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (x BIGINT)", "CREATE TABLE c (x BIGINT)"];
            db.apply_migrations("test_migrations", &more, &more).await.unwrap();

            let edited = ["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (y BIGINT)", "CREATE TABLE c (x BIGINT)"];
            let refused = db.apply_migrations("test_migrations", &edited, &edited).await.unwrap_err();
            assert!(refused.to_string().contains("test_migrations migration 2 was edited"), "{refused}");

            let older = ["CREATE TABLE a (x BIGINT)"];
            let refused = db.apply_migrations("test_migrations", &older, &older).await.unwrap_err();
            assert!(refused.to_string().contains("migrated by a newer version"), "{refused}");
            let applied: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM test_migrations").fetch_one(&db.pool).await.unwrap();
            assert_eq!(applied, 3);
        })
    }

    #[test]
    fn commits_waiting_at_once_share_one_fsync_of_the_log() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::sqlite_in(dir.path()).await.unwrap();
            let mode: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(db.writer()).await.unwrap();
            assert_eq!(mode, 1, "the writer commits with synchronous = NORMAL");
            sqlx::query("CREATE TABLE t (n BIGINT)").execute(db.writer()).await.unwrap();
            let wal = db.wal.clone().unwrap();
            // While an fsync is under way (the lock held), 50 requests commit and ask.
            let running = wal.synced.lock().await;
            let mut waiting = tokio::task::JoinSet::new();
            for n in 0..50_i64 {
                let db = db.clone();
                waiting.spawn(async move {
                    sqlx::query("INSERT INTO t (n) VALUES ($1)").bind(n).execute(db.writer()).await?;
                    db.durable().await
                });
            }
            while wal.issued.load(Ordering::SeqCst) < 50 {
                tokio::task::yield_now().await;
            }
            drop(running);
            while let Some(done) = waiting.join_next().await {
                done.unwrap().unwrap();
            }
            // The first to get the lock synced the log for all 50.
            assert_eq!(wal.syncs.load(Ordering::Relaxed), 1);
            db.durable().await.unwrap();
            assert_eq!(wal.syncs.load(Ordering::Relaxed), 2, "a later commit gets a sync of its own");
            let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&db.pool).await.unwrap();
            assert_eq!(rows, 50);
        })
    }
}
