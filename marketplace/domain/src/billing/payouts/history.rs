//! A partner's payouts, and the statement lines each settles.

use super::{COLUMNS, Payout, PayoutDetail, PayoutRow, known_publisher};
use crate::accounts::Caller;
use crate::billing::statements::{self, Range};
use crate::error::MarketError;
use crate::market::Market;

/// A partner's payouts, newest first (the partner, operators).
pub async fn list(market: &Market, caller: &Caller, publisher: &str) -> Result<Vec<Payout>, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    known_publisher(market, publisher).await?;
    let rows = sqlx::query_as::<_, PayoutRow>(&format!(
        "SELECT {COLUMNS} FROM payouts WHERE publisher = $1 ORDER BY created_at DESC, id DESC"
    ))
    .bind(publisher)
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter().map(Payout::try_from).collect()
}

/// One payout with the lines it settles (its partner, operators).
pub async fn detail(market: &Market, caller: &Caller, publisher: &str, id: &str) -> Result<PayoutDetail, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    let row = sqlx::query_as::<_, SettlingRow>(&format!(
        "SELECT {COLUMNS}, settles_after_seq, settles_through_seq FROM payouts WHERE id = $1 AND publisher = $2"
    ))
    .bind(id)
    .bind(publisher)
    .fetch_optional(&market.db.pool)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("payout {id}")))?;
    let range = Range::Seq(row.settles_after_seq, row.settles_through_seq);
    let payout = Payout::try_from(row.payout)?;
    let lines = statements::lines(market, publisher, payout.currency, range).await?;
    let reconciliation = statements::totals(payout.carried_minor, &lines);
    Ok(PayoutDetail { payout, reconciliation, lines })
}

/// A payout's row with the range of the statement it settles.
#[derive(sqlx::FromRow)]
struct SettlingRow {
    #[sqlx(flatten)]
    payout: PayoutRow,
    settles_after_seq: i64,
    settles_through_seq: i64,
}
