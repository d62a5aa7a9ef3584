//! Buying an install: installs' steps (the request checked, the row written) and billing's
//! (the install's billing started, what is due at install collected) in the order and the
//! transactions of one purchase. Above installs and billing's run, which it orchestrates;
//! the install routes call it.

use crate::accounts::{Caller, TenantScope};
use crate::error::{MarketError, storage};
use crate::ids::InstallId;
use crate::installs::create::{self, Checked, NewRow};
use crate::installs::{self, Install, InstallRequest, InstallStatus};
use crate::market::Market;
use crate::plans::PlanModel;
use crate::secrets;

/// Installs a plugin for the calling tenant: the install checked, then written with the start
/// of its billing in one transaction, then what is due at install collected after the commit.
pub async fn install(market: &Market, caller: &Caller, request: InstallRequest) -> Result<Install, MarketError> {
    let tenant = caller.tenant(TenantScope::Installs)?.clone();
    let checked = create::check(market, &tenant, &request).await?;
    let install_id = InstallId::random()?;
    let sealed = if request.secrets.is_empty() {
        None
    } else {
        Some(secrets::seal(&market.master_key, install_id.as_str(), &request.secrets).map_err(storage)?)
    };
    let grants = checked.consent.grants();
    let now = market.billing.clock.now_ms();
    // What is due at install (a one-time price, a first period) is charged and collected
    // before the install runs anything; free and usage plans owe nothing yet.
    let due_now = checked.plan.model == PlanModel::OneTime || checked.plan.charges_periods();
    let status = if due_now { InstallStatus::PendingPayment } else { InstallStatus::Active };
    let row =
        NewRow { id: install_id.as_str(), tenant: &tenant, checked: &checked, grants: &grants, sealed, status, now };
    write(market, caller, &request, row).await?;
    if due_now {
        // Collected now, in this request; what fails here (a decline, an unreachable
        // provider) leaves the install `pending_payment` for the billing run's retries.
        let now = market.billing.clock.now_ms();
        if let Err(error) = super::settle::settle_now(market, install_id.as_str(), now).await {
            tracing::warn!(install = %install_id, %error, "charges due at install left to the next billing run");
        }
    }
    installs::get(market, caller, &install_id).await
}

/// Writes the install in one transaction: its row (refused if the tenant has the plugin
/// installed already), the plugin's install count, its schedules, its billing, the audit
/// entry and the request's location.
async fn write(market: &Market, caller: &Caller, request: &InstallRequest, row: NewRow<'_>) -> Result<(), MarketError> {
    let mut tx = market.db.write_tx().await?;
    create::insert_row(&mut tx, request, &row).await?;
    let Checked { id, plan, .. } = row.checked;
    super::run::start_install(&mut tx, market, row.id, row.tenant, &id.to_string(), plan).await?;
    create::record_created(&mut tx, market, caller, request, &row).await?;
    tx.commit().await?;
    Ok(())
}
