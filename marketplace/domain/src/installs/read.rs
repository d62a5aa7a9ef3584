//! Reading installs: their rows as stored, the caller's view of one, a tenant's list, and the
//! newer versions each could move to.

use std::collections::HashMap;

use nexus_registry::resolve::parse_requirement;
use nexus_registry::{PluginId, RegistryError};

use super::{Install, InstallStatus, PauseCause, PendingUpgrade, json_field};
use crate::accounts::{Caller, TenantId, TenantScope};
use crate::error::{MarketError, Page, PageQuery};
use crate::ids::InstallId;
use crate::market::Market;

pub(super) const COLUMNS: &str = "id, tenant_id, plugin_id, requirement, version, digest, event_types, grants, plan, config, \
                       secrets_sealed, secret_names, status, status_reason, paused_for, consecutive_failures, pending_version, \
                       pending_reason, created_at, updated_at, uninstalled_at, plan_id, trial_ends_at";

/// A row of [`COLUMNS`], as stored: its status, pause cause and JSON columns still text.
#[derive(sqlx::FromRow)]
pub(super) struct InstallRow {
    id: String,
    tenant_id: TenantId,
    plugin_id: String,
    requirement: String,
    version: String,
    event_types: String,
    grants: String,
    plan: String,
    config: String,
    secret_names: String,
    status: String,
    status_reason: Option<String>,
    paused_for: Option<String>,
    consecutive_failures: i64,
    pending_version: Option<String>,
    pending_reason: Option<String>,
    created_at: i64,
    updated_at: i64,
    uninstalled_at: Option<i64>,
    plan_id: Option<String>,
    trial_ends_at: Option<i64>,
}

impl TryFrom<InstallRow> for Install {
    type Error = MarketError;

    fn try_from(row: InstallRow) -> Result<Self, MarketError> {
        Ok(Install {
            id: InstallId::stored(row.id)?,
            tenant: row.tenant_id,
            plugin: row.plugin_id,
            requirement: row.requirement,
            version: row.version,
            plan: row.plan,
            plan_id: row.plan_id,
            trial_ends_at: row.trial_ends_at,
            status: InstallStatus::stored(&row.status)?,
            status_reason: row.status_reason,
            paused_for: row.paused_for.as_deref().map(PauseCause::stored).transpose()?,
            grants: json_field(&row.grants, "grants")?,
            event_types: json_field(&row.event_types, "event_types")?,
            config: json_field(&row.config, "config")?,
            secret_names: json_field(&row.secret_names, "secret_names")?,
            consecutive_failures: row.consecutive_failures,
            pending_upgrade: row
                .pending_version
                .map(|version| PendingUpgrade { version, reason: row.pending_reason.unwrap_or_default() }),
            newer_version: None,
            created_at: row.created_at,
            updated_at: row.updated_at,
            uninstalled_at: row.uninstalled_at,
        })
    }
}

/// The install's row, if the caller may see it: its own tenant with `read`, or an operator.
/// Another tenant's install is reported as not found, not as forbidden.
pub(super) async fn visible_row(market: &Market, caller: &Caller, id: &InstallId) -> Result<InstallRow, MarketError> {
    let row = sqlx::query_as::<_, InstallRow>(&format!("SELECT {COLUMNS} FROM installs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("install {id}")))?;
    match caller {
        Caller::Operator { .. } => Ok(row),
        Caller::Tenant { tenant: own, .. } if *own == row.tenant_id => Ok(row),
        Caller::Tenant { .. } => Err(MarketError::NotFound(format!("install {id}"))),
        Caller::Publisher(_) => Err(MarketError::Forbidden("installs belong to tenants".into())),
    }
}

/// The install, for domain code that checked the caller itself (billing's tenant actions).
pub(crate) async fn get_checked_elsewhere(market: &Market, id: &InstallId) -> Result<Install, MarketError> {
    let row = sqlx::query_as::<_, InstallRow>(&format!("SELECT {COLUMNS} FROM installs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("install {id}")))?;
    Install::try_from(row)
}

pub async fn get(market: &Market, caller: &Caller, id: &InstallId) -> Result<Install, MarketError> {
    if let Caller::Tenant { .. } = caller {
        caller.tenant(TenantScope::Read)?;
    }
    let mut installs = [Install::try_from(visible_row(market, caller, id).await?)?];
    note_newer_versions(market, &mut installs).await?;
    let [install] = installs;
    Ok(install)
}

/// Fills `newer_version`: the newest version of each install's plugin that is newer than
/// what it runs but outside its requirement (0.x caret ranges hide 0.2 from `^0.1`). One
/// version list per plugin.
async fn note_newer_versions(market: &Market, installs: &mut [Install]) -> Result<(), MarketError> {
    let mut newest: HashMap<String, Vec<semver::Version>> = HashMap::new();
    for install in installs.iter_mut() {
        if !newest.contains_key(&install.plugin) {
            let id: PluginId = install.plugin.parse().map_err(RegistryError::from)?;
            let versions = match market.registry.versions(&id).await {
                // Only development versions so far (`dev_versions.rs`): no release is newer.
                Err(RegistryError::NotFound(_)) => Vec::new(),
                other => other?,
            };
            let listed = versions.into_iter().filter(|v| v.yank.is_none()).map(|v| v.version).collect();
            newest.insert(install.plugin.clone(), listed);
        }
        let (Ok(current), Ok(requirement)) =
            (install.version.parse::<semver::Version>(), parse_requirement(&install.requirement))
        else {
            continue;
        };
        install.newer_version = newest[&install.plugin]
            .iter()
            .filter(|v| **v > current && !requirement.matches(v) && v.pre.is_empty())
            .max()
            .map(ToString::to_string);
    }
    Ok(())
}

/// A tenant's installs (`include_uninstalled` adds history). Operators name the tenant.
pub async fn list(
    market: &Market,
    caller: &Caller,
    tenant: Option<&TenantId>,
    include_uninstalled: bool,
    query: &PageQuery,
) -> Result<Page<Install>, MarketError> {
    let (page, per_page) = query.checked()?;
    let tenant = caller.tenant_to_read(tenant)?;
    let status = if include_uninstalled { "" } else { "AND status <> 'uninstalled'" };
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM installs WHERE tenant_id = $1 {status}"))
        .bind(tenant.as_str())
        .fetch_one(&market.db.pool)
        .await?;
    let rows = sqlx::query_as::<_, InstallRow>(&format!(
        "SELECT {COLUMNS} FROM installs WHERE tenant_id = $1 {status} ORDER BY created_at, id LIMIT $2 OFFSET $3"
    ))
    .bind(tenant.as_str())
    .bind(i64::from(per_page))
    .bind(i64::from(page - 1) * i64::from(per_page))
    .fetch_all(&market.db.pool)
    .await?;
    let mut items = rows.into_iter().map(Install::try_from).collect::<Result<Vec<_>, _>>()?;
    note_newer_versions(market, &mut items).await?;
    Ok(Page::new(items, page, per_page, total))
}
