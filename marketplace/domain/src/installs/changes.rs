//! Changing an install: settings and secrets, approving an upgrade, resuming, uninstalling,
//! and following new versions of its plugin. Every update says in SQL which state it expects,
//! so concurrent changes cannot both apply.

use std::collections::BTreeMap;

use nexus_host::Grants;
use nexus_registry::db::now_ms;
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{ErrorCode, PluginId, RegistryError, VersionRecord};
use serde::Deserialize;
use serde_json::json;

use super::consent::{Consent, GrantConsent};
use super::follow::follow_versions;
use super::{Install, InstallStatus, changed_live, check_settings, get, json_text, plugin_id, visible_row, write_tx};
use crate::accounts::{Caller, TenantScope};
use crate::audit;
use crate::catalog;
use crate::error::{MarketError, storage};
use crate::ids::InstallId;
use crate::market::Market;
use crate::secrets;

/// `PATCH /v1/installs/{id}`: `config` replaces the settings; each secret is set, or
/// removed when null.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, Option<String>>,
    /// A new version requirement, such as `^0.2`: the install keeps its id, KV data,
    /// settings and secrets, and moves to the best version within it (or waits for consent
    /// if that asks for more than was granted).
    #[serde(default)]
    pub requirement: Option<String>,
}

/// The install, which must be the caller tenant's own and not uninstalled, for a change.
async fn changeable(market: &Market, caller: &Caller, id: &InstallId) -> Result<Install, MarketError> {
    caller.tenant(TenantScope::Installs)?;
    let install = Install::try_from(visible_row(market, caller, id).await?)?;
    if install.status == InstallStatus::Uninstalled {
        return Err(MarketError::conflict(ErrorCode::Uninstalled, format!("install {id} was uninstalled")));
    }
    Ok(install)
}

/// Replaces the config and sets or removes secrets.
pub async fn update_settings(
    market: &Market,
    caller: &Caller,
    id: &InstallId,
    update: SettingsUpdate,
) -> Result<Install, MarketError> {
    let current = changeable(market, caller, id).await?;
    if let Some(config) = &update.config {
        check_settings("config", config.iter().map(|(k, v)| (k, Some(v))))?;
    }
    check_settings("secret", update.secrets.iter().map(|(k, v)| (k, v.as_ref())))?;
    let plugin: PluginId = current.plugin.parse().map_err(RegistryError::from)?;
    if let Some(text) = &update.requirement {
        // Refused before anything is written when no version satisfies it.
        let requirement = parse_requirement(text).map_err(RegistryError::from)?;
        crate::dev_tenants::resolve_for(market, &current.tenant, &plugin, &requirement).await?;
    }
    let mut tx = write_tx(market).await?;
    if let Some(requirement) = &update.requirement {
        set_requirement(&mut tx, caller, id.as_str(), &current.requirement, requirement).await?;
    }
    if let Some(config) = &update.config {
        set_config(&mut tx, caller, id.as_str(), config).await?;
    }
    if !update.secrets.is_empty() {
        set_secrets(&mut tx, market, caller, id.as_str(), &update.secrets).await?;
    }
    tx.commit().await?;
    if update.requirement.is_some() {
        follow_versions(market, &plugin).await?;
    }
    get(market, caller, id).await
}

/// Sets the live install's requirement (`from` before), audited, in `tx`.
async fn set_requirement(
    tx: &mut sqlx::AnyConnection,
    caller: &Caller,
    id: &str,
    from: &str,
    requirement: &str,
) -> Result<(), MarketError> {
    let changed =
        sqlx::query("UPDATE installs SET requirement = $1, updated_at = $2 WHERE id = $3 AND status <> 'uninstalled'")
            .bind(requirement)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    changed_live(changed, id)?;
    let detail = json!({ "from": from, "to": requirement });
    audit::record(&mut *tx, &caller.actor(), "install.requirement_changed", id, detail).await?;
    Ok(())
}

