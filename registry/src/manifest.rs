//! The plugin manifest, `nexus.toml` beside a plugin crate: identity, listing text, the
//! contract version, the events handled, the capabilities requested (each with a reason shown
//! to tenants) and the pricing plans.
//!
//! TOML is read into a loose raw form first, so a missing or malformed field is reported by
//! name rather than as a serde type error; [`Manifest::validate`] then checks every rule and is
//! also what manifests read back from JSON storage go through.

use std::collections::{BTreeMap, BTreeSet};

use nexus_host::{Capability, ContractVersion, HostPattern};
use semver::Version;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ErrorCode;
use crate::id::PluginId;
pub use rules::MAX_TRIAL_DAYS;
use rules::{
    MAX_CHANGELOG_CHARS, MAX_DESCRIPTION_CHARS, MAX_SUMMARY_CHARS, check_capabilities, check_categories,
    check_event_types, check_length, check_license, check_link, check_links, check_media, check_pricing,
    check_settings, check_text, check_url,
};

mod raw;
mod rules;
#[cfg(test)]
mod tests;

/// The categories a plugin may list; a closed set so marketplace browsing stays navigable.
pub const CATEGORIES: [&str; 13] = [
    "analytics",
    "billing",
    "compliance",
    "crm",
    "developer-tools",
    "finance",
    "marketing",
    "messaging",
    "notifications",
    "productivity",
    "security",
    "support",
    "tax",
];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    /// Not TOML, a value of the wrong type, or an unknown key; says where.
    #[error("manifest syntax error: {0}")]
    Syntax(String),
    #[error("manifest is missing the required field {field}")]
    Missing { field: &'static str },
    /// `field` is a dotted path such as `pricing[1].currency`.
    #[error("manifest field {field} is invalid: {problem}")]
    Invalid { field: String, problem: String },
}

impl ManifestError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Syntax(_) => ErrorCode::ManifestSyntax,
            Self::Missing { .. } => ErrorCode::ManifestMissingField,
            Self::Invalid { .. } => ErrorCode::ManifestInvalidField,
        }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ManifestError {
    ManifestError::Invalid { field: field.into(), problem: problem.into() }
}

/// A parsed, validated `nexus.toml`. The JSON form has the same shape and keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    pub id: PluginId,
    pub version: Version,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub categories: Vec<String>,
    pub license: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub contract: ContractVersion,
    pub event_types: Vec<String>,
    /// Asynchronous events reach each install of this plugin one at a time, in the order
    /// they were accepted (a later one waits while an earlier one is retried). Off by
    /// default: deliveries run concurrently.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered_delivery: bool,
    /// Each active install receives a `schedule.tick` event at every slot of each schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    #[serde(default)]
    pub capabilities: BTreeMap<Capability, CapabilityRequest>,
    /// `[[settings]]`: the settings and secrets an install is asked for by name, on the
    /// install form and in the consent preview; a `required` one must be given to install.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<Setting>,
    pub pricing: Vec<PricingPlan>,
    /// What changed in this version, in Markdown; the listing shows it beside the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog: Option<String>,
    /// `[links]`: where tenants find documentation, support and the legal terms.
    #[serde(default, skip_serializing_if = "Links::is_empty")]
    pub links: Links,
    /// `[media]`: the icon and screenshots `nexus publish` uploads from the project folder.
    #[serde(default, skip_serializing_if = "Media::is_empty")]
    pub media: Media,
}

/// The listing's links. `support` may also be a `mailto:` address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Links {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documentation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<String>,
}

impl Links {
    pub fn is_empty(&self) -> bool {
        self.documentation.is_none() && self.support.is_none() && self.privacy.is_none() && self.terms.is_none()
    }
}

/// The most screenshots one listing may show.
pub const MAX_SCREENSHOTS: usize = 8;

/// Image files of the project, relative to its folder: `.png`, `.jpg`/`.jpeg` or `.webp`.
/// The registry keeps the paths only; the bytes go up separately and are checked there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Media {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub screenshots: Vec<String>,
}

impl Media {
    pub fn is_empty(&self) -> bool {
        self.icon.is_none() && self.screenshots.is_empty()
    }
}

/// The most settings and secrets one plugin may declare.
pub const MAX_DECLARED_SETTINGS: usize = 32;

/// One declared setting (read with the `config` capability) or secret (`secrets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Setting {
    /// The key the plugin reads: 1 to 64 of a-z, 0-9, '-', '_' and '.'.
    pub name: String,
    /// What to enter, shown beside the field.
    pub description: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// The most schedules one plugin may declare.
pub const MAX_SCHEDULES: usize = 5;
/// The event type a schedule's slots are delivered as.
pub const SCHEDULE_TICK: &str = "schedule.tick";

/// `[[schedules]]`: a cron expression in UTC (`crate::cron`), and what happens to slots a
/// marketplace missed (it was down): `skip` delivers only the latest, `catch-up` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Schedule {
    pub id: String,
    pub cron: String,
    #[serde(default)]
    pub missed: Missed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    #[default]
    Skip,
    CatchUp,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::CatchUp => "catch-up",
        }
    }
}

/// Why the plugin needs a capability, and for `http` the hosts it calls and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRequest {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRequest {
    pub host: HostPattern,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingPlan {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub model: PricingModel,
}

