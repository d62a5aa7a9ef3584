//! Refunds: part or all of a collected charge goes back to its tenant, several times if
//! need be, never more than the charge. The fee returned is the charge's fee in proportion,
//! computed cumulatively (`nexus_money::share::refunded_fee`), so refunding a charge in
//! pieces returns exactly its whole fee; the partner gives back the rest. A partner's
//! balance may go negative and is recovered from later earnings. Refunds do not move the
//! partner's tier position.
//!
//! A refund request carries an `Idempotency-Key`, stored with its ledger transaction under
//! a unique constraint together with the request's hash: a retry gets the same refund, the
//! same key with another request is refused.

use nexus_money::Currency;
use nexus_money::share::{Split, refunded_fee};
use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::idempotency::{self, Idempotent, Scope, Seen};
use super::ids::{ChargeId, RefundId};
use super::ledger::{self, Account, Head, IdempotencyKey, Kind};
use super::money_error;
use crate::accounts::Caller;
use crate::error::{MarketError, storage};
use crate::market::Market;

/// `POST /v1/charges/{id}/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units, at most what remains of the charge.
    pub amount_minor: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Refund {
    #[schema(value_type = String)]
    pub id: RefundId,
    pub charge: String,
    pub amount_minor: i64,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    /// The platform fee this refund returned.
    pub fee_minor: i64,
    /// `refund`, or `proration-credit` (the unused part of a period after a plan change).
    pub kind: String,
    pub reason: String,
    pub created_at: i64,
}

/// A row of [`COLUMNS`], its currency still text.
#[derive(sqlx::FromRow)]
struct RefundRow {
    id: RefundId,
    charge_id: String,
    amount_minor: i64,
    currency: String,
    fee_minor: i64,
    kind: String,
    reason: String,
    created_at: i64,
}

impl TryFrom<RefundRow> for Refund {
    type Error = MarketError;

    fn try_from(row: RefundRow) -> Result<Self, MarketError> {
        Ok(Self {
            id: row.id,
            charge: row.charge_id,
            amount_minor: row.amount_minor,
            currency: ledger::stored_currency(&row.currency)?,
            fee_minor: row.fee_minor,
            kind: row.kind,
            reason: row.reason,
            created_at: row.created_at,
        })
    }
}

/// The kind of a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundKind {
    Refund,
    ProrationCredit,
}

impl RefundKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Refund => "refund",
            Self::ProrationCredit => "proration-credit",
        }
    }
}

/// The hash a refund request is stored with.
pub fn request_hash(charge: &ChargeId, request: &RefundRequest) -> String {
    let text = serde_json::json!({ "charge": charge.as_str(), "amount_minor": request.amount_minor, "reason": request.reason });
    idempotency::sha256_hex(&text.to_string())
}

/// Refunds part of a collected charge (operators).
pub async fn refund(
    market: &Market,
    caller: &Caller,
    charge: &ChargeId,
    request: RefundRequest,
    key: Option<&str>,
) -> Result<Refund, MarketError> {
    caller.require_operator()?;
    let key = idempotency::required(key, "a refund moves money: send an Idempotency-Key header")?;
    MarketError::check_text(ErrorCode::InvalidRequest, "reason", &request.reason, 500)?;
    if request.reason.trim().is_empty() {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "a refund names its reason"));
    }
    if request.amount_minor <= 0 {
        return Err(MarketError::invalid(ErrorCode::InvalidAmount, "a refund is a positive number of minor units"));
    }
    let idempotent =
        Idempotent { key: format!("refund:{}:{key}", caller.actor()), request_sha256: request_hash(charge, &request) };
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    match idempotent.check(&mut tx, Scope::Ledger).await? {
        Seen::Fresh => {}
        Seen::Replay(recorded) => {
            drop(tx);
            let refund_id: RefundId = recorded.ok_or_else(|| storage("refund key without refund"))?.parse()?;
            return get(market, &refund_id).await;
        }
        Seen::Reused => {
            return Err(idempotency::reused(
                "this Idempotency-Key was used for another request; use a new key for a new refund",
            ));
        }
    }
    let idempotency: IdempotencyKey = idempotent.into();
    let id = refund_in(
        &mut tx,
        market,
        charge,
        request.amount_minor,
        RefundKind::Refund,
        &request.reason,
        &caller.actor(),
        Some(&idempotency),
        now,
    )
    .await?;
    let detail = serde_json::json!({ "charge": charge.as_str(), "amount_minor": request.amount_minor, "reason": request.reason });
    crate::audit::record(&mut *tx, &caller.actor(), "charge.refunded", id.as_str(), detail).await?;
    tx.commit().await?;
    get(market, &id).await
}

