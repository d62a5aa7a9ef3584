//! Installs: a tenant's plugin at a version requirement, with the capabilities it consented
//! to, its settings and sealed secrets, and its status. New versions within the requirement
//! are taken automatically unless they request more than was granted; those wait for fresh
//! consent. Uninstalling keeps the row and its invocations.

use std::collections::{BTreeMap, BTreeSet};

use nexus_host::{Capability, Grants, HostPattern};
use nexus_registry::db::{is_unique_violation, now_ms};
use nexus_registry::publishers::random_hex;
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{Backend, PluginId, RegistryError, VersionRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::catalog;
use crate::error::{MarketError, storage};
use crate::market::Market;
use crate::secrets;

/// Settings and secrets an install may hold, and how large each may be.
pub const MAX_SETTINGS: usize = 64;
pub const MAX_SETTING_KEY_BYTES: usize = 64;
pub const MAX_SETTING_VALUE_BYTES: usize = 4096;

/// Consecutive failures after which an install is paused for its tenant.
pub const FAILURES_BEFORE_PAUSE: i64 = 5;

/// What installing (or upgrading to) a version asks the tenant to consent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consent {
    pub plugin: String,
    pub version: String,
    pub capabilities: Vec<RequestedCapability>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestedCapability {
    #[schema(value_type = String)]
    pub capability: Capability,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<RequestedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestedHost {
    pub host: String,
    pub reason: String,
}

/// The tenant's answer: every capability and host it agrees to grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantConsent {
    #[schema(value_type = Vec<String>)]
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    #[serde(default)]
    pub hosts: BTreeSet<String>,
}

impl Consent {
    pub fn of(record: &VersionRecord) -> Self {
        let capabilities = record
            .manifest
            .capabilities
            .iter()
            .map(|(capability, request)| RequestedCapability {
                capability: *capability,
                reason: request.reason.clone(),
                hosts: request
                    .hosts
                    .iter()
                    .map(|h| RequestedHost { host: h.host.to_string(), reason: h.reason.clone() })
                    .collect(),
            })
            .collect();
        Self { plugin: record.id.clone(), version: record.version.to_string(), capabilities }
    }

    /// The grants this consent stands for.
    pub fn grants(&self) -> Grants {
        let allowed_hosts = self
            .capabilities
            .iter()
            .flat_map(|c| &c.hosts)
            .filter_map(|h| h.host.parse::<HostPattern>().ok())
            .collect();
        Grants { capabilities: self.capabilities.iter().map(|c| c.capability).collect(), allowed_hosts }
    }

    /// Whether `answer` agrees to everything requested.
    pub fn is_covered_by(&self, answer: &GrantConsent) -> bool {
        self.capabilities.iter().all(|c| {
            answer.capabilities.contains(&c.capability) && c.hosts.iter().all(|h| answer.hosts.contains(&h.host))
        })
    }

    fn required(self, why: &str) -> MarketError {
        let asked: Vec<String> = self
            .capabilities
            .iter()
            .map(|c| {
                if c.hosts.is_empty() {
                    c.capability.to_string()
                } else {
                    let hosts: Vec<&str> = c.hosts.iter().map(|h| h.host.as_str()).collect();
                    format!("{} ({})", c.capability, hosts.join(", "))
                }
            })
            .collect();
        let message = format!(
            "{why}: {}@{} requests {}; send them in `consent`",
            self.plugin,
            self.version,
            if asked.is_empty() { "no capabilities".to_string() } else { asked.join(", ") }
        );
        MarketError::ConsentRequired { message, requested: Box::new(self) }
    }
}

/// Whether `grants` already cover everything `record` requests.
fn grants_cover(grants: &Grants, record: &VersionRecord) -> bool {
    let wanted = Consent::of(record).grants();
    wanted.capabilities.is_subset(&grants.capabilities)
        && wanted.allowed_hosts.iter().all(|h| grants.allowed_hosts.contains(h))
}

/// An install as its tenant (and operators) see it. Secrets appear by name only.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Install {
    pub id: String,
    pub tenant: String,
    pub plugin: String,
    pub requirement: String,
    pub version: String,
    pub plan: String,
    /// `active`, `paused` or `uninstalled`.
    pub status: String,
    pub status_reason: Option<String>,
    #[schema(value_type = Object)]
    pub grants: Grants,
    pub event_types: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub secret_names: Vec<String>,
    pub consecutive_failures: i64,
    pub pending_upgrade: Option<PendingUpgrade>,
    pub created_at: i64,
    pub updated_at: i64,
    pub uninstalled_at: Option<i64>,
}

