//! Installing a plugin, the install's steps: the request checked (installable, a version
//! within the requirement, consent, plan, settings, signature), then the row and what starts
//! with it written in the caller's transaction. The purchase that runs these steps with
//! billing's (its start in the same transaction, what is due at install collected after the
//! commit) is `billing::purchase`.

use nexus_host::Grants;
use nexus_registry::db::is_unique_violation;
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{ErrorCode, PluginId, RegistryError, VersionRecord};
use serde_json::json;

use super::consent::Consent;
use super::{InstallRequest, InstallStatus, check_settings, json_text, plugin_id, same_major};
use crate::accounts::{Caller, TenantId};
use crate::audit;
use crate::catalog;
use crate::error::MarketError;
use crate::market::Market;
use crate::plans::Plan;

/// What an install request resolved to, once checked.
pub(crate) struct Checked {
    pub id: PluginId,
    pub record: VersionRecord,
    /// The requirement as stored: as asked, or the chosen version's major.
    pub requirement: String,
    pub consent: Consent,
    pub plan: Plan,
}

/// Checks `request` before anything is written: the plugin installable, a version within
/// the requirement, consent covering it, the plan, the settings and secrets, the signature.
pub(crate) async fn check(
    market: &Market,
    tenant: &TenantId,
    request: &InstallRequest,
) -> Result<Checked, MarketError> {
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
pub(crate) struct NewRow<'a> {
    pub id: &'a str,
    pub tenant: &'a TenantId,
    pub checked: &'a Checked,
    pub grants: &'a Grants,
    pub sealed: Option<String>,
    pub status: InstallStatus,
    pub now: i64,
}

/// Writes the install's row in `tx` (refused if the tenant has the plugin installed
/// already), the plugin's install count and the install's schedules.
pub(crate) async fn insert_row(
    tx: &mut sqlx::AnyConnection,
    request: &InstallRequest,
    row: &NewRow<'_>,
) -> Result<(), MarketError> {
    let NewRow { id: install_id, tenant, checked, grants, .. } = *row;
    let Checked { id, record, requirement, plan, .. } = checked;
    let now = row.now;
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
    .bind(row.sealed.clone())
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
    super::schedules::set_for_install(&mut *tx, install_id, tenant, &record.manifest.schedules, now).await?;
    Ok(())
}

/// Records the install's creation in `tx`: the audit entry and the request's location.
pub(crate) async fn record_created(
    tx: &mut sqlx::AnyConnection,
    market: &Market,
    caller: &Caller,
    request: &InstallRequest,
    row: &NewRow<'_>,
) -> Result<(), MarketError> {
    let NewRow { id: install_id, checked, grants, .. } = *row;
    let Checked { id, record, requirement, plan, .. } = checked;
    let detail = json!({
        "plugin": id.to_string(), "version": record.version.to_string(), "requirement": requirement,
        "plan": plan.key, "plan_revision": plan.revision, "grants": grants, "secret_names": request.secrets.keys().collect::<Vec<_>>(),
    });
    audit::record(&mut *tx, &caller.actor(), "install.created", install_id, detail).await?;
    market.db.note_location(tx, &format!("/v1/installs/{install_id}")).await?;
    Ok(())
}
