//! The install status changes that payments cause, in the caller's transaction: an install
//! waits for a charge due now (`pending_payment`), runs once nothing it owes is open, and is
//! paused when its retries are used up (`paused` for [`PauseCause::Payment`], with a
//! `payment_failed` reason).

use super::PauseCause;
use crate::error::MarketError;

/// Charge statuses that mean something is still owed.
const OPEN_CHARGES: &str =
    "SELECT 1 FROM charges WHERE install_id = $1 AND status IN ('failed', 'collecting', 'pending')";

/// An active install with a charge open (one a plan change just made due) waits for it.
pub(crate) async fn await_payment(conn: &mut sqlx::AnyConnection, install: &str, now: i64) -> Result<(), MarketError> {
    sqlx::query(&format!(
        "UPDATE installs SET status = 'pending_payment', updated_at = $2 \
         WHERE id = $1 AND status = 'active' AND EXISTS ({OPEN_CHARGES})"
    ))
    .bind(install)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An install waiting for payment, or paused for it, runs again once none of its charges is
/// failed, being collected, or pending.
pub(crate) async fn run_if_paid(conn: &mut sqlx::AnyConnection, install: &str, now: i64) -> Result<bool, MarketError> {
    let resumed = sqlx::query(&format!(
        "UPDATE installs SET status = 'active', status_reason = NULL, paused_for = NULL, updated_at = $2 \
         WHERE id = $1 AND (status = 'pending_payment' OR (status = 'paused' AND paused_for = $3)) \
         AND NOT EXISTS ({OPEN_CHARGES})"
    ))
    .bind(install)
    .bind(now)
    .bind(PauseCause::Payment.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(resumed.rows_affected() == 1)
}

/// Pauses an install whose payment retries are used up; whether it did.
pub(crate) async fn pause_for_payment(
    conn: &mut sqlx::AnyConnection,
    install: &str,
    why: &str,
    now: i64,
) -> Result<bool, MarketError> {
    let paused = sqlx::query(
        "UPDATE installs SET status = 'paused', status_reason = $2, paused_for = $4, updated_at = $3 \
         WHERE id = $1 AND status IN ('active', 'pending_payment')",
    )
    .bind(install)
    .bind(why)
    .bind(now)
    .bind(PauseCause::Payment.as_str())
    .execute(&mut *conn)
    .await?;
    let paused = paused.rows_affected() == 1;
    if paused {
        crate::webhooks::install_paused(conn, now, install, PauseCause::Payment.as_str(), why).await?;
    }
    Ok(paused)
}