/// A newer version within the requirement that asks for more than was granted.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    /// A semver requirement such as `^1.2`; default `*` (newest stable).
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

/// `PATCH /v1/installs/{id}`: `config` replaces the settings; each secret is set, or
/// removed when null.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, Option<String>>,
}

fn check_settings<'a>(
    what: &str,
    entries: impl ExactSizeIterator<Item = (&'a String, Option<&'a String>)>,
) -> Result<(), MarketError> {
    if entries.len() > MAX_SETTINGS {
        return Err(MarketError::invalid("invalid_settings", format!("at most {MAX_SETTINGS} {what} entries")));
    }
    for (key, value) in entries {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_SETTING_KEY_BYTES
            && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !key_ok {
            return Err(MarketError::invalid(
                "invalid_settings",
                format!("{what} key `{key}` must be 1-{MAX_SETTING_KEY_BYTES} of letters, digits, '-', '_', '.'"),
            ));
        }
        if value.is_some_and(|v| v.len() > MAX_SETTING_VALUE_BYTES) {
            return Err(MarketError::invalid(
                "invalid_settings",
                format!("{what} `{key}` is longer than {MAX_SETTING_VALUE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

fn plugin_id(text: &str) -> Result<PluginId, MarketError> {
    text.parse::<PluginId>().map_err(|e| RegistryError::from(e).into())
}

/// What installing `plugin` at `requirement` would ask for.
pub async fn preview(market: &Market, plugin: &str, requirement: Option<&str>) -> Result<Consent, MarketError> {
    let id = plugin_id(plugin)?;
    let requirement = parse_requirement(requirement.unwrap_or("*")).map_err(RegistryError::from)?;
    Ok(Consent::of(&market.registry.resolve(&id, &requirement).await?))
}

/// Installs a plugin for the calling tenant.
pub async fn create(market: &Market, caller: &Caller, request: InstallRequest) -> Result<Install, MarketError> {
    let tenant = caller.tenant(TenantScope::Installs)?.clone();
    let id = plugin_id(&request.plugin)?;
    if !catalog::is_installable(&market.db, &id).await? {
        return Err(MarketError::conflict("plugin_delisted", format!("{id} is delisted and cannot be installed")));
    }
    let requirement_text = request.requirement.clone().unwrap_or_else(|| "*".to_string());
    let requirement = parse_requirement(&requirement_text).map_err(RegistryError::from)?;
    let record = market.registry.resolve(&id, &requirement).await?;
    let consent = Consent::of(&record);
    if !request.consent.as_ref().is_some_and(|answer| consent.is_covered_by(answer)) {
        return Err(consent.required("installing needs consent"));
    }
    let plan = match &request.plan {
        Some(plan) if record.manifest.pricing.iter().any(|p| &p.id == plan) => plan.clone(),
        Some(plan) => {
            let plans: Vec<&str> = record.manifest.pricing.iter().map(|p| p.id.as_str()).collect();
            return Err(MarketError::invalid(
                "unknown_plan",
                format!("{id} has no plan `{plan}`; its plans are: {}", plans.join(", ")),
            ));
        }
        None => record.manifest.pricing.first().map(|p| p.id.clone()).unwrap_or_else(|| "free".into()),
    };
    check_settings("config", request.config.iter().map(|(k, v)| (k, Some(v))))?;
    check_settings("secret", request.secrets.iter().map(|(k, v)| (k, Some(v))))?;
    market.registry.verify_signature(&id, &record).await?;

    let install_id = format!("ins_{}", random_hex(8)?);
    let sealed = if request.secrets.is_empty() {
        None
    } else {
        Some(secrets::seal(&market.master_key, &install_id, &request.secrets).map_err(storage)?)
    };
    let grants = consent.grants();
    let now = now_ms();
    let mut tx = market.db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO installs (id, tenant_id, plugin_id, requirement, version, digest, event_types, grants, plan, \
         config, secrets_sealed, secret_names, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'active', $13, $13)",
    )
    .bind(&install_id)
    .bind(tenant.as_str())
    .bind(id.to_string())
    .bind(&requirement_text)
    .bind(record.version.to_string())
    .bind(record.digest.to_string())
    .bind(json_text(&record.manifest.event_types))
    .bind(json_text(&grants))
    .bind(&plan)
    .bind(json_text(&request.config))
    .bind(sealed)
    .bind(json_text(&request.secrets.keys().collect::<Vec<_>>()))
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(error) if is_unique_violation(&error) => {
            return Err(MarketError::conflict(
                "already_installed",
                format!("tenant {tenant} already has {id} installed; change it or uninstall it first"),
            ));
        }
        other => other?,
    };
    catalog::count_install(&mut *tx, &id.to_string(), 1).await?;
    let detail = json!({
        "plugin": id.to_string(), "version": record.version.to_string(), "requirement": requirement_text,
        "plan": plan, "grants": grants, "secret_names": request.secrets.keys().collect::<Vec<_>>(),
    });
    audit::record(&mut *tx, &caller.actor(), "install.created", &install_id, detail).await?;
    tx.commit().await?;
    get(market, caller, &install_id).await
}

/// A transaction that will write: on SQLite it takes the write lock at once (a deferred one
/// that reads first cannot upgrade once another connection wrote); `FOR UPDATE` is what
/// locks rows on PostgreSQL (empty on SQLite, where the lock covers the database).
async fn write_tx(market: &Market) -> Result<sqlx::Transaction<'static, sqlx::Any>, MarketError> {
    Ok(match market.db.backend {
        Backend::Sqlite => market.db.pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => market.db.pool.begin().await?,
    })
}

fn for_update(market: &Market) -> &'static str {
    match market.db.backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    }
}

/// Fails with `uninstalled` unless exactly one live row changed.
fn changed_live(result: sqlx::any::AnyQueryResult, id: &str) -> Result<(), MarketError> {
    if result.rows_affected() == 1 {
        Ok(())
    } else {
        Err(MarketError::conflict("uninstalled", format!("install {id} was uninstalled")))
    }
}

fn json_text(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn json_field<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, MarketError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| storage(format!("stored {column}: {e}")))
}

