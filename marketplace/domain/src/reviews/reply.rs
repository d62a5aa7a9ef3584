//! The publisher's reply to a review.

use serde_json::json;

use super::{MAX_REPLY_CHARS, REPLY_LIMIT, Review, check_text, lock, read_review};
use crate::accounts::Caller;
use crate::audit;
use crate::error::MarketError;
use crate::ids::ReviewId;
use crate::market::Market;
use crate::write_limits;

/// The publisher's reply to review `id`: written, replaced, or removed (`body` None).
pub async fn reply(market: &Market, caller: &Caller, id: &ReviewId, body: Option<&str>) -> Result<Review, MarketError> {
    let db = &market.db;
    if let Some(body) = body {
        check_text("body", body.trim(), MAX_REPLY_CHARS, true, true)?;
    }
    let now = market.billing.clock.now_ms();
    let mut tx = db.write_tx().await?;
    let (plugin, _, _, hidden) = lock(&mut tx, id.as_str()).await?;
    let publisher = plugin.split_once('/').map_or(plugin.as_str(), |(publisher, _)| publisher);
    match caller {
        Caller::Publisher(credential) if credential.publisher.as_str() == publisher => {}
        Caller::Publisher(_) | Caller::Operator { .. } => {
            return Err(MarketError::Forbidden(format!("only {publisher} replies to reviews of {plugin}")));
        }
        Caller::Tenant { .. } => return Err(MarketError::Forbidden("this needs a publisher token".into())),
    }
    if hidden {
        return Err(MarketError::NotFound(format!("review {id}")));
    }
    match body {
        Some(body) => {
            write_limits::take(&mut tx, &format!("reply:{publisher}"), REPLY_LIMIT, now).await?;
            sqlx::query(
                "UPDATE reviews SET reply = $1, \
                 reply_edited_at = CASE WHEN reply IS NULL THEN NULL ELSE $2 END, \
                 replied_at = CASE WHEN reply IS NULL THEN $2 ELSE replied_at END WHERE id = $3",
            )
            .bind(body.trim())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("UPDATE reviews SET reply = NULL, replied_at = NULL, reply_edited_at = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    }
    let action = if body.is_some() { "review.replied" } else { "review.reply_removed" };
    audit::record(&mut *tx, &caller.actor(), action, id.as_str(), json!({ "plugin": plugin })).await?;
    tx.commit().await?;
    read_review(db, id.as_str(), false).await
}
