//! How long the queue keeps what is finished: deliveries that applied or were cancelled, and
//! webhook messages delivered, 7 days; failed and dead ones (which someone may replay) 30
//! days; a queued event as long as any of its deliveries, and at least 7 days, during which
//! sending its id again queues nothing. Every node's worker sweeps every 10 minutes, in
//! bounded statements, so a sweep never holds the writer for long.

use std::time::Duration;

use crate::billing::DAY_MS;
use crate::error::MarketError;
use crate::market::Market;

pub const KEEP_FINISHED_MS: i64 = 7 * DAY_MS;
pub const KEEP_FAILED_MS: i64 = 30 * DAY_MS;
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Rows one statement removes at most.
const CHUNK: i64 = 5_000;

/// Removes what is past its keeping; returns how many rows went.
pub async fn sweep(market: &Market) -> Result<u64, MarketError> {
    let now = market.billing.clock.now_ms();
    let (finished, failed) = (now - KEEP_FINISHED_MS, now - KEEP_FAILED_MS);
    let statements: [(&str, i64, &str); 5] = [
        (
            "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries \
             WHERE state IN ('applied', 'cancelled') AND updated_at < $1 LIMIT $2)",
            finished,
            "",
        ),
        (
            "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries \
             WHERE state IN ('failed', 'dead') AND updated_at < $1 LIMIT $2)",
            failed,
            "",
        ),
        (
            "DELETE FROM queued_events WHERE (tenant_id, id) IN (SELECT e.tenant_id, e.id FROM queued_events e \
             WHERE e.accepted_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id) LIMIT $2)",
            finished,
            "",
        ),
        (
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE state = $3 AND updated_at < $1 LIMIT $2)",
            finished,
            "delivered",
        ),
        (
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE state = $3 AND updated_at < $1 LIMIT $2)",
            failed,
            "dead",
        ),
    ];
    let mut removed = 0;
    for (sql, before, state) in statements {
        loop {
            let mut query = sqlx::query(sql).bind(before).bind(CHUNK);
            if !state.is_empty() {
                query = query.bind(state);
            }
            let gone = query.execute(market.db.writer()).await?.rows_affected();
            removed += gone;
            if gone < u64::try_from(CHUNK).unwrap_or(u64::MAX) {
                break;
            }
        }
    }
    Ok(removed)
}
