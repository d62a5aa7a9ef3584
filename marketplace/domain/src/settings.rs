//! Marketplace-wide settings operators change (in the console), kept one row per setting in
//! `marketplace_settings`, every change audited.

use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::error::MarketError;
use crate::market::Market;

/// Every person must set up a second factor (operators must in any case).
pub const REQUIRE_SECOND_FACTOR: &str = "require_second_factor";

async fn get(market: &Market, name: &str) -> Result<Option<String>, MarketError> {
    Ok(sqlx::query_scalar("SELECT value FROM marketplace_settings WHERE name = $1")
        .bind(name)
        .fetch_optional(&market.db.pool)
        .await?)
}

/// Whether operators require a second factor of everyone.
pub async fn require_second_factor(market: &Market) -> Result<bool, MarketError> {
    Ok(get(market, REQUIRE_SECOND_FACTOR).await?.as_deref() == Some("on"))
}

/// An operator turns the requirement on or off.
pub async fn set_require_second_factor(market: &Market, caller: &Caller, on: bool) -> Result<(), MarketError> {
    caller.require_operator()?;
    let value = if on { "on" } else { "off" };
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    sqlx::query(
        "INSERT INTO marketplace_settings (name, value, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, \
         updated_at = excluded.updated_at",
    )
    .bind(REQUIRE_SECOND_FACTOR)
    .bind(value)
    .bind(caller.actor())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit::record(&mut *tx, &caller.actor(), "setting.changed", REQUIRE_SECOND_FACTOR, json!({ "value": value }))
        .await?;
    tx.commit().await?;
    Ok(())
}
