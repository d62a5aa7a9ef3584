//! Claiming due rows of an outbox table (webhook messages, mail): rows with `id`, `state`
//! (queued, running, retrying, ...), `attempts`, `next_attempt_at` and `claimed_by`, sent by
//! every node's worker. A claim marks a batch `running` for [`LEASE_MS`] in one statement:
//! PostgreSQL skips rows another node holds (`FOR UPDATE SKIP LOCKED`); on SQLite, where one
//! process serves, a row still marked running by another process is taken at once (that
//! process died). What was claimed is settled by its sender, naming its own claim.
//!
//! The retry schedule is shared too: the runner's deliveries, webhook messages and mail each
//! get [`MAX_ATTEMPTS`], waiting [`wait_before`] (jittered) after a failed one. Below mail,
//! webhooks and the runner, which all use it.

use nexus_registry::db::{Backend, process_id};
use sqlx::any::AnyRow;

use crate::error::MarketError;
use crate::market::Market;

/// Attempts a delivery gets before it is dead.
pub const MAX_ATTEMPTS: i64 = 16;
/// The wait after the first failed attempt; it doubles with each further attempt.
pub const FIRST_WAIT_MS: i64 = 30_000;
/// The longest wait between two attempts.
pub const MAX_WAIT_MS: i64 = 8 * 60 * 60 * 1000;
/// How long a claim lasts: longer than any run (an invocation's wall-clock limit plus its
/// compile wait), so only a dead node's claims lapse.
pub const LEASE_MS: i64 = 60_000;

/// The wait after failed attempt `attempt` (1-based), before jitter.
pub fn wait_before(attempt: i64) -> i64 {
    let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX).min(30);
    FIRST_WAIT_MS.saturating_mul(1 << doublings).min(MAX_WAIT_MS)
}

/// [`wait_before`] moved by up to 20 % either way, so deliveries that failed together do
/// not all come back together.
pub(crate) fn jittered(wait: i64) -> i64 {
    let mut bytes = [0u8; 2];
    let unit = match getrandom::fill(&mut bytes) {
        Ok(()) => i64::from(u16::from_le_bytes(bytes)),
        Err(_) => 32_768,
    };
    // unit / 65536 in [0, 1): the factor is 0.8 + 0.4 * unit.
    wait * 8 / 10 + wait * 4 / 10 * unit / 65_536
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_thirty_seconds_to_eight_hours_and_add_up_to_about_two_days() {
        assert_eq!([1, 2, 3, 10].map(wait_before), [30_000, 60_000, 120_000, 15_360_000]);
        assert_eq!(wait_before(11), MAX_WAIT_MS);
        assert_eq!(wait_before(i64::MAX), MAX_WAIT_MS);
        let total: i64 = (1..MAX_ATTEMPTS).map(wait_before).sum();
        assert_eq!(total, 174_690_000, "15 waits between 16 attempts: 48.5 hours");
        for _ in 0..1000 {
            let wait = jittered(100_000);
            assert!((80_000..120_000).contains(&wait), "{wait}");
        }
    }
}
