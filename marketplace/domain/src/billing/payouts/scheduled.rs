//! Payout runs on a schedule, as `nexus serve` makes them.

use super::{PayoutRunReport, run};
use crate::error::{MarketError, storage};
use crate::market::Market;

/// The audit actor of payout runs made by the schedule.
pub const SCHEDULED_ACTOR: &str = "system:payout-schedule";

/// One run of the schedule: a run that moved money (or left a payout pending) is in the
/// audit log, and so under the operator's "Payout runs", like a manual one; an idle run is
/// not recorded.
pub async fn scheduled_run(market: &Market) -> Result<PayoutRunReport, MarketError> {
    let report = run(market, market.billing.clock.now_ms()).await?;
    if report.paid + report.failed + report.pending > 0 {
        tracing::info!(paid = report.paid, failed = report.failed, period = %report.period, "payout run");
        let detail = serde_json::to_value(&report).map_err(storage)?;
        crate::audit::record(market.db.writer(), SCHEDULED_ACTOR, "payouts.run", &report.period, detail).await?;
    }
    Ok(report)
}

/// Runs payouts every `every` until the task is dropped.
pub fn keep_paying(market: std::sync::Arc<Market>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = scheduled_run(&market).await {
                tracing::error!(%error, "payout run failed; the next one retries");
            }
        }
    })
}
