//! The TOML as written: every field optional and loosely typed, so absence and bad values
//! become named `Missing`/`Invalid` errors rather than serde messages.

use std::collections::BTreeMap;

use nexus_host::{ContractVersion, HostPattern};
use semver::Version;
use serde::Deserialize;
use serde::de::IntoDeserializer;

use super::{CapabilityRequest, HostRequest, ManifestError, invalid};
use crate::id::{IdError, PluginId};

mod pricing;

use pricing::Plan;

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
    ordered_delivery: Option<toml::Value>,
    schedules: Option<Vec<Schedule>>,
    capabilities: Option<BTreeMap<String, Capability>>,
    settings: Option<Vec<Setting>>,
    pricing: Option<Vec<Plan>>,
    changelog: Option<String>,
    links: Option<super::Links>,
    media: Option<super::Media>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Setting {
    name: Option<String>,
    description: Option<String>,
    secret: Option<toml::Value>,
    required: Option<toml::Value>,
}

impl Setting {
    fn into_setting(self, field: &str) -> Result<super::Setting, ManifestError> {
        let flag = |value: Option<toml::Value>, key: &str| match value {
            None => Ok(false),
            Some(toml::Value::Boolean(flag)) => Ok(flag),
            Some(other) => {
                Err(invalid(format!("{field}.{key}"), format!("must be true or false, not a {}", other.type_str())))
            }
        };
        Ok(super::Setting {
            name: required_key(self.name, field, "name")?,
            description: required_key(self.description, field, "description")?,
            secret: flag(self.secret, "secret")?,
            required: flag(self.required, "required")?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Schedule {
    id: Option<String>,
    cron: Option<String>,
    missed: Option<String>,
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
        let ordered_delivery = match self.ordered_delivery {
            None => false,
            Some(toml::Value::Boolean(ordered)) => ordered,
            Some(other) => {
                return Err(invalid("ordered-delivery", format!("must be true or false, not a {}", other.type_str())));
            }
        };
        let schedules = schedules(self.schedules.unwrap_or_default(), &event_types)?;
        let capabilities = self
            .capabilities
            .unwrap_or_default()
            .into_iter()
            .map(|(name, raw)| raw.into_request(&name))
            .collect::<Result<_, _>>()?;
        let settings = self
            .settings
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, raw)| raw.into_setting(&format!("settings[{i}]")))
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
            ordered_delivery,
            schedules,
            capabilities,
            settings,
            pricing,
            changelog: self.changelog,
            links: self.links.unwrap_or_default(),
            media: self.media.unwrap_or_default(),
        })
    }
}

/// `[[schedules]]`, each checked: an id unique among them, a 5-field cron expression, what
/// to do with missed slots; a plugin with schedules must handle `schedule.tick`.
fn schedules(raw: Vec<Schedule>, event_types: &[String]) -> Result<Vec<super::Schedule>, ManifestError> {
    if raw.len() > super::MAX_SCHEDULES {
        return Err(invalid("schedules", format!("at most {} schedules, not {}", super::MAX_SCHEDULES, raw.len())));
    }
    let mut schedules: Vec<super::Schedule> = Vec::with_capacity(raw.len());
    for (i, schedule) in raw.into_iter().enumerate() {
        let field = format!("schedules[{i}]");
        let id = required_key(schedule.id, &field, "id")?;
        let id_ok = (1..=32).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(invalid(format!("{field}.id"), format!("{id:?} must be 1 to 32 of a-z, 0-9 and -")));
        }
        if schedules.iter().any(|earlier| earlier.id == id) {
            return Err(invalid(format!("{field}.id"), format!("{id:?} is used by another schedule")));
        }
        let cron = required_key(schedule.cron, &field, "cron")?;
        let cron = crate::cron::Cron::parse(&cron).map_err(|problem| invalid(format!("{field}.cron"), problem))?;
        let missed = match schedule.missed.as_deref() {
            None | Some("skip") => super::Missed::Skip,
            Some("catch-up") => super::Missed::CatchUp,
            Some(other) => {
                return Err(invalid(format!("{field}.missed"), format!("{other:?} must be \"skip\" or \"catch-up\"")));
            }
        };
        schedules.push(super::Schedule { id, cron: cron.to_string(), missed });
    }
    if !schedules.is_empty() && !event_types.iter().any(|t| t == "*" || t == super::SCHEDULE_TICK) {
        return Err(invalid(
            "event-types",
            format!("must include {} for the plugin's schedules", super::SCHEDULE_TICK),
        ));
    }
    Ok(schedules)
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
