//! What a version asks the tenant to consent to, and the tenant's answer: the types only,
//! below `error` (a [`MarketError::ConsentRequired`] carries a [`Consent`]); installs checks
//! them (`installs::consent`).

use std::collections::BTreeSet;

use nexus_host::{Capability, Grants, HostPattern};
use nexus_registry::VersionRecord;
use serde::{Deserialize, Serialize};

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
}
