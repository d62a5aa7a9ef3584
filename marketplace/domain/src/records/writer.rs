//! The group-commit writer: one task that takes whatever rows have queued (gathering a little
//! longer while invocations are about to queue theirs), writes them in one transaction on the
//! writer connection it keeps between batches, and answers every appender.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nexus_registry::Db;
use nexus_registry::db::Backend;
use sqlx::pool::PoolConnection;
use tokio::sync::mpsc;

use super::rows::{ROWS_PER_STATEMENT, insert_rows, insert_script, within_parameters};
use super::{InvocationRecord, Pending, Written};

/// Rows written in one transaction at most.
pub(super) const MAX_BATCH: usize = 512;
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

/// The writer connection kept between batches, and since when.
type Held = (PoolConnection<sqlx::Any>, Instant);

pub(super) async fn write_batches(db: Db, mut receiver: mpsc::Receiver<Pending>, coming: Arc<AtomicUsize>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut held: Option<Held> = None;
    loop {
        let Some(received) = receive(&db, &mut receiver, &mut batch, &mut held).await else {
            continue;
        };
        if received == 0 {
            return;
        }
        gather(&mut receiver, &mut batch, &coming).await;
        let (records, waiting): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        tracing::debug!(rows = records.len(), "invocation records to commit");
        if held.as_ref().is_some_and(|(_, since)| since.elapsed() >= HOLD_AT_MOST) {
            held = None;
        }
        let results = commit(&db, &mut held, &records).await;
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

/// Waits for the next rows into `batch`: how many came (0 once every handle is dropped), or
/// `None` when the held connection was given back meanwhile and the wait starts again.
async fn receive(
    db: &Db,
    receiver: &mut mpsc::Receiver<Pending>,
    batch: &mut Vec<Pending>,
    held: &mut Option<Held>,
) -> Option<usize> {
    let Some((_, since)) = held else {
        return Some(receiver.recv_many(batch, MAX_BATCH).await);
    };
    // Kept for the next batch until HOLD_AT_MOST, or until another write transaction
    // wants the writer (`Db::write_tx` tells), whichever comes first.
    let until = *since + HOLD_AT_MOST;
    tokio::select! {
        biased;
        received = tokio::time::timeout_at(until.into(), receiver.recv_many(batch, MAX_BATCH)) => {
            match received {
                Ok(received) => Some(received),
                Err(_) => {
                    *held = None;
                    None
                }
            }
        }
        () = db.writer_wanted().notified() => {
            *held = None;
            None
        }
    }
}

/// While invocations are about to queue their rows, takes [`GATHER_TURNS`] turns at most to
/// add them to `batch`.
async fn gather(receiver: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, coming: &AtomicUsize) {
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
}

/// Writes `records` on the held connection (taken first if none is held); a connection that
/// failed is not trusted again.
async fn commit(db: &Db, held: &mut Option<Held>, records: &[InvocationRecord]) -> Result<Vec<Written>, String> {
    let written = async {
        let connection = match held {
            Some((connection, _)) => connection,
            None => &mut held.insert((db.writer().acquire().await?, Instant::now())).0,
        };
        insert_batch(connection, db.backend, records).await
    }
    .await;
    written.map_err(|error| {
        // The next batch takes another connection.
        *held = None;
        tracing::error!(%error, rows = records.len(), "invocation records not written");
        error.to_string()
    })
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
