//! What decides whether a partner is paid: the minimum payout of each currency (25 whole
//! units unless an operator set another) and an operator's hold on a partner's payouts.

use nexus_money::Currency;
use nexus_registry::ErrorCode;
use serde::Deserialize;

use super::money_error;
use crate::accounts::Caller;
use crate::error::MarketError;
use crate::ids::HoldId;
use crate::market::Market;

/// The smallest balance paid out in `currency`: the operator's, or 25 whole units.
pub async fn minimum(conn: &mut sqlx::AnyConnection, currency: Currency) -> Result<i64, MarketError> {
    let set: Option<i64> = sqlx::query_scalar("SELECT minimum_minor FROM payout_minimums WHERE currency = $1")
        .bind(currency.code())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(set.unwrap_or(25 * currency.minor_per_major()))
}

/// `PUT /v1/payouts/minimums/{currency}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MinimumRequest {
    pub minimum_minor: i64,
}

/// Sets the minimum payout of a currency (operators).
pub async fn set_minimum(
    market: &Market,
    caller: &Caller,
    code: &str,
    request: MinimumRequest,
) -> Result<(), MarketError> {
    caller.require_operator()?;
    let currency = Currency::from_code(code).map_err(money_error)?;
    if !(0..=super::plans::MAX_AMOUNT_MINOR).contains(&request.minimum_minor) {
        return Err(MarketError::invalid(
            ErrorCode::InvalidAmount,
            format!("a minimum payout is 0 to {} minor units", super::plans::MAX_AMOUNT_MINOR),
        ));
    }
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    sqlx::query(
        "INSERT INTO payout_minimums (currency, minimum_minor, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (currency) DO UPDATE SET minimum_minor = $2, updated_by = $3, updated_at = $4",
    )
    .bind(currency.code())
    .bind(request.minimum_minor)
    .bind(caller.actor())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let detail = serde_json::json!({ "currency": currency.code(), "minimum_minor": request.minimum_minor });
    crate::audit::record(&mut *tx, &caller.actor(), "payouts.minimum_set", currency.code(), detail).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /v1/publishers/{p}/payout-hold`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub reason: String,
}

/// The reason of the hold on a partner's payouts, if one stands (for the pages that
/// already checked who may read the partner).
pub async fn current(market: &Market, publisher: &str) -> Result<Option<String>, MarketError> {
    Ok(sqlx::query_scalar(
        "SELECT reason FROM payout_holds WHERE publisher = $1 AND released_at IS NULL ORDER BY created_at DESC LIMIT 1",
    )
    .bind(publisher)
    .fetch_optional(&market.db.pool)
    .await?)
}

/// Holds a partner's payouts (operators) until released.
pub async fn hold(market: &Market, caller: &Caller, publisher: &str, request: HoldRequest) -> Result<(), MarketError> {
    caller.require_operator()?;
    MarketError::check_text(ErrorCode::InvalidRequest, "reason", &request.reason, 500)?;
    known_publisher(market, publisher).await?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let held: Option<String> =
        sqlx::query_scalar("SELECT id FROM payout_holds WHERE publisher = $1 AND released_at IS NULL")
            .bind(publisher)
            .fetch_optional(&mut *tx)
            .await?;
    if held.is_some() {
        return Err(MarketError::conflict(
            ErrorCode::AlreadyHeld,
            format!("{publisher}'s payouts are already on hold"),
        ));
    }
    let id = String::from(HoldId::random()?);
    sqlx::query("INSERT INTO payout_holds (id, publisher, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(publisher)
        .bind(&request.reason)
        .bind(caller.actor())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    crate::audit::record(
        &mut *tx,
        &caller.actor(),
        "payouts.held",
        publisher,
        serde_json::json!({ "reason": request.reason }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Releases a partner's hold (operators).
pub async fn release(market: &Market, caller: &Caller, publisher: &str) -> Result<(), MarketError> {
    caller.require_operator()?;
    let mut tx = market.db.write_tx().await?;
    let released = sqlx::query("UPDATE payout_holds SET released_at = $2 WHERE publisher = $1 AND released_at IS NULL")
        .bind(publisher)
        .bind(market.billing.clock.now_ms())
        .execute(&mut *tx)
        .await?;
    if released.rows_affected() == 0 {
        return Err(MarketError::NotFound(format!("payout hold of {publisher}")));
    }
    crate::audit::record(&mut *tx, &caller.actor(), "payouts.released", publisher, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// Unknown partners are `not_found`, not an empty answer.
pub(crate) async fn known_publisher(market: &Market, publisher: &str) -> Result<(), MarketError> {
    let found: Option<String> = sqlx::query_scalar("SELECT name FROM publishers WHERE name = $1")
        .bind(publisher)
        .fetch_optional(&market.db.pool)
        .await?;
    found.map(drop).ok_or_else(|| MarketError::NotFound(format!("publisher {publisher}")))
}
