//! Installing a plugin: the request checked (installable, a version within the requirement,
//! consent, plan, settings, signature), then the row and what starts with it written in one
//! transaction, then what is due at install collected outside it.

use nexus_host::Grants;
use nexus_registry::db::is_unique_violation;
use nexus_registry::publishers::random_hex;
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{ErrorCode, PluginId, RegistryError, VersionRecord};
use serde_json::json;

use super::consent::Consent;
use super::{Install, InstallRequest, InstallStatus, check_settings, get, json_text, plugin_id, same_major};
use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::catalog;
use crate::error::{MarketError, storage};
use crate::market::Market;
use crate::plans::{Plan, PlanModel};
use crate::secrets;

/// Installs a plugin for the calling tenant.
pub async fn create(market: &Market, caller: &Caller, request: InstallRequest) -> Result<Install, MarketError> {
    let tenant = caller.tenant(TenantScope::Installs)?.clone();
    let checked = check(market, &tenant, &request).await?;
    let install_id = format!("ins_{}", random_hex(8)?);
    let sealed = if request.secrets.is_empty() {
        None
    } else {
        Some(secrets::seal(&market.master_key, &install_id, &request.secrets).map_err(storage)?)
    };
    let grants = checked.consent.grants();
    let now = market.billing.clock.now_ms();
    // What is due at install (a one-time price, a first period) is charged and collected
    // before the install runs anything; free and usage plans owe nothing yet.
    let due_now = checked.plan.model == PlanModel::OneTime || checked.plan.charges_periods();
    let status = if due_now { InstallStatus::PendingPayment } else { InstallStatus::Active };
    let row = NewRow { id: &install_id, tenant: &tenant, checked: &checked, grants: &grants, sealed, status, now };
    write(market, caller, &request, row).await?;
    if due_now {
        // Collected now, in this request; what fails here (a decline, an unreachable
        // provider) leaves the install `pending_payment` for the billing run's retries.
        let now = market.billing.clock.now_ms();
        if let Err(error) = crate::billing::settle::settle_now(market, &install_id, now).await {
            tracing::warn!(install = %install_id, %error, "charges due at install left to the next billing run");
        }
    }
    get(market, caller, &install_id).await
}

/// What an install request resolved to, once checked.
struct Checked {
    id: PluginId,
    record: VersionRecord,
    /// The requirement as stored: as asked, or the chosen version's major.
    requirement: String,
    consent: Consent,
    plan: Plan,
}

/// Checks `request` before anything is written: the plugin installable, a version within
/// the requirement, consent covering it, the plan, the settings and secrets, the signature.
async fn check(market: &Market, tenant: &TenantId, request: &InstallRequest) -> Result<Checked, MarketError> {
    let id = plugin_id(&request.plugin)?;
    if !catalog::is_installable(&market.db, &id).await? {
        return Err(MarketError::conflict(
            ErrorCode::PluginDelisted,
            format!("{id} is delisted and cannot be installed"),
        ));
    }
    let requested = request.requirement.clone().unwrap_or_else(|| "*".to_string());
    let requirement = parse_requirement(&requested).map_err(RegistryError::from)?;
    let record = crate::dev_tenants::resolve_for(market, tenant, &id, &requirement).await?;
    // No requirement: the newest version's major (a 0.x minor), so that a breaking
    // release waits for the tenant to choose it.
    let requirement = match &request.requirement {
        Some(text) => text.clone(),
        None => same_major(&record.version),
    };
    let consent = Consent::of(&record);
    if !request.consent.as_ref().is_some_and(|answer| consent.is_covered_by(answer)) {
        return Err(consent.required("installing needs consent"));
    }
    let plan = crate::plans::choose(market, &id, request.plan.as_deref()).await?;
    check_settings("config", request.config.iter().map(|(k, v)| (k, Some(v))))?;
    check_settings("secret", request.secrets.iter().map(|(k, v)| (k, Some(v))))?;
    consent.check_required(&request.config, &request.secrets)?;
    market.registry.verify_signature(&id, &record).await?;
    Ok(Checked { id, record, requirement, consent, plan })
}

/// The install's row as it is first written.
struct NewRow<'a> {
    id: &'a str,
    tenant: &'a TenantId,
    checked: &'a Checked,
    grants: &'a Grants,
    sealed: Option<String>,
    status: InstallStatus,
    now: i64,
}

/// Writes the install in one transaction: its row (refused if the tenant has the plugin
/// installed already), the plugin's install count, its schedules, its billing, the audit
/// entry and the request's location.
async fn write(market: &Market, caller: &Caller, request: &InstallRequest, row: NewRow<'_>) -> Result<(), MarketError> {
    let NewRow { id: install_id, tenant, checked, grants, .. } = row;
    let Checked { id, record, requirement, plan, .. } = checked;
    let now = row.now;
    let mut tx = market.db.write_tx().await?;
    let inserted = sqlx::query(
        "INSERT INTO installs (id, tenant_id, plugin_id, requirement, version, digest, event_types, grants, plan, \
         config, secrets_sealed, secret_names, status, created_at, updated_at, ordered_delivery) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)",
    )
    .bind(install_id)
    .bind(tenant.as_str())
    .bind(id.to_string())
    .bind(requirement)
    .bind(record.version.to_string())
    .bind(record.digest.to_string())
    .bind(json_text(&record.manifest.event_types))
    .bind(json_text(grants))
    .bind(&plan.key)
    .bind(json_text(&request.config))
    .bind(row.sealed)
    .bind(json_text(&request.secrets.keys().collect::<Vec<_>>()))
    .bind(row.status.as_str())
    .bind(now)
    .bind(i64::from(record.manifest.ordered_delivery))
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(error) if is_unique_violation(&error) => {
            return Err(MarketError::conflict(
                ErrorCode::AlreadyInstalled,
                format!("tenant {tenant} already has {id} installed; change it or uninstall it first"),
            ));
        }
        other => other?,
    };
    catalog::count_install(&mut *tx, &id.to_string(), 1).await?;
    crate::runner::schedules::set_for_install(&mut tx, install_id, tenant.as_str(), &record.manifest.schedules, now)
        .await?;
    crate::billing::run::start_install(&mut tx, market, install_id, tenant.as_str(), &id.to_string(), plan).await?;
    let detail = json!({
        "plugin": id.to_string(), "version": record.version.to_string(), "requirement": requirement,
        "plan": plan.key, "plan_revision": plan.revision, "grants": grants, "secret_names": request.secrets.keys().collect::<Vec<_>>(),
    });
    audit::record(&mut *tx, &caller.actor(), "install.created", install_id, detail).await?;
    market.db.note_location(&mut tx, &format!("/v1/installs/{install_id}")).await?;
    tx.commit().await?;
    Ok(())
}
