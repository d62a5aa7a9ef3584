//! The group fsync of SQLite's write-ahead log, shared by every caller of [`Db::durable`](super::Db::durable).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The group fsync of a SQLite write-ahead log ([`Db::durable`](super::Db::durable)).
#[derive(Debug)]
pub(super) struct WalSync {
    /// `<database>-wal`.
    pub(super) log: PathBuf,
    /// Tickets handed to callers, in order: a caller's commits all came before its ticket.
    pub(super) issued: AtomicU64,
    /// The highest ticket an fsync has covered; held while an fsync runs, so callers that
    /// arrive meanwhile wait for it and then for (at most) one more.
    pub(super) synced: tokio::sync::Mutex<u64>,
    /// fsyncs made, for tests and figures.
    pub(super) syncs: AtomicU64,
}

impl WalSync {
    pub(super) fn new(database: PathBuf) -> Self {
        let mut log = database.into_os_string();
        log.push("-wal");
        Self {
            log: PathBuf::from(log),
            issued: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    pub(super) async fn sync(&self) -> Result<(), sqlx::Error> {
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
