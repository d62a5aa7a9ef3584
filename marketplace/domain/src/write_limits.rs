//! Fixed-window limits on writes people make by hand (reviews, replies, helpful marks), so
//! a flood is refused with `429 rate_limited` instead of filling the catalog. Counted in
//! the write's own transaction: a refused or failed write counts nothing, and nodes sharing
//! a database share the count.

use std::time::Duration;

use crate::error::MarketError;

/// A limit: at most `writes` per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub writes: i64,
    pub window: Duration,
}

/// Counts one write of `subject` (e.g. `review:globex`) at `now` against `limit`; refuses
/// with the time until its window ends when the window is full.
pub async fn take(conn: &mut sqlx::AnyConnection, subject: &str, limit: Limit, now: i64) -> Result<(), MarketError> {
    let window_ms = i64::try_from(limit.window.as_millis()).unwrap_or(i64::MAX);
    let (writes, window_start): (i64, i64) = sqlx::query_as(
        "INSERT INTO write_limits (subject, window_start, writes) VALUES ($1, $2, 1) \
         ON CONFLICT (subject) DO UPDATE SET \
         writes = CASE WHEN write_limits.window_start <= $3 THEN 1 ELSE write_limits.writes + 1 END, \
         window_start = CASE WHEN write_limits.window_start <= $3 THEN $2 ELSE write_limits.window_start END \
         RETURNING writes, window_start",
    )
    .bind(subject)
    .bind(now)
    .bind(now.saturating_sub(window_ms))
    .fetch_one(&mut *conn)
    .await?;
    if writes > limit.writes {
        let left = (window_start.saturating_add(window_ms) - now).max(1_000);
        return Err(MarketError::RateLimited { retry_after: Duration::from_millis(left.unsigned_abs()) });
    }
    Ok(())
}