/// Refunds `amount` of a collected charge inside the caller's transaction: the refund row,
/// the ledger transaction (cash out, fee and partner share back in proportion), and the
/// charge's refunded totals.
#[allow(clippy::too_many_arguments)]
pub async fn refund_in(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    charge: &ChargeId,
    amount: i64,
    kind: RefundKind,
    reason: &str,
    actor: &str,
    idempotency: Option<&IdempotencyKey>,
    now: i64,
) -> Result<RefundId, MarketError> {
    let ChargeRow { publisher, currency, amount_minor: gross, fee_minor, refunded_minor: refunded, fee_refunded_minor } =
        collected_charge(conn, market, charge).await?;
    let (fee_refunded, fee) = (fee_refunded_minor, fee_minor.unwrap_or(0));
    let currency = ledger::stored_currency(&currency)?;
    // Everything that moves a partner's payable in a currency takes this row's lock, so the
    // partner's entries are committed in the order of their ledger sequence.
    super::share::lock_lifetime(conn, market.db.backend, &publisher, currency).await?;
    let split = Split { gross, fee, partner: gross - fee };
    let fee_back = refunded_fee(split, refunded, amount).map_err(money_error)?;
    let id = RefundId::random()?;
    sqlx::query(
        "INSERT INTO refunds (id, charge_id, amount_minor, fee_minor, kind, reason, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.as_str())
    .bind(charge.as_str())
    .bind(amount)
    .bind(fee_back)
    .bind(kind.as_str())
    .bind(reason)
    .bind(actor)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let posting = ledger::posting(
        currency,
        &[
            (Account::PlatformCash, -amount),
            (Account::PlatformFeeRevenue, fee_back),
            (Account::PartnerPayable(publisher), amount - fee_back),
        ],
    )?;
    let memo = format!("{} of {amount} on {charge}: {}", kind.as_str(), nexus_host::limits::clip(reason, 200));
    let head = Head {
        kind: Kind::Refund,
        charge: Some(charge),
        refund: Some(&id),
        payout: None,
        adjustment: None,
        idempotency,
        memo,
        at: now,
    };
    ledger::post(conn, head, &posting).await?;
    sqlx::query("UPDATE charges SET refunded_minor = $2, fee_refunded_minor = $3 WHERE id = $1")
        .bind(charge.as_str())
        .bind(refunded + amount)
        .bind(fee_refunded + fee_back)
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// The charge a refund is taken from, under its row lock; only collected money is refunded.
async fn collected_charge(
    conn: &mut sqlx::AnyConnection,
    market: &Market,
    charge: &ChargeId,
) -> Result<ChargeRow, MarketError> {
    let row = sqlx::query(&format!(
        "SELECT publisher, currency, amount_minor, status, fee_minor, refunded_minor, fee_refunded_minor \
         FROM charges WHERE id = $1{}",
        market.db.for_update()
    ))
    .bind(charge.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("charge {charge}")))?;
    let status = super::collect::charge_status(&row)?;
    if status != super::charges::ChargeStatus::Collected {
        return Err(MarketError::conflict(
            ErrorCode::ChargeNotCollected,
            format!("charge {charge} is {status}: only collected money can be refunded"),
        ));
    }
    Ok(ChargeRow::from_row(&row)?)
}

/// The locked charge a refund is taken from.
#[derive(sqlx::FromRow)]
struct ChargeRow {
    publisher: String,
    currency: String,
    amount_minor: i64,
    fee_minor: Option<i64>,
    refunded_minor: i64,
    fee_refunded_minor: i64,
}

/// The columns [`refund_row`] reads, from `refunds r JOIN charges c`.
pub(crate) const COLUMNS: &str =
    "r.id, r.charge_id, r.amount_minor, c.currency, r.fee_minor, r.kind, r.reason, r.created_at";

pub(crate) fn refund_row(row: &sqlx::any::AnyRow) -> Result<Refund, MarketError> {
    RefundRow::from_row(row)?.try_into()
}

pub async fn get(market: &Market, id: &RefundId) -> Result<Refund, MarketError> {
    sqlx::query_as::<_, RefundRow>(&format!(
        "SELECT {COLUMNS} FROM refunds r JOIN charges c ON c.id = r.charge_id WHERE r.id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(&market.db.pool)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("refund {id}")))?
    .try_into()
}

/// The refunds of a charge, oldest first.
pub async fn of_charge(market: &Market, charge: &ChargeId) -> Result<Vec<Refund>, MarketError> {
    let rows = sqlx::query_as::<_, RefundRow>(&format!(
        "SELECT {COLUMNS} FROM refunds r JOIN charges c ON c.id = r.charge_id WHERE r.charge_id = $1 ORDER BY r.created_at, r.id"
    ))
    .bind(charge.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter().map(Refund::try_from).collect()
}