/// Replaces the live install's config, audited (its keys only), in `tx`.
async fn set_config(
    tx: &mut sqlx::AnyConnection,
    caller: &Caller,
    id: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), MarketError> {
    let changed =
        sqlx::query("UPDATE installs SET config = $1, updated_at = $2 WHERE id = $3 AND status <> 'uninstalled'")
            .bind(json_text(config))
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    changed_live(changed, id)?;
    let keys: Vec<&String> = config.keys().collect();
    audit::record(&mut *tx, &caller.actor(), "install.config_changed", id, json!({ "keys": keys })).await?;
    Ok(())
}

/// Sets (or, for `None`, removes) the live install's secrets named in `secrets`, sealed
/// again as a whole, audited (their names only), in `tx`.
async fn set_secrets(
    tx: &mut sqlx::AnyConnection,
    market: &Market,
    caller: &Caller,
    id: &str,
    secrets: &BTreeMap<String, Option<String>>,
) -> Result<(), MarketError> {
    // Locked until commit: two concurrent changes must not both start from the old set.
    let select = format!("SELECT secrets_sealed FROM installs WHERE id = $1{}", market.db.for_update());
    let sealed: Option<String> = sqlx::query_scalar(&select).bind(id).fetch_one(&mut *tx).await?;
    let mut values = match sealed {
        Some(sealed) => secrets::open(&market.master_key, id, &sealed).map_err(storage)?,
        None => BTreeMap::new(),
    };
    for (name, value) in secrets {
        match value {
            Some(value) => values.insert(name.clone(), value.clone()),
            None => values.remove(name),
        };
    }
    check_settings("secret", values.iter().map(|(k, v)| (k, Some(v))))?;
    let sealed =
        if values.is_empty() { None } else { Some(secrets::seal(&market.master_key, id, &values).map_err(storage)?) };
    let changed = sqlx::query(
        "UPDATE installs SET secrets_sealed = $1, secret_names = $2, updated_at = $3 \
         WHERE id = $4 AND status <> 'uninstalled'",
    )
    .bind(sealed)
    .bind(json_text(&values.keys().collect::<Vec<_>>()))
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    changed_live(changed, id)?;
    let changed: BTreeMap<&String, &str> =
        secrets.iter().map(|(k, v)| (k, if v.is_some() { "set" } else { "removed" })).collect();
    audit::record(&mut *tx, &caller.actor(), "install.secrets_changed", id, json!({ "secrets": changed })).await?;
    Ok(())
}

/// Moves the install to its pending version, with the tenant's consent to what it adds.
pub async fn approve_upgrade(
    market: &Market,
    caller: &Caller,
    id: &InstallId,
    answer: &GrantConsent,
) -> Result<Install, MarketError> {
    let current = changeable(market, caller, id).await?;
    let Some(pending) = &current.pending_upgrade else {
        return Err(MarketError::conflict(ErrorCode::NoPendingUpgrade, format!("install {id} has no upgrade waiting")));
    };
    let plugin = plugin_id(&current.plugin)?;
    let version = pending.version.parse().map_err(|_| RegistryError::InvalidVersion(pending.version.clone()))?;
    let record = market.registry.version(&plugin, &version).await?;
    let consent = Consent::of(&record);
    if !consent.is_covered_by(answer) {
        return Err(consent.required("upgrading needs consent"));
    }
    market.registry.verify_signature(&plugin, &record).await?;
    let mut tx = write_tx(market).await?;
    if !set_version(
        &mut tx,
        id.as_str(),
        &current.version,
        &record,
        Some(&consent.grants()),
        market.billing.clock.now_ms(),
    )
    .await?
    {
        return Err(MarketError::conflict(
            ErrorCode::InstallChanged,
            format!("install {id} changed meanwhile; look again"),
        ));
    }
    let detail = json!({ "from": current.version, "to": record.version.to_string(), "grants": consent.grants() });
    audit::record(&mut *tx, &caller.actor(), "install.upgrade_approved", id.as_str(), detail).await?;
    tx.commit().await?;
    get(market, caller, id).await
}

