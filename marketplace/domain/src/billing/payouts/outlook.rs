//! A partner's next payout, as Stripe Express shows it: per currency, the balance owed,
//! the minimum and what is still missing, when it will be paid under the schedule, and why
//! a balance waits (below the minimum, held, already paid this period).

use nexus_money::Currency;
use serde::Serialize;

use super::{Schedule, minimum};
use crate::accounts::Caller;
use crate::billing::holds::known_publisher;
use crate::error::MarketError;
use crate::market::Market;

/// Where a currency's balance stands before the next payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NextState {
    /// Paid by the next payout run (runs are scheduled by the server, every hour by default).
    Due,
    /// Under the currency's minimum: carried forward until it reaches it.
    BelowMinimum,
    /// The operators hold this partner's payouts.
    Held,
    /// Paid once in this payout period already: the rest waits for the next period.
    PaidThisPeriod,
}

/// `GET /v1/publishers/{publisher}/payouts/next`: one entry per currency with a balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NextPayout {
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    /// What the marketplace owes the partner in this currency now.
    pub balance_minor: i64,
    pub minimum_minor: i64,
    /// How much more must be earned to reach the minimum (0 once reached).
    pub missing_minor: i64,
    pub state: NextState,
    /// The earliest the balance can be paid: now when `due`, the next payout period's start
    /// when paid this period; `None` while held or below the minimum (it waits for a hold's
    /// release or for more earnings, not for a date).
    pub earliest_at: Option<i64>,
    /// Why, in words: the hold's reason, the minimum, the period.
    pub reason: String,
}

/// The partner's next payout per currency (its members and operators).
pub async fn outlook(market: &Market, caller: &Caller, publisher: &str) -> Result<Vec<NextPayout>, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    known_publisher(market, publisher).await?;
    let now = market.billing.clock.now_ms();
    let schedule: Schedule = market.billing.payout_schedule;
    let period = schedule.period(now);
    let next_period = schedule.next_period_start(now)?;
    let mut conn = market.db.pool.acquire().await?;
    let hold: Option<String> = sqlx::query_scalar(
        "SELECT reason FROM payout_holds WHERE publisher = $1 AND released_at IS NULL ORDER BY created_at DESC LIMIT 1",
    )
    .bind(publisher)
    .fetch_optional(&mut *conn)
    .await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT b.currency, b.payable_minor, (SELECT COUNT(*) FROM payouts p WHERE p.publisher = b.publisher \
         AND p.currency = b.currency AND p.period_key = $2) AS done \
         FROM partner_balances b WHERE b.publisher = $1 AND b.payable_minor > 0 ORDER BY b.currency",
    )
    .bind(publisher)
    .bind(&period)
    .fetch_all(&mut *conn)
    .await?;
    let mut next = Vec::with_capacity(rows.len());
    for (code, balance, done) in rows {
        let currency = crate::billing::ledger::stored_currency(&code)?;
        let minimum_minor = minimum(&mut conn, currency).await?;
        let missing_minor = (minimum_minor - balance).max(0);
        let money = |minor| nexus_money::Money::new(minor, currency).to_string();
        let (state, earliest_at, reason) = if let Some(reason) = &hold {
            (NextState::Held, None, format!("payouts are held by the marketplace: {reason}"))
        } else if done > 0 {
            (NextState::PaidThisPeriod, Some(next_period), format!("already paid once in payout period {period}"))
        } else if missing_minor > 0 {
            let why =
                format!("{} more to reach the {} minimum; carried forward", money(missing_minor), money(minimum_minor));
            (NextState::BelowMinimum, None, why)
        } else {
            (NextState::Due, Some(now), format!("due in payout period {period}: paid by the next payout run"))
        };
        next.push(NextPayout {
            currency,
            balance_minor: balance,
            minimum_minor,
            missing_minor,
            state,
            earliest_at,
            reason,
        });
    }
    Ok(next)
}
