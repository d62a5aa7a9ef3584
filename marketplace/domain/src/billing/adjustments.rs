//! Operators' adjustments of a partner's balance: a correction is a new ledger transaction,
//! dated when it is made, so a closed month's statement never changes; each is made once per
//! idempotency key.

use nexus_money::Currency;
use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};

use super::holds::known_publisher;
use super::idempotency::{self, Idempotent, Scope, Seen};
use super::ledger::{self, Account, Head, Kind};
use super::{money_error, share};
use crate::accounts::Caller;
use crate::error::{MarketError, storage};
use crate::ids::AdjustmentId;
use crate::market::Market;

/// `POST /v1/publishers/{p}/adjustments`: a correction of a partner's balance.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    pub currency: String,
    /// Minor units: positive credits the partner, negative debits it.
    pub amount_minor: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Adjustment {
    #[schema(value_type = String)]
    pub id: crate::ids::AdjustmentId,
    pub publisher: String,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub amount_minor: i64,
    pub reason: String,
    pub created_at: i64,
}

/// Adjusts a partner's balance (operators), once per idempotency key: the adjustment shows
/// on the statement of the month it is made, never in a closed one.
pub async fn adjust(
    market: &Market,
    caller: &Caller,
    publisher: &str,
    request: AdjustmentRequest,
    key: Option<&str>,
) -> Result<Adjustment, MarketError> {
    caller.require_operator()?;
    let key = idempotency::required(key, "an adjustment moves money: send an Idempotency-Key header")?;
    let currency = checked(&request)?;
    known_publisher(market, publisher).await?;
    let text = serde_json::json!({ "publisher": publisher, "currency": currency.code(),
                                   "amount_minor": request.amount_minor, "reason": request.reason });
    let idempotent = Idempotent::new(format!("adjustment:{}:{key}", caller.actor()), &text.to_string());
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    match idempotent.check(&mut tx, Scope::Ledger).await? {
        Seen::Fresh => {}
        Seen::Replay(recorded) => {
            drop(tx);
            return adjustment(market, &recorded.ok_or_else(|| storage("adjustment key without adjustment"))?).await;
        }
        Seen::Reused => {
            return Err(idempotency::reused("this Idempotency-Key was used for another adjustment; use a new key"));
        }
    }
    let made = Made { publisher, currency, request: &request, actor: &caller.actor(), now };
    let id = insert(&mut tx, made, &idempotent.into()).await?;
    crate::audit::record(&mut *tx, &caller.actor(), "partner.adjusted", &id, text).await?;
    tx.commit().await?;
    adjustment(market, &id).await
}

/// The request's currency, once its amount and reason are checked.
fn checked(request: &AdjustmentRequest) -> Result<Currency, MarketError> {
    let currency = Currency::from_code(&request.currency).map_err(money_error)?;
    if request.amount_minor == 0 || request.amount_minor.unsigned_abs() > super::plans::MAX_AMOUNT_MINOR.unsigned_abs()
    {
        return Err(MarketError::invalid(
            ErrorCode::InvalidAmount,
            format!("an adjustment moves a non-zero amount of at most {} minor units", super::plans::MAX_AMOUNT_MINOR),
        ));
    }
    MarketError::check_text(ErrorCode::InvalidRequest, "reason", &request.reason, 500)?;
    if request.reason.trim().is_empty() {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "an adjustment names its reason"));
    }
    Ok(currency)
}

/// An adjustment being made.
#[derive(Clone, Copy)]
struct Made<'a> {
    publisher: &'a str,
    currency: Currency,
    request: &'a AdjustmentRequest,
    actor: &'a str,
    now: i64,
}

/// Writes the adjustment and its ledger transaction (under `idempotency`), in the partner's
/// lifetime lock; returns its id.
async fn insert(
    conn: &mut sqlx::AnyConnection,
    Made { publisher, currency, request, actor, now }: Made<'_>,
    idempotency: &ledger::IdempotencyKey,
) -> Result<String, MarketError> {
    let backend = nexus_registry::db::backend_of(conn);
    share::lock_lifetime(conn, backend, publisher, currency).await?;
    let id = String::from(AdjustmentId::random()?);
    sqlx::query(
        "INSERT INTO adjustments (id, publisher, currency, amount_minor, reason, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(publisher)
    .bind(currency.code())
    .bind(request.amount_minor)
    .bind(&request.reason)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let amount = request.amount_minor;
    let posting = ledger::posting(
        currency,
        &[(Account::PartnerPayable(publisher.to_string()), -amount), (Account::PlatformAdjustments, amount)],
    )?;
    let memo = format!("adjustment: {}", nexus_host::limits::clip(&request.reason, 200));
    let head = Head {
        kind: Kind::Adjustment,
        charge: None,
        refund: None,
        payout: None,
        adjustment: Some(&id),
        idempotency: Some(idempotency),
        memo,
        at: now,
    };
    ledger::post(conn, head, &posting).await?;
    Ok(id)
}

async fn adjustment(market: &Market, id: &str) -> Result<Adjustment, MarketError> {
    let row = sqlx::query_as::<_, AdjustmentRow>(
        "SELECT id, publisher, currency, amount_minor, reason, created_at FROM adjustments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&market.db.pool)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("adjustment {id}")))?;
    Ok(Adjustment {
        id: row.id,
        publisher: row.publisher,
        currency: ledger::stored_currency(&row.currency)?,
        amount_minor: row.amount_minor,
        reason: row.reason,
        created_at: row.created_at,
    })
}

/// An adjustment as stored, its currency still text.
#[derive(sqlx::FromRow)]
struct AdjustmentRow {
    id: AdjustmentId,
    publisher: String,
    currency: String,
    amount_minor: i64,
    reason: String,
    created_at: i64,
}