/// How a plan charges. Amounts are integers in the currency's minor unit (cents), never
/// floats, so no rounding happens between the manifest and the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case", rename_all_fields = "kebab-case")]
pub enum PricingModel {
    Free,
    /// A fee per month or year (written `flat` before; still read).
    #[serde(alias = "flat")]
    Subscription {
        amount_minor: i64,
        currency: Currency,
        interval: Interval,
        /// Days before the first period is charged (a tenant's first install only).
        #[serde(default, skip_serializing_if = "is_zero")]
        trial_days: u32,
    },
    /// A price per unit of a meter the code reports (written `per-unit` before; still read).
    #[serde(alias = "per-unit")]
    Usage {
        meter: String,
        unit_amount_minor: i64,
        currency: Currency,
        #[serde(default)]
        included_units: u64,
        /// The most one period may cost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cap_minor: Option<i64>,
    },
    /// Bought once, charged at install.
    OneTime {
        amount_minor: i64,
        currency: Currency,
    },
}

fn is_zero(days: &u32) -> bool {
    *days == 0
}

/// A currency with minor units, from ISO 4217 (`nexus-money`): a manifest naming `XTS` or
/// `usd` is refused at publish, and every amount's exponent comes from its currency.
pub use nexus_money::Currency;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Month,
    Year,
}

impl Manifest {
    /// Parses and validates the text of a `nexus.toml`.
    pub fn from_toml(text: &str) -> Result<Self, ManifestError> {
        let raw: raw::Manifest = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
        let manifest = raw.into_manifest()?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// What a manifest that parses still writes the older way, one warning per use: the
    /// model names `flat` and `per-unit`, and amounts as integers of minor units. Both are
    /// read as before; `publish` and `plugin check` show these so builders move over.
    pub fn deprecations(text: &str) -> Vec<String> {
        let Ok(table) = text.parse::<toml::Table>() else { return Vec::new() };
        let Some(plans) = table.get("pricing").and_then(toml::Value::as_array) else { return Vec::new() };
        let mut warnings = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let Some(plan) = plan.as_table() else { continue };
            let model = plan.get("model").and_then(toml::Value::as_str);
            for (old, new) in [("flat", "subscription"), ("per-unit", "usage")] {
                if model == Some(old) {
                    warnings.push(format!(
                        "pricing[{i}].model {old:?} is deprecated: write model = {new:?} (the name the CLI, API and \
                         console use)"
                    ));
                }
            }
            for (old, new) in [("amount-minor", "price"), ("unit-amount-minor", "unit-price"), ("cap-minor", "cap")] {
                if let Some(minor) = plan.get(old).and_then(toml::Value::as_integer) {
                    let shown = plan
                        .get("currency")
                        .and_then(toml::Value::as_str)
                        .and_then(|code| Currency::from_code(code).ok())
                        .map_or_else(
                            || minor.to_string(),
                            // Display is "9.00 USD": the number alone goes in the manifest.
                            |currency| {
                                nexus_money::Money::new(minor, currency)
                                    .to_string()
                                    .replace(&format!(" {currency}"), "")
                            },
                        );
                    warnings.push(format!(
                        "pricing[{i}].{old} is deprecated: write {new} = \"{shown}\" (a decimal in the plan's currency)"
                    ));
                }
            }
        }
        warnings
    }

    /// Checks every rule the types do not already enforce, field by field in manifest order,
    /// and reports the first broken one.
    pub fn validate(&self) -> Result<(), ManifestError> {
        check_summary(&self.summary)?;
        if let Some(description) = &self.description {
            check_length("description", description, MAX_DESCRIPTION_CHARS)?;
        }
        check_categories(&self.categories)?;
        check_license(&self.license)?;
        check_url("homepage", self.homepage.as_deref())?;
        check_url("repository", self.repository.as_deref())?;
        check_event_types(&self.event_types)?;
        check_capabilities(&self.capabilities)?;
        check_settings(&self.settings, &self.capabilities)?;
        check_pricing(&self.pricing)?;
        if let Some(changelog) = &self.changelog {
            check_length("changelog", changelog, MAX_CHANGELOG_CHARS)?;
        }
        check_links(&self.links)?;
        check_media(&self.media)
    }

    /// An http(s) link of a listing or profile (`field` names it in the error); with
    /// `mailto`, a `mailto:` address is accepted too.
    pub fn check_link(field: &str, value: Option<&str>, mailto: bool) -> Result<(), ManifestError> {
        check_link(field, value, mailto)
    }

    /// The rules of the listing's text, for a publisher's edit between versions: the same
    /// as a manifest's `summary`, `description` and `[links]`.
    pub fn check_listing_text(summary: &str, description: &str, links: &Links) -> Result<(), ManifestError> {
        check_summary(summary)?;
        check_length("description", description, MAX_DESCRIPTION_CHARS)?;
        check_links(links)
    }

    /// Every outbound host the plugin asks to call, in manifest order.
    pub fn requested_hosts(&self) -> Vec<HostPattern> {
        self.capabilities.values().flat_map(|request| request.hosts.iter().map(|h| h.host.clone())).collect()
    }

    pub fn capability_set(&self) -> BTreeSet<Capability> {
        self.capabilities.keys().copied().collect()
    }
}

fn check_summary(summary: &str) -> Result<(), ManifestError> {
    check_text("summary", summary, MAX_SUMMARY_CHARS)?;
    if summary.contains(['\n', '\r']) {
        return Err(invalid("summary", "must be a single line"));
    }
    Ok(())
}

/// One line, `line L, column C: message`, instead of toml's multi-line snippet, so the error
/// fits an API response or a log line.
fn syntax_error(text: &str, error: &toml::de::Error) -> ManifestError {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return ManifestError::Syntax(message.to_string());
    };
    let before = &text[..text.floor_char_boundary(span.start)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ManifestError::Syntax(format!("line {line}, column {column}: {message}"))
}
