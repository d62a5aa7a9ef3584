//! The plugin manifest, `nexus.toml` beside a plugin crate: identity, listing text, the
//! contract version, the events handled, the capabilities requested (each with a reason shown
//! to tenants) and the pricing plans.
//!
//! TOML is read into a loose raw form first, so a missing or malformed field is reported by
//! name rather than as a serde type error; [`Manifest::validate`] then checks every rule and is
//! also what manifests read back from JSON storage go through.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use nexus_host::{Capability, ContractVersion, HostPattern};
use semver::Version;
use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::id::{IdError, PluginId};

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

/// Fits one line of a listing card.
const MAX_SUMMARY_CHARS: usize = 140;
/// Room for a full README-style page without letting one manifest bloat listing storage.
const MAX_DESCRIPTION_CHARS: usize = 20_000;
/// More than five categories stops being a classification.
const MAX_CATEGORIES: usize = 5;
/// Long enough for compound SPDX expressions such as `(MIT OR Apache-2.0) AND BSD-3-Clause`.
const MAX_LICENSE_CHARS: usize = 64;
/// A plugin subscribing to more event types than this should use `*`.
const MAX_EVENT_TYPES: usize = 64;
const MAX_EVENT_TYPE_CHARS: usize = 64;
/// Capability and host reasons are shown on the install consent screen; a tweet's length.
const MAX_REASON_CHARS: usize = 280;
const MAX_PLAN_ID_CHARS: usize = 32;
const MAX_PLAN_NAME_CHARS: usize = 64;

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
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax(_) => "manifest_syntax",
            Self::Missing { .. } => "manifest_missing_field",
            Self::Invalid { .. } => "manifest_invalid_field",
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
    #[serde(default)]
    pub capabilities: BTreeMap<Capability, CapabilityRequest>,
    pub pricing: Vec<PricingPlan>,
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
    Flat {
        amount_minor: i64,
        currency: Currency,
        interval: Interval,
    },
    PerUnit {
        meter: String,
        unit_amount_minor: i64,
        currency: Currency,
        #[serde(default)]
        included_units: u64,
    },
}

/// An ISO 4217 currency code such as `USD`. Only the shape is checked; which currencies are
/// billable is the billing system's decision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} must be 3 uppercase letters (ISO 4217)")]
pub struct CurrencyError(String);

impl FromStr for Currency {
    type Err = CurrencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match <[u8; 3]>::try_from(s.as_bytes()) {
            Ok(code) if code.iter().all(u8::is_ascii_uppercase) => Ok(Self(code)),
            _ => Err(CurrencyError(s.to_string())),
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = CurrencyError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only ASCII uppercase letters are ever stored, so each byte is one char.
        self.0.iter().try_for_each(|&b| fmt::Write::write_char(f, char::from(b)))
    }
}

/// Shows the code, not the bytes.
impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({self})")
    }
}

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

    /// Checks every rule the types do not already enforce, field by field in manifest order,
    /// and reports the first broken one.
    pub fn validate(&self) -> Result<(), ManifestError> {
        check_text("summary", &self.summary, MAX_SUMMARY_CHARS)?;
        if self.summary.contains(['\n', '\r']) {
            return Err(invalid("summary", "must be a single line"));
        }
        if let Some(description) = &self.description {
            check_length("description", description, MAX_DESCRIPTION_CHARS)?;
        }
        check_categories(&self.categories)?;
        check_license(&self.license)?;
        check_url("homepage", self.homepage.as_deref())?;
        check_url("repository", self.repository.as_deref())?;
        check_event_types(&self.event_types)?;
        check_capabilities(&self.capabilities)?;
        check_pricing(&self.pricing)
    }

    /// Every outbound host the plugin asks to call, in manifest order.
    pub fn requested_hosts(&self) -> Vec<HostPattern> {
        self.capabilities.values().flat_map(|request| request.hosts.iter().map(|h| h.host.clone())).collect()
    }

    pub fn capability_set(&self) -> BTreeSet<Capability> {
        self.capabilities.keys().copied().collect()
    }
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

fn check_length(field: &str, value: &str, max: usize) -> Result<(), ManifestError> {
    let chars = value.chars().count();
    if chars > max {
        return Err(invalid(field, format!("must be at most {max} characters, got {chars}")));
    }
    Ok(())
}

/// Required human text: not blank, at most `max` characters.
fn check_text(field: &str, value: &str, max: usize) -> Result<(), ManifestError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    check_length(field, value, max)
}

fn check_count(field: &str, what: &str, count: usize, max: usize) -> Result<(), ManifestError> {
    if !(1..=max).contains(&count) {
        return Err(invalid(field, format!("must list 1 to {max} {what}, got {count}")));
    }
    Ok(())
}

fn check_categories(categories: &[String]) -> Result<(), ManifestError> {
    check_count("categories", "categories", categories.len(), MAX_CATEGORIES)?;
    for (i, category) in categories.iter().enumerate() {
        let field = format!("categories[{i}]");
        if !CATEGORIES.contains(&category.as_str()) {
            let expected = CATEGORIES.join(", ");
            return Err(invalid(field, format!("{category:?} is not a category (expected one of {expected})")));
        }
        if categories[..i].contains(category) {
            return Err(invalid(field, format!("{category:?} is listed twice")));
        }
    }
    Ok(())
}

