//! Claiming due rows of an outbox table (webhook messages, mail): rows with `id`, `state`
//! (queued, running, retrying, ...), `attempts`, `next_attempt_at` and `claimed_by`, sent by
//! every node's worker. A claim marks a batch `running` for [`LEASE_MS`] in one statement:
//! PostgreSQL skips rows another node holds (`FOR UPDATE SKIP LOCKED`); on SQLite, where one
//! process serves, a row still marked running by another process is taken at once (that
//! process died). What was claimed is settled by its sender, naming its own claim.

use nexus_registry::db::{Backend, process_id};
use sqlx::any::AnyRow;

use super::worker::LEASE_MS;
use crate::error::MarketError;
use crate::market::Market;

/// Claims up to `batch` due rows of `table`, setting `also_set` too (`, column = $3` may use
/// the claim's time as `$3`), and returns the `returning` columns of each.
pub(crate) async fn claim_due(
    market: &Market,
    table: &str,
    also_set: &str,
    returning: &str,
    batch: i64,
) -> Result<Vec<AnyRow>, MarketError> {
    let now = market.billing.clock.now_ms();
    let (skip_locked, lapsed_elsewhere) = match market.db.backend {
        Backend::Postgres => (" FOR UPDATE SKIP LOCKED", "0 = 1"),
        Backend::Sqlite => ("", "(state = 'running' AND claimed_by <> $1)"),
    };
    Ok(sqlx::query(&format!(
        "UPDATE {table} SET state = 'running', attempts = attempts + 1, claimed_by = $1, next_attempt_at = $2{also_set} \
         WHERE id IN (SELECT id FROM {table} \
            WHERE state IN ('queued', 'running', 'retrying') AND (next_attempt_at <= $3 OR {lapsed_elsewhere}) \
            ORDER BY next_attempt_at LIMIT $4{skip_locked}) \
         RETURNING {returning}"
    ))
    .bind(process_id())
    .bind(now + LEASE_MS)
    .bind(now)
    .bind(batch)
    .fetch_all(market.db.writer())
    .await?)
}