const COLUMNS: &str = "id, tenant_id, plugin_id, requirement, version, digest, event_types, grants, plan, config, \
                       secrets_sealed, secret_names, status, status_reason, consecutive_failures, pending_version, \
                       pending_reason, created_at, updated_at, uninstalled_at";

fn install(row: &AnyRow) -> Result<Install, MarketError> {
    let pending_version: Option<String> = row.try_get("pending_version")?;
    Ok(Install {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant_id")?,
        plugin: row.try_get("plugin_id")?,
        requirement: row.try_get("requirement")?,
        version: row.try_get("version")?,
        plan: row.try_get("plan")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        grants: json_field(row, "grants")?,
        event_types: json_field(row, "event_types")?,
        config: json_field(row, "config")?,
        secret_names: json_field(row, "secret_names")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
        pending_upgrade: match pending_version {
            Some(version) => Some(PendingUpgrade {
                version,
                reason: row.try_get::<Option<String>, _>("pending_reason")?.unwrap_or_default(),
            }),
            None => None,
        },
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        uninstalled_at: row.try_get("uninstalled_at")?,
    })
}

/// The install's row, if the caller may see it: its own tenant with `read`, or an operator.
/// Another tenant's install is reported as not found, not as forbidden.
async fn visible_row(market: &Market, caller: &Caller, id: &str) -> Result<AnyRow, MarketError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM installs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("install {id}")))?;
    let tenant: TenantId = row.try_get::<String, _>("tenant_id")?.parse()?;
    match caller {
        Caller::Operator { .. } => Ok(row),
        Caller::Tenant { tenant: own, .. } if *own == tenant => Ok(row),
        Caller::Tenant { .. } => Err(MarketError::NotFound(format!("install {id}"))),
        Caller::Publisher(_) => Err(MarketError::Forbidden("installs belong to tenants".into())),
    }
}

