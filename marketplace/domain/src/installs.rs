//! Installs: a tenant's plugin at a version requirement, with the capabilities it consented
//! to, its settings and sealed secrets, and its status. New versions within the requirement
//! are taken automatically unless they request more than was granted; those wait for fresh
//! consent. Uninstalling keeps the row and its invocations.

use std::collections::{BTreeMap, HashMap};

use nexus_host::Grants;
use nexus_registry::db::is_unique_violation;
use nexus_registry::publishers::random_hex;
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{ErrorCode, PluginId, RegistryError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::catalog;
use crate::error::{MarketError, Page, PageQuery, storage};
use crate::market::Market;
use crate::secrets;

mod changes;
mod consent;
mod delivery;
pub(crate) mod lifecycle;
pub mod billing_state;

pub use changes::{
    InstallMoves, SettingsUpdate, approve_upgrade, follow_versions, moves_to, resume, uninstall, update_settings,
};
pub use consent::{Consent, DeclaredSetting, GrantConsent, RequestedCapability, RequestedHost, preview};
pub use delivery::{
    Target, open_secrets, record_health, target_by_id, target_of, targets, targets_by_ids, targets_read,
};

/// Settings and secrets an install may hold, and how large each may be.
pub const MAX_SETTINGS: usize = 64;
pub const MAX_SETTING_KEY_BYTES: usize = 64;
pub const MAX_SETTING_VALUE_BYTES: usize = 4096;

/// Consecutive failures after which an install is paused for its tenant.
pub const FAILURES_BEFORE_PAUSE: i64 = 5;

/// Where an install stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstallStatus {
    /// Receives its events.
    Active,
    /// Owes a charge that fell due when it was installed or changed plan and is not
    /// collected yet: receives no events until it is (the billing run retries on the
    /// schedule; once the retries are used up it is paused for payment). A paid plugin never
    /// runs unpaid.
    PendingPayment,
    /// Receives none until resumed (by its tenant, or by settling what it owes);
    /// `status_reason` says why.
    Paused,
    /// Gone; kept as history with its invocations and charges.
    Uninstalled,
}

impl InstallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::PendingPayment => "pending_payment",
            Self::Paused => "paused",
            Self::Uninstalled => "uninstalled",
        }
    }

    /// A status as stored.
    pub(crate) fn stored(text: &str) -> Result<Self, MarketError> {
        [Self::Active, Self::PendingPayment, Self::Paused, Self::Uninstalled]
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| storage(format!("stored install status `{text}`")))
    }
}

/// Why a paused install is paused: the one value that decides who may resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PauseCause {
    /// Its payment retries are used up: it runs again once its tenant settles
    /// (`POST /v1/installs/{id}/settle`), never by a plain resume.
    Payment,
    /// It failed too many times in a row (the circuit breaker): its tenant resumes it.
    Failures,
}

impl PauseCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Failures => "failures",
        }
    }

    /// A cause as stored.
    pub(crate) fn stored(text: &str) -> Result<Self, MarketError> {
        [Self::Payment, Self::Failures]
            .into_iter()
            .find(|cause| cause.as_str() == text)
            .ok_or_else(|| storage(format!("stored pause cause `{text}`")))
    }
}

impl std::fmt::Display for InstallStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An install as its tenant (and operators) see it. Secrets appear by name only. The CLI
/// reads it back with the same type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Install {
    pub id: String,
    pub tenant: String,
    pub plugin: String,
    pub requirement: String,
    pub version: String,
    /// The plan key, and the revision the install pays (`pln_…`; see `/v1/plugins/{p}/plans`).
    pub plan: String,
    pub plan_id: Option<String>,
    /// When a trial ends: nothing is charged before.
    pub trial_ends_at: Option<i64>,
    pub status: InstallStatus,
    pub status_reason: Option<String>,
    /// Set while paused: why (`payment` or `failures`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_for: Option<PauseCause>,
    #[schema(value_type = Object)]
    pub grants: Grants,
    pub event_types: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub secret_names: Vec<String>,
    pub consecutive_failures: i64,
    pub pending_upgrade: Option<PendingUpgrade>,
    /// A newer version outside the requirement, which the install will not move to until
    /// its tenant changes the requirement (`PATCH /v1/installs/{id}` with `requirement`).
    #[serde(default)]
    pub newer_version: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub uninstalled_at: Option<i64>,
}

