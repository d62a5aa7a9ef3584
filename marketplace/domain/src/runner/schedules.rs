//! Plugins' schedules: each active install of a version whose manifest declares
//! `[[schedules]]` receives a `schedule.tick` event at every slot of each cron expression
//! (UTC), through the queue of asynchronous events, so it is retried, logged and replayed like
//! any other.
//!
//! - The slots of an install live in `install_schedules`, written by installs with the
//!   install's version (`installs::schedules::set_for_install`, in the transaction that installs
//!   or moves it). Every node's worker looks for due rows each turn (`fire_due`).
//! - **Exactly once per slot across nodes**: a slot fires in the transaction that moves the
//!   row's `next_slot_at` past it, guarded by its old value (of two nodes one moves it), and its
//!   event id is made from the install, the schedule and the slot, so even a second writer
//!   would queue nothing.
//! - **Missed slots** (the marketplace was down): `skip` fires only the latest, `catch-up`
//!   each, at most [`MAX_CATCH_UP`] (the latest ones). A paused install's slots pass without
//!   firing; an uninstalled one's schedules are removed.

use nexus_host::Event;
use nexus_registry::cron::Cron;
use nexus_registry::manifest::{Missed, SCHEDULE_TICK};
use serde_json::json;

use super::queue;
use crate::accounts::TenantId;
use crate::error::{MarketError, storage};
use crate::ids::DeliveryId;
use crate::installs::{self, InstallStatus};
use crate::market::Market;

/// The most missed slots one schedule catches up at once.
pub const MAX_CATCH_UP: usize = 100;
/// Rows one turn looks at.
const BATCH: i64 = 100;

/// The slots due from `next` up to `now`: all of them for `catch-up` (the latest
/// [`MAX_CATCH_UP`]), the latest for `skip`.
fn due_slots(cron: &Cron, next: i64, now: i64, missed: Missed) -> Vec<i64> {
    let mut slots = Vec::new();
    let mut slot = next;
    while slot <= now {
        slots.push(slot);
        if slots.len() > MAX_CATCH_UP {
            slots.remove(0);
        }
        slot = cron.next_after(slot);
    }
    match missed {
        Missed::CatchUp => slots,
        Missed::Skip => slots.pop().into_iter().collect(),
    }
}

/// A due row of `install_schedules`.
#[derive(sqlx::FromRow)]
struct ScheduleRow {
    install_id: String,
    schedule_id: String,
    tenant_id: String,
    cron: String,
    missed: String,
    next_slot_at: i64,
}

/// Fires the due slots of every schedule; returns how many ticks it queued.
pub async fn fire_due(market: &Market) -> Result<usize, MarketError> {
    let now = market.billing.clock.now_ms();
    let rows = sqlx::query_as::<_, ScheduleRow>(
        "SELECT install_id, schedule_id, tenant_id, cron, missed, next_slot_at FROM install_schedules \
         WHERE next_slot_at <= $1 ORDER BY next_slot_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(&market.db.pool)
    .await?;
    let mut fired = 0;
    for row in rows {
        fired += fire_row(market, row, now).await?;
    }
    if fired > 0 {
        market.runner.wake_workers();
    }
    Ok(fired)
}

/// Fires the due slots of one schedule, in the transaction that moves its row past them;
/// returns how many ticks it queued.
async fn fire_row(market: &Market, row: ScheduleRow, now: i64) -> Result<usize, MarketError> {
    let ScheduleRow { install_id: install, schedule_id: schedule, tenant_id, cron, missed, next_slot_at: next } = row;
    let tenant: TenantId = tenant_id.parse()?;
    let cron = Cron::parse(&cron).map_err(storage)?;
    let missed = match missed.as_str() {
        "catch-up" => Missed::CatchUp,
        _ => Missed::Skip,
    };
    let target = installs::target_by_id(market, &install).await?;
    if target.as_ref().is_none_or(|t| t.status == InstallStatus::Uninstalled) {
        sqlx::query("DELETE FROM install_schedules WHERE install_id = $1")
            .bind(&install)
            .execute(market.db.writer())
            .await?;
        return Ok(0);
    }
    let running = target.as_ref().is_some_and(|t| t.status == InstallStatus::Active);
    let slots = if running { due_slots(&cron, next, now, missed) } else { Vec::new() };
    let mut tx = market.db.write_tx().await?;
    let moved = sqlx::query(
        "UPDATE install_schedules SET next_slot_at = $1 WHERE install_id = $2 AND schedule_id = $3 \
         AND next_slot_at = $4",
    )
    .bind(cron.next_after(now))
    .bind(&install)
    .bind(&schedule)
    .bind(next)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        // Another node fired these slots.
        tx.rollback().await?;
        return Ok(0);
    }
    let mut fired = 0;
    if let Some(target) = target.as_ref().filter(|_| running) {
        for slot in &slots {
            if queue_tick(&mut tx, &tenant, target, &install, &schedule, *slot, now).await? {
                fired += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(fired)
}

/// Queues the `schedule.tick` of `slot` of an install's schedule for `target` in `tx`; false
/// if that slot's event was queued already.
async fn queue_tick(
    tx: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    target: &installs::Target,
    install: &str,
    schedule: &str,
    slot: i64,
    now: i64,
) -> Result<bool, MarketError> {
    let payload = json!({ "schedule": schedule, "slot": crate::timestamps::iso(slot), "slot_ms": slot,
                          "late_ms": now - slot });
    let event = Event {
        id: format!("sched_{install}_{schedule}_{slot}"),
        event_type: SCHEDULE_TICK.to_string(),
        payload: payload.to_string(),
    };
    let delivery = DeliveryId::ordered()?;
    queue::insert_event(tx, tenant, &event, &[(&delivery, target)], now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_slots_are_skipped_to_the_latest_or_caught_up_to_the_limit() {
        let every_minute = Cron::parse("* * * * *").unwrap();
        let (start, minute) = (1_800_000_000_000, 60_000);
        assert_eq!(due_slots(&every_minute, start, start - 1, Missed::CatchUp), Vec::<i64>::new());
        assert_eq!(
            due_slots(&every_minute, start, start + 2 * minute, Missed::CatchUp),
            [start, start + minute, start + 2 * minute]
        );
        assert_eq!(due_slots(&every_minute, start, start + 2 * minute + 5, Missed::Skip), [start + 2 * minute]);
        let many = due_slots(&every_minute, start, start + 500 * minute, Missed::CatchUp);
        assert_eq!(
            (many.len(), many[0], *many.last().unwrap()),
            (MAX_CATCH_UP, start + 401 * minute, start + 500 * minute)
        );
    }
}
