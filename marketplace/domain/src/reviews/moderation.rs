//! Operators hiding a review with a reason, and showing it again.

use nexus_registry::ErrorCode;
use nexus_registry::text::MAX_REASON_CHARS;
use serde_json::json;

use super::{Review, count_rating, lock, read_review};
use crate::accounts::Caller;
use crate::audit;
use crate::error::MarketError;
use crate::ids::ReviewId;
use crate::market::Market;

/// Hides review `id` with a reason its authors see (`reason` Some), or shows it again.
pub async fn hide(
    market: &Market,
    caller: &Caller,
    id: &ReviewId,
    reason: Option<&str>,
) -> Result<Review, MarketError> {
    let db = &market.db;
    caller.require_operator()?;
    if let Some(reason) = reason {
        MarketError::check_text(ErrorCode::InvalidRequest, "reason", reason, MAX_REASON_CHARS)?;
        if reason.trim().is_empty() {
            return Err(MarketError::invalid(
                ErrorCode::InvalidRequest,
                "hiding a review needs a reason its author sees",
            ));
        }
    }
    let now = market.billing.clock.now_ms();
    let mut tx = db.write_tx().await?;
    let (plugin, _, rating, hidden) = lock(&mut tx, id.as_str()).await?;
    sqlx::query("UPDATE reviews SET hidden_at = $1, hidden_reason = $2 WHERE id = $3")
        .bind(reason.map(|_| now))
        .bind(reason.map(str::trim))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    match (hidden, reason.is_some()) {
        (false, true) => count_rating(&mut tx, &plugin, -1, -rating).await?,
        (true, false) => count_rating(&mut tx, &plugin, 1, rating).await?,
        _ => {}
    }
    let action = if reason.is_some() { "review.hidden" } else { "review.shown" };
    audit::record(&mut *tx, &caller.actor(), action, id.as_str(), json!({ "plugin": plugin, "reason": reason }))
        .await?;
    tx.commit().await?;
    read_review(db, id.as_str(), true).await
}
