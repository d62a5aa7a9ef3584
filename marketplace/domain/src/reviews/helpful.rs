//! Helpful marks: one per tenant organization per review.

use super::{Review, VOTE_LIMIT, lock, read_review};
use crate::accounts::{Caller, TenantScope};
use crate::error::MarketError;
use crate::ids::ReviewId;
use crate::market::Market;
use crate::write_limits;

/// Marks review `id` helpful for the caller's organization (`helpful`), or takes the mark
/// back. Marking twice counts once.
pub async fn mark_helpful(
    market: &Market,
    caller: &Caller,
    id: &ReviewId,
    helpful: bool,
) -> Result<Review, MarketError> {
    let db = &market.db;
    let tenant = caller.tenant(TenantScope::Installs)?.clone();
    let now = market.billing.clock.now_ms();
    let mut tx = db.write_tx().await?;
    let (_, author_tenant, _, hidden) = lock(&mut tx, id.as_str()).await?;
    if hidden {
        return Err(MarketError::NotFound(format!("review {id}")));
    }
    if author_tenant == tenant.as_str() {
        return Err(MarketError::Forbidden("an organization cannot mark its own review helpful".into()));
    }
    let changed = if helpful {
        write_limits::take(&mut tx, &format!("vote:{tenant}"), VOTE_LIMIT, now).await?;
        sqlx::query("INSERT INTO review_votes (review_id, voter, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(tenant.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    } else {
        sqlx::query("DELETE FROM review_votes WHERE review_id = $1 AND voter = $2")
            .bind(id)
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
    };
    if changed > 0 {
        let delta: i64 = if helpful { 1 } else { -1 };
        sqlx::query("UPDATE reviews SET helpful = helpful + $1 WHERE id = $2")
            .bind(delta)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    read_review(db, id.as_str(), false).await
}