pub async fn get(market: &Market, caller: &Caller, id: &str) -> Result<Install, MarketError> {
    if let Caller::Tenant { .. } = caller {
        caller.tenant(TenantScope::Read)?;
    }
    install(&visible_row(market, caller, id).await?)
}

/// A tenant's installs (`include_uninstalled` adds history). Operators name the tenant.
pub async fn list(
    market: &Market,
    caller: &Caller,
    tenant: Option<&TenantId>,
    include_uninstalled: bool,
) -> Result<Vec<Install>, MarketError> {
    let tenant = match (caller, tenant) {
        (Caller::Operator { .. }, Some(tenant)) => tenant.clone(),
        (Caller::Operator { .. }, None) => {
            return Err(MarketError::invalid("invalid_query", "operators must name the tenant: ?tenant=<id>"));
        }
        (_, named) => {
            let own = caller.tenant(TenantScope::Read)?;
            if named.is_some_and(|n| n != own) {
                return Err(MarketError::NotFound(format!("tenant {}", named.map(|n| n.as_str()).unwrap_or(""))));
            }
            own.clone()
        }
    };
    let status = if include_uninstalled { "" } else { "AND status <> 'uninstalled'" };
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM installs WHERE tenant_id = $1 {status} ORDER BY created_at, id"))
            .bind(tenant.as_str())
            .fetch_all(&market.db.pool)
            .await?;
    rows.iter().map(install).collect()
}

/// The install, which must be the caller tenant's own and not uninstalled, for a change.
async fn changeable(market: &Market, caller: &Caller, id: &str) -> Result<Install, MarketError> {
    caller.tenant(TenantScope::Installs)?;
    let install = install(&visible_row(market, caller, id).await?)?;
    if install.status == "uninstalled" {
        return Err(MarketError::conflict("uninstalled", format!("install {id} was uninstalled")));
    }
    Ok(install)
}

/// Replaces the config and sets or removes secrets.
pub async fn update_settings(
    market: &Market,
    caller: &Caller,
    id: &str,
    update: SettingsUpdate,
) -> Result<Install, MarketError> {
    let current = changeable(market, caller, id).await?;
    if let Some(config) = &update.config {
        check_settings("config", config.iter().map(|(k, v)| (k, Some(v))))?;
    }
    check_settings("secret", update.secrets.iter().map(|(k, v)| (k, v.as_ref())))?;
    let mut tx = write_tx(market).await?;
    if let Some(config) = &update.config {
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
    }
    if !update.secrets.is_empty() {
        // Locked until commit: two concurrent changes must not both start from the old set.
        let select = format!("SELECT secrets_sealed FROM installs WHERE id = $1{}", for_update(market));
        let sealed: Option<String> = sqlx::query_scalar(&select).bind(id).fetch_one(&mut *tx).await?;
        let mut values = match sealed {
            Some(sealed) => secrets::open(&market.master_key, id, &sealed).map_err(storage)?,
            None => BTreeMap::new(),
        };
        for (name, value) in &update.secrets {
            match value {
                Some(value) => values.insert(name.clone(), value.clone()),
                None => values.remove(name),
            };
        }
        check_settings("secret", values.iter().map(|(k, v)| (k, Some(v))))?;
        let sealed = if values.is_empty() {
            None
        } else {
            Some(secrets::seal(&market.master_key, id, &values).map_err(storage)?)
        };
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
            update.secrets.iter().map(|(k, v)| (k, if v.is_some() { "set" } else { "removed" })).collect();
        audit::record(&mut *tx, &caller.actor(), "install.secrets_changed", id, json!({ "secrets": changed })).await?;
    }
    tx.commit().await?;
    drop(current);
    get(market, caller, id).await
}

