//! What a version asks the tenant to consent to, and the tenant's answer.

use std::collections::BTreeSet;

use nexus_host::{Capability, Grants, HostPattern};
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{ErrorCode, RegistryError, VersionRecord};
use serde::{Deserialize, Serialize};

use super::plugin_id;
use crate::error::MarketError;
use crate::market::Market;

/// What installing (or upgrading to) a version asks the tenant to consent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consent {
    pub plugin: String,
    pub version: String,
    pub capabilities: Vec<RequestedCapability>,
    /// The settings and secrets the version declares (`[[settings]]`), asked for by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<DeclaredSetting>,
}

/// A setting or secret a version declares: its key, what to enter, whether it is a secret
/// (stored sealed) and whether an install needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeclaredSetting {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub required: bool,
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
        let settings = record
            .manifest
            .settings
            .iter()
            .map(|s| DeclaredSetting {
                name: s.name.clone(),
                description: s.description.clone(),
                secret: s.secret,
                required: s.required,
            })
            .collect();
        Self { plugin: record.id.clone(), version: record.version.to_string(), capabilities, settings }
    }

    /// Refuses settings that leave out a required declared one, naming it and its kind.
    pub fn check_required(
        &self,
        config: &std::collections::BTreeMap<String, String>,
        secrets: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), MarketError> {
        for setting in self.settings.iter().filter(|s| s.required) {
            let given = if setting.secret { secrets.get(&setting.name) } else { config.get(&setting.name) };
            if given.is_none_or(|value| value.trim().is_empty()) {
                let kind = if setting.secret { "secret" } else { "setting" };
                return Err(MarketError::invalid(
                    ErrorCode::InvalidSettings,
                    format!(
                        "{}@{} needs the {kind} `{}` ({}); send it in `{}`",
                        self.plugin,
                        self.version,
                        setting.name,
                        setting.description,
                        if setting.secret { "secrets" } else { "config" }
                    ),
                ));
            }
        }
        Ok(())
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

    pub(super) fn required(self, why: &str) -> MarketError {
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
pub(super) fn grants_cover(grants: &Grants, record: &VersionRecord) -> bool {
    let wanted = Consent::of(record).grants();
    wanted.capabilities.is_subset(&grants.capabilities)
        && wanted.allowed_hosts.iter().all(|h| grants.allowed_hosts.contains(h))
}

/// What installing `plugin` at `requirement` would ask for.
pub async fn preview(market: &Market, plugin: &str, requirement: Option<&str>) -> Result<Consent, MarketError> {
    MarketError::check_text(ErrorCode::InvalidQuery, "requirement", requirement.unwrap_or_default(), 100)?;
    let id = plugin_id(plugin)?;
    let requirement = parse_requirement(requirement.unwrap_or("*")).map_err(RegistryError::from)?;
    Ok(Consent::of(&market.registry.resolve(&id, &requirement).await?))
}