/// Deliberately not a full SPDX parser: the character set keeps the field to an identifier
/// or simple expression; checking ids against the SPDX list is left to review.
fn check_license(license: &str) -> Result<(), ManifestError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '(' | ')' | ' ');
    let chars = license.chars().count();
    if license.trim().is_empty() || chars > MAX_LICENSE_CHARS || !license.chars().all(allowed) {
        let problem = format!(
            "{license:?} must be an SPDX license expression: 1 to {MAX_LICENSE_CHARS} letters, digits, spaces and . + - ( )"
        );
        return Err(invalid("license", problem));
    }
    Ok(())
}

fn check_url(field: &str, value: Option<&str>) -> Result<(), ManifestError> {
    let Some(value) = value else { return Ok(()) };
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(invalid(field, format!("{value:?} must be an http(s) URL"))),
    }
}

fn valid_event_type(event_type: &str) -> bool {
    event_type == "*"
        || event_type.split('.').all(|segment| {
            !segment.is_empty()
                && segment.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
        })
}

fn check_event_types(event_types: &[String]) -> Result<(), ManifestError> {
    check_count("event-types", "event types", event_types.len(), MAX_EVENT_TYPES)?;
    for (i, event_type) in event_types.iter().enumerate() {
        let field = format!("event-types[{i}]");
        check_length(&field, event_type, MAX_EVENT_TYPE_CHARS)?;
        if !valid_event_type(event_type) {
            let problem = format!(
                "{event_type:?} must be \"*\" or dot-separated segments of lowercase letters, digits, '_' and '-'"
            );
            return Err(invalid(field, problem));
        }
        if event_types[..i].contains(event_type) {
            return Err(invalid(field, format!("{event_type:?} is listed twice")));
        }
    }
    Ok(())
}

fn check_capabilities(capabilities: &BTreeMap<Capability, CapabilityRequest>) -> Result<(), ManifestError> {
    for (capability, request) in capabilities {
        let field = format!("capabilities.{capability}");
        check_text(&format!("{field}.reason"), &request.reason, MAX_REASON_CHARS)?;
        match (*capability == Capability::Http, request.hosts.is_empty()) {
            (true, true) => return Err(invalid(format!("{field}.hosts"), "must list at least one host")),
            (false, false) => return Err(invalid(format!("{field}.hosts"), "is only allowed for http")),
            _ => {}
        }
        for (i, host) in request.hosts.iter().enumerate() {
            let field = format!("{field}.hosts[{i}]");
            check_text(&format!("{field}.reason"), &host.reason, MAX_REASON_CHARS)?;
            if request.hosts[..i].iter().any(|h| h.host == host.host) {
                return Err(invalid(format!("{field}.host"), format!("\"{}\" is listed twice", host.host)));
            }
        }
    }
    Ok(())
}

fn check_pricing(plans: &[PricingPlan]) -> Result<(), ManifestError> {
    if plans.is_empty() {
        return Err(invalid("pricing", "must list at least one plan"));
    }
    for (i, plan) in plans.iter().enumerate() {
        let field = format!("pricing[{i}]");
        check_plan_id(&format!("{field}.id"), &plan.id)?;
        if let Some(first) = plans[..i].iter().position(|p| p.id == plan.id) {
            return Err(invalid(format!("{field}.id"), format!("{:?} is already used by pricing[{first}]", plan.id)));
        }
        check_text(&format!("{field}.name"), &plan.name, MAX_PLAN_NAME_CHARS)?;
        check_model(&field, &plan.model)?;
    }
    Ok(())
}

fn check_plan_id(field: &str, id: &str) -> Result<(), ManifestError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if id.is_empty() || id.len() > MAX_PLAN_ID_CHARS || !id.bytes().all(allowed) {
        return Err(invalid(field, format!("{id:?} must be 1 to {MAX_PLAN_ID_CHARS} of a-z, 0-9 and '-'")));
    }
    Ok(())
}

fn check_model(field: &str, model: &PricingModel) -> Result<(), ManifestError> {
    match model {
        PricingModel::Free => Ok(()),
        PricingModel::Flat { amount_minor, .. } => check_amount(&format!("{field}.amount-minor"), *amount_minor),
        PricingModel::PerUnit { meter, unit_amount_minor, .. } => {
            // The host's own rule, so every meter a plan names is one a plugin can report.
            if !nexus_host::capability::usage::valid_meter(meter) {
                let problem = format!("{meter:?} must be 1 to 64 of a-z, 0-9 and '-', not starting with '-'");
                return Err(invalid(format!("{field}.meter"), problem));
            }
            check_amount(&format!("{field}.unit-amount-minor"), *unit_amount_minor)
        }
    }
}

fn check_amount(field: &str, amount: i64) -> Result<(), ManifestError> {
    if amount <= 0 {
        return Err(invalid(field, format!("must be greater than 0, got {amount}")));
    }
    Ok(())
}