/// Moves the install to its pending version, with the tenant's consent to what it adds.
pub async fn approve_upgrade(
    market: &Market,
    caller: &Caller,
    id: &str,
    answer: &GrantConsent,
) -> Result<Install, MarketError> {
    let current = changeable(market, caller, id).await?;
    let Some(pending) = &current.pending_upgrade else {
        return Err(MarketError::conflict("no_pending_upgrade", format!("install {id} has no upgrade waiting")));
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
    if !set_version(&mut tx, id, &current.version, &record, Some(&consent.grants())).await? {
        return Err(MarketError::conflict("install_changed", format!("install {id} changed meanwhile; look again")));
    }
    let detail = json!({ "from": current.version, "to": record.version.to_string(), "grants": consent.grants() });
    audit::record(&mut *tx, &caller.actor(), "install.upgrade_approved", id, detail).await?;
    tx.commit().await?;
    get(market, caller, id).await
}

/// Moves a live install from version `from` to `record`'s; false if it is no longer on `from`
/// (another node moved it first) or was uninstalled.
async fn set_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    from: &str,
    record: &VersionRecord,
    grants: Option<&Grants>,
) -> Result<bool, MarketError> {
    let changed = sqlx::query(
        "UPDATE installs SET version = $1, digest = $2, event_types = $3, grants = COALESCE($4, grants), \
         pending_version = NULL, pending_reason = NULL, updated_at = $5 \
         WHERE id = $6 AND version = $7 AND status <> 'uninstalled'",
    )
    .bind(record.version.to_string())
    .bind(record.digest.to_string())
    .bind(json_text(&record.manifest.event_types))
    .bind(grants.map(json_text))
    .bind(now_ms())
    .bind(id)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    Ok(changed.rows_affected() == 1)
}

/// Resumes a paused install.
pub async fn resume(market: &Market, caller: &Caller, id: &str) -> Result<Install, MarketError> {
    let current = changeable(market, caller, id).await?;
    if current.status != "paused" {
        return Err(MarketError::conflict("not_paused", format!("install {id} is {}", current.status)));
    }
    let mut tx = write_tx(market).await?;
    let resumed = sqlx::query(
        "UPDATE installs SET status = 'active', status_reason = NULL, consecutive_failures = 0, updated_at = $1 \
         WHERE id = $2 AND status = 'paused'",
    )
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if resumed.rows_affected() != 1 {
        return Err(MarketError::conflict("not_paused", format!("install {id} is no longer paused")));
    }
    audit::record(&mut *tx, &caller.actor(), "install.resumed", id, json!({ "was": current.status_reason })).await?;
    tx.commit().await?;
    get(market, caller, id).await
}

