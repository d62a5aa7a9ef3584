//! Opening a [`Db`] on either backend: its pools, and what each connection is set to.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use super::wal::WalSync;
use super::{Backend, Db, DbLimits, storage};
use crate::error::RegistryError;

/// Reading connections to a SQLite file: WAL readers never wait for the writer.
const SQLITE_READERS: u32 = 8;
/// Connections to PostgreSQL per node (reads and writes).
const POSTGRES_CONNECTIONS: u32 = 16;
/// Connections to PostgreSQL per node that hold advisory locks ([`Db::locks`]).
const POSTGRES_LOCK_CONNECTIONS: u32 = 6;

impl Db {
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
        // A connection to a local file cannot have been hung up on while idle, so it is not
        // pinged before each use: on SQLite every statement, the ping included, is a hand-off
        // to the connection's thread and back, and with one writer that hand-off is time
        // every other write waits for (BENCHMARKS.md, "Mixed market load").
        .test_before_acquire(false)
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
