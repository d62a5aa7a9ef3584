//! An install's schedules (`install_schedules`): written with the version it runs, in the
//! transaction that installs or moves it. Firing them is the runner's (`runner::schedules`).

use nexus_registry::cron::Cron;
use nexus_registry::manifest::Schedule;

use crate::accounts::TenantId;
use crate::error::{MarketError, storage};

/// Writes `install`'s schedules (those of the version it now runs), replacing what it had,
/// in the caller's transaction. The first slot is the first after `now`.
pub async fn set_for_install(
    tx: &mut sqlx::AnyConnection,
    install: &str,
    tenant: &TenantId,
    schedules: &[Schedule],
    now: i64,
) -> Result<(), MarketError> {
    sqlx::query("DELETE FROM install_schedules WHERE install_id = $1").bind(install).execute(&mut *tx).await?;
    for schedule in schedules {
        let cron = Cron::parse(&schedule.cron).map_err(|e| storage(format!("a published schedule: {e}")))?;
        sqlx::query(
            "INSERT INTO install_schedules (install_id, schedule_id, tenant_id, cron, missed, next_slot_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(install)
        .bind(&schedule.id)
        .bind(tenant)
        .bind(&schedule.cron)
        .bind(schedule.missed.as_str())
        .bind(cron.next_after(now))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
