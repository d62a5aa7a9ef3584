//! Installs: a tenant's plugin at a version requirement, with the capabilities it consented
//! to, its settings and sealed secrets, and its status. New versions within the requirement
//! are taken automatically unless they request more than was granted; those wait for fresh
//! consent. Uninstalling keeps the row and its invocations.

use std::collections::BTreeMap;

use nexus_host::Grants;
use nexus_registry::{ErrorCode, PluginId, RegistryError};
use serde::{Deserialize, Serialize};

use crate::accounts::TenantId;
use crate::error::{MarketError, storage};
use crate::ids::InstallId;
use crate::market::Market;

pub mod billing_state;
mod changes;
mod consent;
pub(crate) mod create;
mod delivery;
mod follow;
pub(crate) mod lifecycle;
mod read;
pub mod schedules;

pub use changes::{SettingsUpdate, approve_upgrade, resume, uninstall, update_settings};
pub use consent::{Consent, DeclaredSetting, GrantConsent, RequestedCapability, RequestedHost, preview};
pub use delivery::{
    Target, open_secrets, record_health, target_by_id, target_of, targets, targets_by_ids, targets_read,
};
pub use follow::{InstallMoves, follow_versions, moves_to};
pub(crate) use read::get_checked_elsewhere;
use read::{COLUMNS, InstallRow, visible_row};
pub use read::{get, list};

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
    #[schema(value_type = String)]
    pub id: InstallId,
    #[schema(value_type = String)]
    pub tenant: TenantId,
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

/// The caret requirement of `version`'s major: `^2` for 2.x, `^0.3` for 0.3.x, `^0.0.4`
/// for 0.0.4 (caret ranges treat the first non-zero part as the major).
pub fn same_major(version: &semver::Version) -> String {
    match (version.major, version.minor) {
        (0, 0) => format!("^0.0.{}", version.patch),
        (0, minor) => format!("^0.{minor}"),
        (major, _) => format!("^{major}"),
    }
}