/// Moves a live install from version `from` to `record`'s; false if it is no longer on `from`
/// (another node moved it first) or was uninstalled.
pub(super) async fn set_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    from: &str,
    record: &VersionRecord,
    grants: Option<&Grants>,
    now: i64,
) -> Result<bool, MarketError> {
    let changed = sqlx::query(
        "UPDATE installs SET version = $1, digest = $2, event_types = $3, grants = COALESCE($4, grants), \
         pending_version = NULL, pending_reason = NULL, updated_at = $5, ordered_delivery = $8 \
         WHERE id = $6 AND version = $7 AND status <> 'uninstalled'",
    )
    .bind(record.version.to_string())
    .bind(record.digest.to_string())
    .bind(json_text(&record.manifest.event_types))
    .bind(grants.map(json_text))
    .bind(now_ms())
    .bind(id)
    .bind(from)
    .bind(i64::from(record.manifest.ordered_delivery))
    .execute(&mut **tx)
    .await?;
    if changed.rows_affected() != 1 {
        return Ok(false);
    }
    let tenant: crate::accounts::TenantId =
        sqlx::query_scalar("SELECT tenant_id FROM installs WHERE id = $1").bind(id).fetch_one(&mut **tx).await?;
    super::schedules::set_for_install(tx, id, &tenant, &record.manifest.schedules, now).await?;
    Ok(true)
}

/// Resumes a paused install.
pub async fn resume(market: &Market, caller: &Caller, id: &InstallId) -> Result<Install, MarketError> {
    let current = changeable(market, caller, id).await?;
    if current.status != InstallStatus::Paused {
        return Err(MarketError::conflict(ErrorCode::NotPaused, format!("install {id} is {}", current.status)));
    }
    if current.paused_for == Some(super::PauseCause::Payment) {
        return Err(MarketError::conflict(
            ErrorCode::PaymentOutstanding,
            format!("install {id} is paused until its failed charges are paid: POST /v1/installs/{id}/settle"),
        ));
    }
    let mut tx = write_tx(market).await?;
    let resumed = sqlx::query(
        "UPDATE installs SET status = 'active', status_reason = NULL, paused_for = NULL, consecutive_failures = 0, \
         updated_at = $1 WHERE id = $2 AND status = 'paused' AND (paused_for IS NULL OR paused_for <> 'payment')",
    )
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if resumed.rows_affected() != 1 {
        return Err(MarketError::conflict(ErrorCode::NotPaused, format!("install {id} is no longer paused")));
    }
    audit::record(&mut *tx, &caller.actor(), "install.resumed", id.as_str(), json!({ "was": current.status_reason }))
        .await?;
    tx.commit().await?;
    get(market, caller, id).await
}

/// Uninstalls: the row and its invocations stay as history; settings, secrets and the
/// plugin's KV data are deleted.
/// Uninstalling what is already uninstalled answers `not_found` (no live install), as deleting
/// a revoked token or key does.
pub async fn uninstall(market: &Market, caller: &Caller, id: &InstallId) -> Result<Install, MarketError> {
    let gone = |error| match error {
        MarketError::Conflict { code: ErrorCode::Uninstalled, .. } => {
            MarketError::NotFound(format!("live install {id}"))
        }
        other => other,
    };
    let current = changeable(market, caller, id).await.map_err(gone)?;
    let mut tx = write_tx(market).await?;
    // The billing clock: the final usage segment ends here and no period starts after it.
    let now = market.billing.clock.now_ms();
    let changed = sqlx::query(
        "UPDATE installs SET status = 'uninstalled', status_reason = NULL, paused_for = NULL, config = '{}', secrets_sealed = NULL, \
         secret_names = '[]', pending_version = NULL, pending_reason = NULL, uninstalled_at = $1, updated_at = $1 \
         WHERE id = $2 AND status <> 'uninstalled'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    // Of two concurrent uninstalls only one counts and audits.
    changed_live(changed, id.as_str()).map_err(gone)?;
    super::billing_state::stop(&mut tx, id.as_str(), now).await?;
    sqlx::query("DELETE FROM kv_entries WHERE tenant_id = $1 AND install_id = $2")
        .bind(&current.tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM kv_scopes WHERE tenant_id = $1 AND install_id = $2")
        .bind(&current.tenant)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    catalog::count_install(&mut *tx, &current.plugin, -1).await?;
    audit::record(&mut *tx, &caller.actor(), "install.uninstalled", id.as_str(), json!({ "plugin": current.plugin }))
        .await?;
    tx.commit().await?;
    get(market, caller, id).await
}
