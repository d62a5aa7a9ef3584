//! Consent as installs check it: whether an install's grants cover a version, and what
//! installing would ask for. The types are [`crate::consent`]'s.

use nexus_host::Grants;
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{ErrorCode, RegistryError, VersionRecord};

use super::plugin_id;
pub use crate::consent::{Consent, DeclaredSetting, GrantConsent, RequestedCapability, RequestedHost};
use crate::error::MarketError;
use crate::market::Market;

impl Consent {
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