/// A newer version within the requirement that asks for more than was granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingUpgrade {
    pub version: String,
    pub reason: String,
}

/// `POST /v1/installs`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// `publisher/name`.
    pub plugin: String,
    /// A semver requirement such as `^1.2`; default: the newest version's major (`^1`, or
    /// `^0.3` for 0.3.x), so that breaking releases wait for the tenant.
    #[serde(default)]
    pub requirement: Option<String>,
    #[serde(default)]
    pub consent: Option<GrantConsent>,
    /// A pricing plan id from the manifest; default the first plan.
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

fn check_settings<'a>(
    what: &str,
    entries: impl ExactSizeIterator<Item = (&'a String, Option<&'a String>)>,
) -> Result<(), MarketError> {
    if entries.len() > MAX_SETTINGS {
        return Err(MarketError::invalid(ErrorCode::InvalidSettings, format!("at most {MAX_SETTINGS} {what} entries")));
    }
    for (key, value) in entries {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_SETTING_KEY_BYTES
            && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !key_ok {
            return Err(MarketError::invalid(
                ErrorCode::InvalidSettings,
                format!("{what} key `{key}` must be 1-{MAX_SETTING_KEY_BYTES} of letters, digits, '-', '_', '.'"),
            ));
        }
        if value.is_some_and(|v| v.len() > MAX_SETTING_VALUE_BYTES) {
            return Err(MarketError::invalid(
                ErrorCode::InvalidSettings,
                format!("{what} `{key}` is longer than {MAX_SETTING_VALUE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

fn plugin_id(text: &str) -> Result<PluginId, MarketError> {
    text.parse::<PluginId>().map_err(|e| RegistryError::from(e).into())
}

/// Installs a plugin for the calling tenant.
pub async fn create(market: &Market, caller: &Caller, request: InstallRequest) -> Result<Install, MarketError> {
    let tenant = caller.tenant(TenantScope::Installs)?.clone();
    let id = plugin_id(&request.plugin)?;
    if !catalog::is_installable(&market.db, &id).await? {
        return Err(MarketError::conflict(
            ErrorCode::PluginDelisted,
            format!("{id} is delisted and cannot be installed"),
        ));
    }
    let requested = request.requirement.clone().unwrap_or_else(|| "*".to_string());
    let requirement = parse_requirement(&requested).map_err(RegistryError::from)?;
    let record = crate::dev_versions::resolve_for(market, &tenant, &id, &requirement).await?;
    // No requirement: the newest version's major (a 0.x minor), so that a breaking
    // release waits for the tenant to choose it.
    let requirement_text = match &request.requirement {
        Some(text) => text.clone(),
        None => same_major(&record.version),
    };
    let consent = Consent::of(&record);
    if !request.consent.as_ref().is_some_and(|answer| consent.is_covered_by(answer)) {
        return Err(consent.required("installing needs consent"));
    }
    let plan = crate::billing::plans::choose(market, &id, request.plan.as_deref()).await?;
    check_settings("config", request.config.iter().map(|(k, v)| (k, Some(v))))?;
    check_settings("secret", request.secrets.iter().map(|(k, v)| (k, Some(v))))?;
    consent.check_required(&request.config, &request.secrets)?;
    market.registry.verify_signature(&id, &record).await?;

    let install_id = format!("ins_{}", random_hex(8)?);
    let sealed = if request.secrets.is_empty() {
        None
    } else {
        Some(secrets::seal(&market.master_key, &install_id, &request.secrets).map_err(storage)?)
    };
    let grants = consent.grants();
    let now = market.billing.clock.now_ms();
    // What is due at install (a one-time price, a first period) is charged and collected
    // before the install runs anything; free and usage plans owe nothing yet.
    let due_now = plan.model == crate::billing::plans::PlanModel::OneTime || plan.charges_periods();
    let status = if due_now { InstallStatus::PendingPayment } else { InstallStatus::Active };
    let mut tx = market.db.write_tx().await?;
    let inserted = sqlx::query(
        "INSERT INTO installs (id, tenant_id, plugin_id, requirement, version, digest, event_types, grants, plan, \
         config, secrets_sealed, secret_names, status, created_at, updated_at, ordered_delivery) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)",
    )
    .bind(&install_id)
    .bind(tenant.as_str())
    .bind(id.to_string())
    .bind(&requirement_text)
    .bind(record.version.to_string())
    .bind(record.digest.to_string())
    .bind(json_text(&record.manifest.event_types))
    .bind(json_text(&grants))
    .bind(&plan.key)
    .bind(json_text(&request.config))
    .bind(sealed)
    .bind(json_text(&request.secrets.keys().collect::<Vec<_>>()))
    .bind(status.as_str())
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
    crate::runner::schedules::set_for_install(&mut tx, &install_id, tenant.as_str(), &record.manifest.schedules, now)
        .await?;
    crate::billing::run::start_install(&mut tx, market, &install_id, tenant.as_str(), &id.to_string(), &plan).await?;
    let detail = json!({
        "plugin": id.to_string(), "version": record.version.to_string(), "requirement": requirement_text,
        "plan": plan.key, "plan_revision": plan.revision, "grants": grants, "secret_names": request.secrets.keys().collect::<Vec<_>>(),
    });
    audit::record(&mut *tx, &caller.actor(), "install.created", &install_id, detail).await?;
    market.db.note_location(&mut tx, &format!("/v1/installs/{install_id}")).await?;
    tx.commit().await?;
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

/// A transaction that will write (`Db::write_tx`); `FOR UPDATE` is what locks rows on
/// PostgreSQL (empty on SQLite, where the write lock covers the database).
async fn write_tx(market: &Market) -> Result<sqlx::Transaction<'static, sqlx::Any>, MarketError> {
    Ok(market.db.write_tx().await?)
}

/// Fails with `uninstalled` unless exactly one live row changed.
fn changed_live(result: sqlx::any::AnyQueryResult, id: &str) -> Result<(), MarketError> {
    if result.rows_affected() == 1 {
        Ok(())
    } else {
        Err(MarketError::conflict(ErrorCode::Uninstalled, format!("install {id} was uninstalled")))
    }
}

fn json_text(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A JSON column's text, parsed.
fn json_field<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Result<T, MarketError> {
    serde_json::from_str(text).map_err(|e| storage(format!("stored {column}: {e}")))
}

const COLUMNS: &str = "id, tenant_id, plugin_id, requirement, version, digest, event_types, grants, plan, config, \
                       secrets_sealed, secret_names, status, status_reason, paused_for, consecutive_failures, pending_version, \
                       pending_reason, created_at, updated_at, uninstalled_at, plan_id, trial_ends_at";

/// A row of [`COLUMNS`], as stored: its status, pause cause and JSON columns still text.
#[derive(sqlx::FromRow)]
struct InstallRow {
    id: String,
    tenant_id: String,
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
            id: row.id,
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
async fn visible_row(market: &Market, caller: &Caller, id: &str) -> Result<InstallRow, MarketError> {
    let row = sqlx::query_as::<_, InstallRow>(&format!("SELECT {COLUMNS} FROM installs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("install {id}")))?;
    let tenant: TenantId = row.tenant_id.parse()?;
    match caller {
        Caller::Operator { .. } => Ok(row),
        Caller::Tenant { tenant: own, .. } if *own == tenant => Ok(row),
        Caller::Tenant { .. } => Err(MarketError::NotFound(format!("install {id}"))),
        Caller::Publisher(_) => Err(MarketError::Forbidden("installs belong to tenants".into())),
    }
}

/// The install, for domain code that checked the caller itself (billing's tenant actions).
pub(crate) async fn get_checked_elsewhere(market: &Market, id: &str) -> Result<Install, MarketError> {
    let row = sqlx::query_as::<_, InstallRow>(&format!("SELECT {COLUMNS} FROM installs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("install {id}")))?;
    Install::try_from(row)
}

pub async fn get(market: &Market, caller: &Caller, id: &str) -> Result<Install, MarketError> {
    if let Caller::Tenant { .. } = caller {
        caller.tenant(TenantScope::Read)?;
    }
    let mut installs = [Install::try_from(visible_row(market, caller, id).await?)?];
    note_newer_versions(market, &mut installs).await?;
    let [install] = installs;
    Ok(install)
}

/// The caret requirement of `version`'s major: `^2` for 2.x, `^0.3` for 0.3.x, `^0.0.4`
/// for 0.0.4 (caret ranges treat the first non-zero part as the major).
pub fn same_major(version: &semver::Version) -> String {
    match (version.major, version.minor) {
        (0, 0) => format!("^0.0.{}", version.patch),
        (0, minor) => format!("^0.{minor}"),
        (major, _) => format!("^{major}"),
    }
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
