//! Removing expired keys in the background.

use nexus_registry::db::now_ms;

use super::KEEP_MS;

/// Keys deleted per statement by the sweep: short write transactions beside live traffic.
const SWEEP_BATCH: i64 = 1000;
/// How often each node sweeps expired keys (any node may: the delete is idempotent).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Deletes the keys that expired before `now` (kept 24 h), in short batches; how many. A key
/// met after it expired is freed where it is met as well, so the sweep only keeps the table
/// from growing with keys nobody sends again.
pub async fn sweep_expired(db: &nexus_registry::Db, now: i64) -> Result<u64, sqlx::Error> {
    let mut swept = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE (caller, key) IN \
             (SELECT caller, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
        )
        .bind(now - KEEP_MS)
        .bind(SWEEP_BATCH)
        .execute(db.writer())
        .await?
        .rows_affected();
        swept += done;
        if done < SWEEP_BATCH as u64 {
            return Ok(swept);
        }
    }
}

/// Sweeps expired keys every [`SWEEP_EVERY`] until aborted.
pub fn keep_sweeping(db: nexus_registry::Db) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sweep_expired(&db, now_ms()).await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "expired idempotency keys removed"),
                Err(error) => tracing::warn!(%error, "sweeping expired idempotency keys"),
            }
        }
    })
}