/// Uninstalls: the row and its invocations stay as history; settings, secrets and the
/// plugin's KV data are deleted.
pub async fn uninstall(market: &Market, caller: &Caller, id: &str) -> Result<Install, MarketError> {
    let current = changeable(market, caller, id).await?;
    let mut tx = write_tx(market).await?;
    let now = now_ms();
    let changed = sqlx::query(
        "UPDATE installs SET status = 'uninstalled', status_reason = NULL, config = '{}', secrets_sealed = NULL, \
         secret_names = '[]', pending_version = NULL, pending_reason = NULL, uninstalled_at = $1, updated_at = $1 \
         WHERE id = $2 AND status <> 'uninstalled'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    // Of two concurrent uninstalls only one counts and audits.
    changed_live(changed, id)?;
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
    audit::record(&mut *tx, &caller.actor(), "install.uninstalled", id, json!({ "plugin": current.plugin })).await?;
    tx.commit().await?;
    get(market, caller, id).await
}

/// After a version of `plugin` is published or yanked: each live install moves to the best
/// non-yanked version within its requirement if that needs nothing more than was granted,
/// or records it as pending consent. A yanked running version is therefore left for the
/// best remaining one, even an older one (a yank usually means "broken"); when nothing
/// remains within the requirement the install keeps running what it has.
pub async fn follow_versions(market: &Market, plugin: &PluginId) -> Result<(), MarketError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM installs WHERE plugin_id = $1 AND status <> 'uninstalled'"))
        .bind(plugin.to_string())
        .fetch_all(&market.db.pool)
        .await?;
    for row in &rows {
        let current = install(row)?;
        let Ok(requirement) = parse_requirement(&current.requirement) else { continue };
        let best = match market.registry.resolve(plugin, &requirement).await {
            Ok(best) => best,
            Err(RegistryError::NoMatchingVersion { .. }) => continue,
            Err(other) => return Err(other.into()),
        };
        let pending = current.pending_upgrade.as_ref().map(|p| p.version.as_str());
        let mut tx = write_tx(market).await?;
        if best.version.to_string() == current.version {
            if pending.is_some() {
                sqlx::query("UPDATE installs SET pending_version = NULL, pending_reason = NULL WHERE id = $1")
                    .bind(&current.id)
                    .execute(&mut *tx)
                    .await?;
            }
        } else if grants_cover(&current.grants, &best) {
            // Compare-and-set: if another node moved it meanwhile, its newer answer stands.
            if set_version(&mut tx, &current.id, &current.version, &best, None).await? {
                let detail = json!({ "from": current.version, "to": best.version.to_string() });
                audit::record(&mut *tx, audit::SYSTEM, "install.version_changed", &current.id, detail).await?;
            }
        } else if pending != Some(best.version.to_string().as_str()) {
            let wanted = Consent::of(&best).grants();
            let mut more: Vec<String> =
                wanted.capabilities.difference(&current.grants.capabilities).map(|c| c.to_string()).collect();
            more.extend(
                wanted
                    .allowed_hosts
                    .iter()
                    .filter(|h| !current.grants.allowed_hosts.contains(h))
                    .map(|h| h.to_string()),
            );
            let reason = format!("{} asks for more than you granted: {}", best.version, more.join(", "));
            sqlx::query("UPDATE installs SET pending_version = $1, pending_reason = $2, updated_at = $3 WHERE id = $4")
                .bind(best.version.to_string())
                .bind(&reason)
                .bind(now_ms())
                .bind(&current.id)
                .execute(&mut *tx)
                .await?;
            let detail = json!({ "version": best.version.to_string(), "reason": reason });
            audit::record(&mut *tx, audit::SYSTEM, "install.upgrade_pending", &current.id, detail).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Everything the runner needs to deliver to one install.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub tenant: String,
    pub plugin: PluginId,
    pub version: semver::Version,
    pub event_types: Vec<String>,
    pub grants: Grants,
    pub config: BTreeMap<String, String>,
    pub secrets_sealed: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub consecutive_failures: i64,
}

impl Target {
    pub fn handles(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| t == "*" || t == event_type)
    }
}

fn target(row: &AnyRow) -> Result<Target, MarketError> {
    let plugin: String = row.try_get("plugin_id")?;
    let version: String = row.try_get("version")?;
    Ok(Target {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant_id")?,
        plugin: plugin.parse().map_err(|e| storage(format!("stored plugin id: {e}")))?,
        version: version.parse().map_err(|e| storage(format!("stored version: {e}")))?,
        event_types: json_field(row, "event_types")?,
        grants: json_field(row, "grants")?,
        config: json_field(row, "config")?,
        secrets_sealed: row.try_get("secrets_sealed")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
    })
}

const TARGET_COLUMNS: &str = "id, tenant_id, plugin_id, version, event_types, grants, config, secrets_sealed, status, \
                              status_reason, consecutive_failures";

/// The tenant's installs that are not uninstalled.
pub async fn targets(market: &Market, tenant: &TenantId) -> Result<Vec<Target>, MarketError> {
    let rows = sqlx::query(&format!(
        "SELECT {TARGET_COLUMNS} FROM installs WHERE tenant_id = $1 AND status <> 'uninstalled' ORDER BY created_at, id"
    ))
    .bind(tenant.as_str())
    .fetch_all(&market.db.pool)
    .await?;
    rows.iter().map(target).collect()
}

/// One install of the tenant, for direct invocation.
pub async fn target_of(market: &Market, caller: &Caller, id: &str) -> Result<Target, MarketError> {
    let tenant = caller.tenant(TenantScope::Events)?;
    let row = sqlx::query(&format!("SELECT {TARGET_COLUMNS} FROM installs WHERE id = $1 AND tenant_id = $2"))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&market.db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("install {id}")))?;
    let target = target(&row)?;
    if target.status == "uninstalled" {
        return Err(MarketError::conflict("uninstalled", format!("install {id} was uninstalled")));
    }
    Ok(target)
}