/// The TOML as written: every field optional and loosely typed, so absence and bad values
/// become named `Missing`/`Invalid` errors rather than serde messages.
mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    pub(super) struct Manifest {
        id: Option<String>,
        version: Option<String>,
        summary: Option<String>,
        description: Option<String>,
        categories: Option<Vec<String>>,
        license: Option<String>,
        homepage: Option<String>,
        repository: Option<String>,
        contract: Option<String>,
        event_types: Option<Vec<String>>,
        capabilities: Option<BTreeMap<String, Capability>>,
        pricing: Option<Vec<Plan>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Capability {
        reason: Option<String>,
        hosts: Option<Vec<Host>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Host {
        host: Option<String>,
        reason: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Plan {
        id: Option<String>,
        name: Option<String>,
        model: Option<String>,
        // Numbers stay untyped so a float amount gets its own message.
        amount_minor: Option<toml::Value>,
        currency: Option<String>,
        interval: Option<String>,
        meter: Option<String>,
        unit_amount_minor: Option<toml::Value>,
        included_units: Option<toml::Value>,
    }

    fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ManifestError> {
        value.ok_or(ManifestError::Missing { field })
    }

    /// A required key inside a table: reported against the table, which is what is missing it.
    fn required_key<T>(value: Option<T>, table: &str, key: &str) -> Result<T, ManifestError> {
        value.ok_or_else(|| invalid(table, format!("is missing the required key {key}")))
    }

    impl Manifest {
        pub(super) fn into_manifest(self) -> Result<super::Manifest, ManifestError> {
            let id = required(self.id, "id")?;
            let id = id.parse::<PluginId>().map_err(|e| invalid("id", id_problem(e)))?;
            let version = required(self.version, "version")?;
            let version = Version::parse(&version)
                .map_err(|e| invalid("version", format!("{version:?} is not a semver version: {e}")))?;
            let summary = required(self.summary, "summary")?;
            let categories = required(self.categories, "categories")?;
            let license = required(self.license, "license")?;
            let contract = parse_contract(&required(self.contract, "contract")?)?;
            let event_types = required(self.event_types, "event-types")?;
            let capabilities = self
                .capabilities
                .unwrap_or_default()
                .into_iter()
                .map(|(name, raw)| raw.into_request(&name))
                .collect::<Result<_, _>>()?;
            let pricing = required(self.pricing, "pricing")?
                .into_iter()
                .enumerate()
                .map(|(i, raw)| raw.into_plan(&format!("pricing[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok(super::Manifest {
                id,
                version,
                summary,
                description: self.description,
                categories,
                license,
                homepage: self.homepage,
                repository: self.repository,
                contract,
                event_types,
                capabilities,
                pricing,
            })
        }
    }

    /// The manifest field is already named by the error, so drop the id error's own prefix.
    fn id_problem(error: IdError) -> String {
        match error {
            IdError::Shape { id } => format!("{id:?} must be \"publisher/name\""),
            IdError::Name { source, .. } => source.to_string(),
        }
    }

    /// Through `ContractVersion`'s serde names, so a version the host adds is accepted here
    /// without a change, and the error lists the known ones.
    fn parse_contract(text: &str) -> Result<ContractVersion, ManifestError> {
        let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = text.into_deserializer();
        ContractVersion::deserialize(deserializer).map_err(|e| invalid("contract", e.to_string()))
    }

    impl Capability {
        fn into_request(self, name: &str) -> Result<(nexus_host::Capability, CapabilityRequest), ManifestError> {
            let field = format!("capabilities.{name}");
            let capability = name.parse::<nexus_host::Capability>().map_err(|e| invalid(&field, e))?;
            let reason = required_key(self.reason, &field, "reason")?;
            let hosts = match self.hosts {
                Some(_) if capability != nexus_host::Capability::Http => {
                    return Err(invalid(format!("{field}.hosts"), "is only allowed for http"));
                }
                None if capability == nexus_host::Capability::Http => {
                    return Err(invalid(field, "is missing the required key hosts"));
                }
                hosts => hosts.unwrap_or_default(),
            };
            let hosts = hosts
                .into_iter()
                .enumerate()
                .map(|(i, host)| host.into_request(&format!("{field}.hosts[{i}]")))
                .collect::<Result<_, _>>()?;
            Ok((capability, CapabilityRequest { reason, hosts }))
        }
    }

    impl Host {
        fn into_request(self, field: &str) -> Result<HostRequest, ManifestError> {
            let host = required_key(self.host, field, "host")?;
            let host = host.parse::<HostPattern>().map_err(|e| invalid(format!("{field}.host"), e))?;
            let reason = required_key(self.reason, field, "reason")?;
            Ok(HostRequest { host, reason })
        }
    }

    impl Plan {
        fn into_plan(self, field: &str) -> Result<PricingPlan, ManifestError> {
            let id = required_key(self.id.clone(), field, "id")?;
            let name = required_key(self.name.clone(), field, "name")?;
            let model = match required_key(self.model.as_deref(), field, "model")? {
                "free" => self.into_free(field)?,
                "flat" => self.into_flat(field)?,
                "per-unit" => self.into_per_unit(field)?,
                other => {
                    let problem = format!("{other:?} must be one of free, flat, per-unit");
                    return Err(invalid(format!("{field}.model"), problem));
                }
            };
            Ok(PricingPlan { id, name, model })
        }

        /// The first key present that `model` does not use.
        fn refuse_keys(&self, field: &str, model: &str, keys: &[&str]) -> Result<(), ManifestError> {
            let present = [
                ("amount-minor", self.amount_minor.is_some()),
                ("currency", self.currency.is_some()),
                ("interval", self.interval.is_some()),
                ("meter", self.meter.is_some()),
                ("unit-amount-minor", self.unit_amount_minor.is_some()),
                ("included-units", self.included_units.is_some()),
            ];
            match present.iter().find(|(key, present)| *present && keys.contains(key)) {
                Some((key, _)) => Err(invalid(format!("{field}.{key}"), format!("is not allowed for model {model:?}"))),
                None => Ok(()),
            }
        }

        fn into_free(self, field: &str) -> Result<PricingModel, ManifestError> {
            let keys = ["amount-minor", "currency", "interval", "meter", "unit-amount-minor", "included-units"];
            self.refuse_keys(field, "free", &keys)?;
            Ok(PricingModel::Free)
        }

        fn into_flat(self, field: &str) -> Result<PricingModel, ManifestError> {
            self.refuse_keys(field, "flat", &["meter", "unit-amount-minor", "included-units"])?;
            let needs = |key: &str| invalid(field, format!("model \"flat\" requires {key}"));
            let amount = self.amount_minor.ok_or_else(|| needs("amount-minor"))?;
            let amount_minor = money(&format!("{field}.amount-minor"), amount)?;
            let currency = currency(field, self.currency.ok_or_else(|| needs("currency"))?)?;
            let interval = match self.interval.ok_or_else(|| needs("interval"))?.as_str() {
                "month" => Interval::Month,
                "year" => Interval::Year,
                other => {
                    return Err(invalid(
                        format!("{field}.interval"),
                        format!("{other:?} must be \"month\" or \"year\""),
                    ));
                }
            };
            Ok(PricingModel::Flat { amount_minor, currency, interval })
        }

        fn into_per_unit(self, field: &str) -> Result<PricingModel, ManifestError> {
            self.refuse_keys(field, "per-unit", &["amount-minor", "interval"])?;
            let needs = |key: &str| invalid(field, format!("model \"per-unit\" requires {key}"));
            let meter = self.meter.ok_or_else(|| needs("meter"))?;
            let amount = self.unit_amount_minor.ok_or_else(|| needs("unit-amount-minor"))?;
            let unit_amount_minor = money(&format!("{field}.unit-amount-minor"), amount)?;
            let currency = currency(field, self.currency.ok_or_else(|| needs("currency"))?)?;
            let included_units = match self.included_units {
                None => 0,
                Some(value) => {
                    let field = format!("{field}.included-units");
                    let units = integer(&field, value, "")?;
                    u64::try_from(units).map_err(|_| invalid(field, format!("must be 0 or more, got {units}")))?
                }
            };
            Ok(PricingModel::PerUnit { meter, unit_amount_minor, currency, included_units })
        }
    }

    fn currency(plan: &str, text: String) -> Result<Currency, ManifestError> {
        text.parse().map_err(|e: CurrencyError| invalid(format!("{plan}.currency"), e.to_string()))
    }

    fn money(field: &str, value: toml::Value) -> Result<i64, ManifestError> {
        integer(field, value, " of minor units (write 999 for 9.99)")
    }

    /// `hint` follows "must be a whole number" when a float was given.
    fn integer(field: &str, value: toml::Value, hint: &str) -> Result<i64, ManifestError> {
        match value {
            toml::Value::Integer(n) => Ok(n),
            toml::Value::Float(x) => Err(invalid(field, format!("must be a whole number{hint}, got {x:?}"))),
            other => Err(invalid(field, format!("must be an integer, got a {}", other.type_str()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = include_str!("../tests/data/nexus.toml");

    fn valid() -> Manifest {
        Manifest::from_toml(VALID).unwrap()
    }

    /// Parses `VALID` with `from` replaced by `to`; the edit must apply.
    fn edited(from: &str, to: &str) -> Result<Manifest, ManifestError> {
        assert!(VALID.contains(from), "{from:?} not in the example");
        Manifest::from_toml(&VALID.replacen(from, to, 1))
    }

    fn invalid_err(field: &str, problem: &str) -> ManifestError {
        ManifestError::Invalid { field: field.into(), problem: problem.into() }
    }

    fn host(text: &str) -> HostPattern {
        text.parse().unwrap()
    }

    #[test]
    fn parses_every_field_of_the_full_example() {
        let m = valid();
        assert_eq!(m.id.to_string(), "acme/chat-notifier");
        assert_eq!(m.version, Version::new(1, 2, 0));
        assert_eq!(m.summary, "Post marketplace events to your team chat");
        assert_eq!(
            m.description.as_deref(),
            Some(
                "Posts a message to your team chat for each event.\n\nStore the webhook URL as the secret `webhook-url`."
            )
        );
        assert_eq!(m.categories, ["messaging", "notifications"]);
        assert_eq!(m.license, "Apache-2.0");
        assert_eq!(m.homepage.as_deref(), Some("https://example.com"));
        assert_eq!(m.repository.as_deref(), Some("https://github.com/acme/chat-notifier"));
        assert_eq!(m.contract, ContractVersion::V1_0);
        assert_eq!(m.event_types, ["invoice.paid", "user.signup"]);

        let request = |reason: &str, hosts: Vec<HostRequest>| CapabilityRequest { reason: reason.into(), hosts };
        let expected_capabilities = BTreeMap::from([
            (Capability::Log, request("Records what was sent", vec![])),
            (Capability::Secrets, request("Stores the webhook URL", vec![])),
            (
                Capability::Http,
                request(
                    "Posts to your chat webhook",
                    vec![
                        HostRequest { host: host("hooks.slack.com"), reason: "Slack incoming webhooks".into() },
                        HostRequest {
                            host: host("*.webhook.office.com:443"),
                            reason: "Microsoft Teams webhooks".into(),
                        },
                    ],
                ),
            ),
            (Capability::Usage, request("Counts messages sent, for per-message pricing", vec![])),
        ]);
        assert_eq!(m.capabilities, expected_capabilities);

        let usd: Currency = "USD".parse().unwrap();
        let eur: Currency = "EUR".parse().unwrap();
        assert_eq!((usd.to_string(), format!("{eur:?}")), ("USD".to_string(), "Currency(EUR)".to_string()));
        let plan = |id: &str, name: &str, model| PricingPlan { id: id.into(), name: name.into(), model };
        assert_eq!(
            m.pricing,
            [
                plan("free", "Free", PricingModel::Free),
                plan(
                    "team",
                    "Team",
                    PricingModel::Flat { amount_minor: 900, currency: usd, interval: Interval::Month }
                ),
                plan(
                    "per-message",
                    "Pay as you go",
                    PricingModel::PerUnit {
                        meter: "messages-sent".into(),
                        unit_amount_minor: 2,
                        currency: eur,
                        included_units: 1000
                    }
                ),
            ]
        );
        assert_eq!(m.requested_hosts(), [host("hooks.slack.com"), host("*.webhook.office.com:443")]);
        assert_eq!(
            m.capability_set(),
            BTreeSet::from([Capability::Log, Capability::Secrets, Capability::Http, Capability::Usage])
        );
    }

    #[test]
    fn minimal_manifest_uses_defaults() {
        let text = r#"
            id = "a/b"
            version = "0.1.0-alpha.1"
            summary = "S"
            categories = ["tax"]
            license = "MIT OR Apache-2.0"
            contract = "1.1"
            event-types = ["*"]
            [[pricing]]
            id = "p"
            name = "Metered"
            model = "per-unit"
            meter = "calls"
            unit-amount-minor = 1
            currency = "JPY"
        "#;
        let m = Manifest::from_toml(text).unwrap();
        assert_eq!(m.version, Version::parse("0.1.0-alpha.1").unwrap());
        assert_eq!((&m.description, &m.homepage, &m.repository), (&None, &None, &None));
        assert_eq!(m.contract, ContractVersion::V1_1);
        assert_eq!(m.capabilities, BTreeMap::new());
        assert_eq!(m.requested_hosts(), []);
        let PricingModel::PerUnit { included_units, .. } = &m.pricing[0].model else { panic!("{:?}", m.pricing[0]) };
        assert_eq!(*included_units, 0);
    }

    #[test]
    fn json_form_has_the_toml_shape_and_round_trips() {
        let m = valid();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["event-types"], serde_json::json!(["invoice.paid", "user.signup"]));
        assert_eq!(json["contract"], "1.0");
        assert_eq!(json["version"], "1.2.0");
        assert_eq!(
            json["capabilities"]["http"]["hosts"][1],
            serde_json::json!({"host": "*.webhook.office.com:443", "reason": "Microsoft Teams webhooks"})
        );
        assert_eq!(json["capabilities"]["log"], serde_json::json!({"reason": "Records what was sent"}));
        assert_eq!(
            json["pricing"][1],
            serde_json::json!({"id": "team", "name": "Team", "model": "flat", "amount-minor": 900, "currency": "USD", "interval": "month"})
        );
        assert_eq!(json["pricing"][0], serde_json::json!({"id": "free", "name": "Free", "model": "free"}));
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn validate_checks_manifests_read_from_json() {
        let mut m = valid();
        m.pricing.clear();
        assert_eq!(m.validate(), Err(invalid_err("pricing", "must list at least one plan")));

        let mut m = valid();
        m.capabilities.insert(
            Capability::Kv,
            CapabilityRequest {
                reason: "State".into(),
                hosts: vec![HostRequest { host: host("x.com"), reason: "r".into() }],
            },
        );
        assert_eq!(m.validate(), Err(invalid_err("capabilities.kv.hosts", "is only allowed for http")));

        let mut json = serde_json::to_value(valid()).unwrap();
        json["pricing"][1]["currency"] = "usd".into();
        let err = serde_json::from_value::<Manifest>(json).unwrap_err().to_string();
        assert_eq!(err, r#""usd" must be 3 uppercase letters (ISO 4217)"#);
    }

    #[test]
    fn syntax_errors_say_where() {
        let cases = [
            (
                ("id = \"acme/chat-notifier\"", "id = \"acme/chat-notifier"),
                "line 2, column 25: invalid basic string, expected `\"`",
            ),
            (
                ("license = \"Apache-2.0\"", "license = \"Apache-2.0\"\ncolour = \"red\""),
                "line 11, column 1: unknown field `colour`, expected one of `id`, `version`, `summary`, `description`, \
                 `categories`, `license`, `homepage`, `repository`, `contract`, `event-types`, `capabilities`, `pricing`",
            ),
            (
                ("reason = \"Records what was sent\"", "reasn = \"Records what was sent\""),
                "line 17, column 1: unknown field `reasn`, expected `reason` or `hosts`",
            ),
            (("version = \"1.2.0\"", "version = 1"), "line 3, column 11: invalid type: integer `1`, expected a string"),
            (
                ("categories = [\"messaging\", \"notifications\"]", "categories = \"messaging\""),
                "line 9, column 14: invalid type: string \"messaging\", expected a sequence",
            ),
        ];
        for ((from, to), expected) in cases {
            let err = edited(from, to).unwrap_err();
            assert_eq!(
                (err.code(), err.to_string()),
                ("manifest_syntax", format!("manifest syntax error: {expected}"))
            );
        }
    }

    #[test]
    fn missing_fields_are_named() {
        for (line, field) in [
            ("id = \"acme/chat-notifier\"\n", "id"),
            ("version = \"1.2.0\"\n", "version"),
            ("summary = \"Post marketplace events to your team chat\"\n", "summary"),
            ("categories = [\"messaging\", \"notifications\"]\n", "categories"),
            ("license = \"Apache-2.0\"\n", "license"),
            ("contract = \"1.0\"\n", "contract"),
            ("event-types = [\"invoice.paid\", \"user.signup\"]\n", "event-types"),
        ] {
            let err = edited(line, "").unwrap_err();
            assert_eq!(err, ManifestError::Missing { field });
            assert_eq!(err.code(), "manifest_missing_field");
            assert_eq!(err.to_string(), format!("manifest is missing the required field {field}"));
        }
        let without_pricing = &VALID[..VALID.find("[[pricing]]").unwrap()];
        let err = Manifest::from_toml(without_pricing).unwrap_err();
        assert_eq!(err.to_string(), "manifest is missing the required field pricing");
    }

    /// (edit from, edit to, field, problem)
    const REJECTIONS: &[(&str, &str, &str, &str)] = &[
        // Identity
        (
            r#""acme/chat-notifier""#,
            r#""Acme/chat-notifier""#,
            "id",
            r#"publisher "Acme" must be lowercase letters, digits and '-'"#,
        ),
        (r#""acme/chat-notifier""#, r#""chat-notifier""#, "id", r#""chat-notifier" must be "publisher/name""#),
        (
            r#""1.2.0""#,
            r#""1.2""#,
            "version",
            r#""1.2" is not a semver version: unexpected end of input while parsing minor version number"#,
        ),
        // Listing text
        ("summary = \"Post marketplace events to your team chat\"", "summary = \"  \"", "summary", "must not be empty"),
        (
            "summary = \"Post marketplace events to your team chat\"",
            "summary = \"one\\ntwo\"",
            "summary",
            "must be a single line",
        ),
        ("[\"messaging\", \"notifications\"]", "[]", "categories", "must list 1 to 5 categories, got 0"),
        (
            "[\"messaging\", \"notifications\"]",
            "[\"tax\", \"crm\", \"billing\", \"finance\", \"support\", \"security\"]",
            "categories",
            "must list 1 to 5 categories, got 6",
        ),
        (
            "[\"messaging\", \"notifications\"]",
            "[\"messaging\", \"games\"]",
            "categories[1]",
            "\"games\" is not a category (expected one of analytics, billing, compliance, crm, developer-tools, \
             finance, marketing, messaging, notifications, productivity, security, support, tax)",
        ),
        (
            "[\"messaging\", \"notifications\"]",
            "[\"messaging\", \"messaging\"]",
            "categories[1]",
            "\"messaging\" is listed twice",
        ),
        (
            "\"Apache-2.0\"",
            "\"MIT/X11\"",
            "license",
            "\"MIT/X11\" must be an SPDX license expression: 1 to 64 letters, digits, spaces and . + - ( )",
        ),
        (
            "\"https://example.com\"",
            "\"ftp://example.com\"",
            "homepage",
            "\"ftp://example.com\" must be an http(s) URL",
        ),
        (
            "\"https://github.com/acme/chat-notifier\"",
            "\"github.com/acme\"",
            "repository",
            "\"github.com/acme\" must be an http(s) URL",
        ),
        ("contract = \"1.0\"", "contract = \"2.0\"", "contract", "unknown variant `2.0`, expected `1.0` or `1.1`"),
        // Event types
        ("[\"invoice.paid\", \"user.signup\"]", "[]", "event-types", "must list 1 to 64 event types, got 0"),
        (
            "[\"invoice.paid\", \"user.signup\"]",
            "[\"invoice.paid\", \"Invoice.Paid\"]",
            "event-types[1]",
            "\"Invoice.Paid\" must be \"*\" or dot-separated segments of lowercase letters, digits, '_' and '-'",
        ),
        (
            "[\"invoice.paid\", \"user.signup\"]",
            "[\"invoice..paid\"]",
            "event-types[0]",
            "\"invoice..paid\" must be \"*\" or dot-separated segments of lowercase letters, digits, '_' and '-'",
        ),
        (
            "[\"invoice.paid\", \"user.signup\"]",
            "[\"user.signup\", \"user.signup\"]",
            "event-types[1]",
            "\"user.signup\" is listed twice",
        ),
        // Capabilities
        (
            "[capabilities.secrets]",
            "[capabilities.email]",
            "capabilities.email",
            "unknown capability `email` (expected one of log, config, secrets, kv, http, usage)",
        ),
        ("reason = \"Records what was sent\"", "", "capabilities.log", "is missing the required key reason"),
        ("reason = \"Records what was sent\"", "reason = \"\"", "capabilities.log.reason", "must not be empty"),
        (
            "reason = \"Stores the webhook URL\"",
            "reason = \"x\"\nhosts = []",
            "capabilities.secrets.hosts",
            "is only allowed for http",
        ),
        (
            "{ host = \"hooks.slack.com\", reason = \"Slack incoming webhooks\" }",
            "{ host = \"hooks slack.com\", reason = \"Slack incoming webhooks\" }",
            "capabilities.http.hosts[0].host",
            "invalid allowed host `hooks slack.com`: expected a host name, host:port or *.domain",
        ),
        (
            "{ host = \"hooks.slack.com\", reason = \"Slack incoming webhooks\" }",
            "{ host = \"hooks.slack.com\" }",
            "capabilities.http.hosts[0]",
            "is missing the required key reason",
        ),
        (
            "{ host = \"*.webhook.office.com:443\", reason = \"Microsoft Teams webhooks\" }",
            "{ host = \"hooks.slack.com\", reason = \"again\" }",
            "capabilities.http.hosts[1].host",
            "\"hooks.slack.com\" is listed twice",
        ),
        // Pricing
        ("id = \"free\"", "id = \"Free\"", "pricing[0].id", "\"Free\" must be 1 to 32 of a-z, 0-9 and '-'"),
        ("id = \"team\"", "id = \"free\"", "pricing[1].id", "\"free\" is already used by pricing[0]"),
        ("name = \"Free\"\n", "", "pricing[0]", "is missing the required key name"),
        ("name = \"Team\"", "name = \"\"", "pricing[1].name", "must not be empty"),
        (
            "model = \"free\"",
            "model = \"tiered\"",
            "pricing[0].model",
            "\"tiered\" must be one of free, flat, per-unit",
        ),
        (
            "model = \"free\"",
            "model = \"free\"\ncurrency = \"USD\"",
            "pricing[0].currency",
            "is not allowed for model \"free\"",
        ),
        ("interval = \"month\"\n", "", "pricing[1]", "model \"flat\" requires interval"),
        (
            "interval = \"month\"",
            "interval = \"week\"",
            "pricing[1].interval",
            "\"week\" must be \"month\" or \"year\"",
        ),
        (
            "currency = \"USD\"",
            "currency = \"usd\"",
            "pricing[1].currency",
            "\"usd\" must be 3 uppercase letters (ISO 4217)",
        ),
        (
            "currency = \"EUR\"",
            "currency = \"EURO\"",
            "pricing[2].currency",
            "\"EURO\" must be 3 uppercase letters (ISO 4217)",
        ),
        (
            "amount-minor = 900",
            "amount-minor = 9.00",
            "pricing[1].amount-minor",
            "must be a whole number of minor units (write 999 for 9.99), got 9.0",
        ),
        ("amount-minor = 900", "amount-minor = \"900\"", "pricing[1].amount-minor", "must be an integer, got a string"),
        ("amount-minor = 900", "amount-minor = 0", "pricing[1].amount-minor", "must be greater than 0, got 0"),
        (
            "unit-amount-minor = 2",
            "unit-amount-minor = -2",
            "pricing[2].unit-amount-minor",
            "must be greater than 0, got -2",
        ),
        (
            "unit-amount-minor = 2",
            "unit-amount-minor = 0.02",
            "pricing[2].unit-amount-minor",
            "must be a whole number of minor units (write 999 for 9.99), got 0.02",
        ),
        (
            "meter = \"messages-sent\"",
            "meter = \"Messages\"",
            "pricing[2].meter",
            "\"Messages\" must be 1 to 64 of a-z, 0-9 and '-', not starting with '-'",
        ),
        ("meter = \"messages-sent\"\n", "", "pricing[2]", "model \"per-unit\" requires meter"),
        ("included-units = 1000", "included-units = -1", "pricing[2].included-units", "must be 0 or more, got -1"),
        (
            "included-units = 1000",
            "included-units = 1.5",
            "pricing[2].included-units",
            "must be a whole number, got 1.5",
        ),
        (
            "included-units = 1000",
            "interval = \"month\"",
            "pricing[2].interval",
            "is not allowed for model \"per-unit\"",
        ),
    ];

    #[test]
    fn each_rule_rejects_with_a_named_field() {
        for &(from, to, field, problem) in REJECTIONS {
            let err = edited(from, to).unwrap_err();
            assert_eq!(err, invalid_err(field, problem), "{from:?} -> {to:?}");
            assert_eq!(err.code(), "manifest_invalid_field");
            assert_eq!(err.to_string(), format!("manifest field {field} is invalid: {problem}"));
        }
    }

    #[test]
    fn http_needs_hosts() {
        let without_hosts = VALID.replacen(
            "hosts = [\n  { host = \"hooks.slack.com\", reason = \"Slack incoming webhooks\" },\n  \
             { host = \"*.webhook.office.com:443\", reason = \"Microsoft Teams webhooks\" },\n]\n",
            "",
            1,
        );
        assert_ne!(without_hosts, VALID);
        let err = Manifest::from_toml(&without_hosts).unwrap_err();
        assert_eq!(err, invalid_err("capabilities.http", "is missing the required key hosts"));
        let empty_hosts =
            without_hosts.replacen("reason = \"Posts to your chat webhook\"", "reason = \"x\"\nhosts = []", 1);
        let err = Manifest::from_toml(&empty_hosts).unwrap_err();
        assert_eq!(err, invalid_err("capabilities.http.hosts", "must list at least one host"));
    }

    #[test]
    fn length_limits_are_exact() {
        let at = |n: usize| "x".repeat(n);
        let summary = |s: &str| edited("Post marketplace events to your team chat", s);
        assert_eq!(summary(&at(140)).unwrap().summary.len(), 140);
        assert_eq!(summary(&at(141)).unwrap_err(), invalid_err("summary", "must be at most 140 characters, got 141"));
        // Characters, not bytes: 140 two-byte characters fit.
        assert_eq!(summary(&"é".repeat(140)).unwrap().summary.chars().count(), 140);

        let description =
            |n: usize| edited("description = \"\"\"", &format!("description = \"{}\"\nx = \"\"\"", at(n)));
        assert!(matches!(description(0), Err(ManifestError::Syntax(_))));
        let mut m = valid();
        m.description = Some(at(20_000));
        assert_eq!(m.validate(), Ok(()));
        m.description = Some(at(20_001));
        assert_eq!(m.validate(), Err(invalid_err("description", "must be at most 20000 characters, got 20001")));

        let reason = |s: &str| edited("\"Records what was sent\"", &format!("{s:?}"));
        assert_eq!(reason(&at(280)).unwrap().capabilities[&Capability::Log].reason.len(), 280);
        assert_eq!(
            reason(&at(281)).unwrap_err(),
            invalid_err("capabilities.log.reason", "must be at most 280 characters, got 281")
        );

        let event = |s: &str| edited("\"user.signup\"", &format!("{s:?}"));
        assert_eq!(event(&at(64)).unwrap().event_types[1], at(64));
        assert_eq!(event(&at(65)).unwrap_err(), invalid_err("event-types[1]", "must be at most 64 characters, got 65"));
        let many: Vec<String> = (0..65).map(|i| format!("e{i}")).collect();
        let err = edited("[\"invoice.paid\", \"user.signup\"]", &format!("{many:?}")).unwrap_err();
        assert_eq!(err, invalid_err("event-types", "must list 1 to 64 event types, got 65"));

        let plan_id = |s: &str| edited("id = \"free\"", &format!("id = {s:?}"));
        assert_eq!(plan_id(&at(32)).unwrap().pricing[0].id, at(32));
        assert_eq!(
            plan_id(&at(33)).unwrap_err(),
            invalid_err("pricing[0].id", &format!("{:?} must be 1 to 32 of a-z, 0-9 and '-'", at(33)))
        );
        let plan_name = |s: &str| edited("name = \"Free\"", &format!("name = {s:?}"));
        assert_eq!(plan_name(&at(64)).unwrap().pricing[0].name, at(64));
        assert_eq!(
            plan_name(&at(65)).unwrap_err(),
            invalid_err("pricing[0].name", "must be at most 64 characters, got 65")
        );

        let license = |s: &str| edited("\"Apache-2.0\"", &format!("{s:?}"));
        assert_eq!(
            license("(MIT OR Apache-2.0) AND BSD-3-Clause").unwrap().license,
            "(MIT OR Apache-2.0) AND BSD-3-Clause"
        );
        assert_eq!(license(&at(64)).unwrap().license, at(64));
        assert!(license(&at(65)).is_err_and(|e| e.code() == "manifest_invalid_field"));
    }

    mod never_panics {
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;

        /// Applies byte flips and line deletions to the valid example.
        fn mutate(flips: &[(Index, u8)], deletions: &[Index]) -> String {
            let mut bytes = VALID.as_bytes().to_vec();
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at.index(len)] ^= value;
            }
            let text = String::from_utf8_lossy(&bytes);
            let mut lines: Vec<&str> = text.lines().collect();
            for at in deletions {
                if !lines.is_empty() {
                    lines.remove(at.index(lines.len()));
                }
            }
            lines.join("\n")
        }

        /// Whatever parses is valid and survives the JSON storage round trip unchanged.
        fn check(text: &str) -> Result<(), TestCaseError> {
            if let Ok(manifest) = Manifest::from_toml(text) {
                prop_assert_eq!(manifest.validate(), Ok(()));
                let json = serde_json::to_string(&manifest).unwrap();
                prop_assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), manifest);
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn arbitrary_text(text in any::<String>()) {
                check(&text)?;
            }

            #[test]
            fn mutated_valid_manifests(
                flips in proptest::collection::vec((any::<Index>(), 1..=255u8), 0..6),
                deletions in proptest::collection::vec(any::<Index>(), 0..4),
            ) {
                check(&mutate(&flips, &deletions))?;
            }
        }
    }
}