/// Records an invocation's outcome against the circuit breaker: a success resets the count
/// of consecutive failures (when the count it saw was not already 0); at
/// `FAILURES_BEFORE_PAUSE` failures, the install is paused with a reason its tenant sees if
/// its latest recorded invocations all failed. Returns whether this call paused it.
pub async fn record_health(market: &Market, target: &Target, failure: Option<&str>) -> Result<bool, MarketError> {
    let Some(failure) = failure else {
        if target.consecutive_failures != 0 {
            sqlx::query("UPDATE installs SET consecutive_failures = 0 WHERE id = $1")
                .bind(&target.id)
                .execute(&market.db.pool)
                .await?;
        }
        return Ok(false);
    };
    let mut tx = write_tx(market).await?;
    let failures: i64 = sqlx::query_scalar(
        "UPDATE installs SET consecutive_failures = consecutive_failures + 1 WHERE id = $1 \
         RETURNING consecutive_failures",
    )
    .bind(&target.id)
    .fetch_one(&mut *tx)
    .await?;
    if failures < FAILURES_BEFORE_PAUSE {
        tx.commit().await?;
        return Ok(false);
    }
    // Successes that ran beside these failures reset nothing (each saw a count of 0 when it
    // started): the recorded outcomes say whether the failures really were consecutive.
    let recent: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM invocations WHERE install_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
    )
    .bind(&target.id)
    .bind(FAILURES_BEFORE_PAUSE)
    .fetch_all(&mut *tx)
    .await?;
    let trailing = recent.iter().take_while(|outcome| *outcome != "ok").count() as i64;
    if trailing < FAILURES_BEFORE_PAUSE {
        sqlx::query("UPDATE installs SET consecutive_failures = $1 WHERE id = $2")
            .bind(trailing)
            .bind(&target.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(false);
    }
    let reason = format!("paused after {failures} consecutive failures; the last: {failure}");
    let paused = sqlx::query(
        "UPDATE installs SET status = 'paused', status_reason = $1, updated_at = $2 WHERE id = $3 AND status = 'active'",
    )
    .bind(&reason)
    .bind(now_ms())
    .bind(&target.id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if paused {
        tracing::warn!(install = %target.id, tenant = %target.tenant, plugin = %target.plugin, %reason, "install paused");
        audit::record(&mut *tx, audit::SYSTEM, "install.paused", &target.id, json!({ "reason": reason })).await?;
    }
    tx.commit().await?;
    Ok(paused)
}

/// The tenant's secrets of an install, opened for one invocation.
pub fn open_secrets(market: &Market, target: &Target) -> Result<BTreeMap<String, String>, MarketError> {
    match &target.secrets_sealed {
        // Not a storage failure: this install cannot run (wrong master key, damaged blob),
        // the others can; the runner records it as `load_failed`.
        Some(sealed) => secrets::open(&market.master_key, &target.id, sealed)
            .map_err(|e| MarketError::conflict("secrets_unreadable", format!("the install's secrets: {e}"))),
        None => Ok(BTreeMap::new()),
    }
}
