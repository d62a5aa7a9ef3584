//! The TOML as written: every field optional and loosely typed, so absence and bad values
//! become named `Missing`/`Invalid` errors rather than serde messages.

use std::collections::BTreeMap;

use nexus_host::{ContractVersion, HostPattern};
use semver::Version;
use serde::Deserialize;
use serde::de::IntoDeserializer;

use super::{CapabilityRequest, Currency, HostRequest, Interval, ManifestError, PricingModel, PricingPlan, invalid};
use crate::id::{IdError, PluginId};

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

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Plan {
    id: Option<String>,
    name: Option<String>,
    model: Option<String>,
    // Numbers stay untyped so a float amount gets its own message.
    price: Option<toml::Value>,
    amount_minor: Option<toml::Value>,
    currency: Option<String>,
    interval: Option<String>,
    meter: Option<String>,
    unit_price: Option<toml::Value>,
    unit_amount_minor: Option<toml::Value>,
    included_units: Option<toml::Value>,
    trial_days: Option<toml::Value>,
    cap: Option<toml::Value>,
    cap_minor: Option<toml::Value>,
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

impl Plan {
    fn into_plan(self, field: &str) -> Result<PricingPlan, ManifestError> {
        let id = required_key(self.id.clone(), field, "id")?;
        let name = required_key(self.name.clone(), field, "name")?;
        let model = match required_key(self.model.as_deref(), field, "model")? {
            "free" => self.into_free(field)?,
            "subscription" | "flat" => self.into_subscription(field)?,
            "usage" | "per-unit" => self.into_usage(field)?,
            "one-time" => self.into_one_time(field)?,
            other => {
                let problem = format!("{other:?} must be one of free, subscription, usage, one-time");
                return Err(invalid(format!("{field}.model"), problem));
            }
        };
        Ok(PricingPlan { id, name, model })
    }

    /// The first key present that `model` does not use.
    fn refuse_keys(&self, field: &str, model: &str, keys: &[&str]) -> Result<(), ManifestError> {
        let present = [
            ("price", self.price.is_some()),
            ("amount-minor", self.amount_minor.is_some()),
            ("currency", self.currency.is_some()),
            ("interval", self.interval.is_some()),
            ("meter", self.meter.is_some()),
            ("unit-price", self.unit_price.is_some()),
            ("unit-amount-minor", self.unit_amount_minor.is_some()),
            ("included-units", self.included_units.is_some()),
            ("trial-days", self.trial_days.is_some()),
            ("cap", self.cap.is_some()),
            ("cap-minor", self.cap_minor.is_some()),
        ];
        match present.iter().find(|(key, present)| *present && keys.contains(key)) {
            Some((key, _)) => Err(invalid(format!("{field}.{key}"), format!("is not allowed for model {model:?}"))),
            None => Ok(()),
        }
    }

    fn into_free(self, field: &str) -> Result<PricingModel, ManifestError> {
        let keys = [
            "price",
            "amount-minor",
            "currency",
            "interval",
            "meter",
            "unit-price",
            "unit-amount-minor",
            "included-units",
            "trial-days",
            "cap",
            "cap-minor",
        ];
        self.refuse_keys(field, "free", &keys)?;
        Ok(PricingModel::Free)
    }

    fn into_subscription(self, field: &str) -> Result<PricingModel, ManifestError> {
        let keys = ["meter", "unit-price", "unit-amount-minor", "included-units", "cap", "cap-minor"];
        self.refuse_keys(field, "subscription", &keys)?;
        let needs = |key: &str| invalid(field, format!("model \"subscription\" requires {key}"));
        let currency = currency(field, self.currency.ok_or_else(|| needs("currency"))?)?;
        let amount_minor = Amount::new(field, "price", self.price, "amount-minor", self.amount_minor)
            .read(currency)?
            .ok_or_else(|| needs("price"))?;
        let interval = match self.interval.ok_or_else(|| needs("interval"))?.as_str() {
            "month" => Interval::Month,
            "year" => Interval::Year,
            other => {
                return Err(invalid(format!("{field}.interval"), format!("{other:?} must be \"month\" or \"year\"")));
            }
        };
        let trial_days = match self.trial_days {
            None => 0,
            Some(value) => {
                let field = format!("{field}.trial-days");
                let days = integer(&field, value, "")?;
                u32::try_from(days).map_err(|_| invalid(field, format!("must be 0 or more, got {days}")))?
            }
        };
        Ok(PricingModel::Subscription { amount_minor, currency, interval, trial_days })
    }

    fn into_one_time(self, field: &str) -> Result<PricingModel, ManifestError> {
        let keys = [
            "interval",
            "meter",
            "unit-price",
            "unit-amount-minor",
            "included-units",
            "trial-days",
            "cap",
            "cap-minor",
        ];
        self.refuse_keys(field, "one-time", &keys)?;
        let needs = |key: &str| invalid(field, format!("model \"one-time\" requires {key}"));
        let currency = currency(field, self.currency.ok_or_else(|| needs("currency"))?)?;
        let amount_minor = Amount::new(field, "price", self.price, "amount-minor", self.amount_minor)
            .read(currency)?
            .ok_or_else(|| needs("price"))?;
        Ok(PricingModel::OneTime { amount_minor, currency })
    }

    fn into_usage(self, field: &str) -> Result<PricingModel, ManifestError> {
        self.refuse_keys(field, "usage", &["price", "amount-minor", "interval", "trial-days"])?;
        let needs = |key: &str| invalid(field, format!("model \"usage\" requires {key}"));
        let meter = self.meter.ok_or_else(|| needs("meter"))?;
        let currency = currency(field, self.currency.ok_or_else(|| needs("currency"))?)?;
        let unit_amount_minor =
            Amount::new(field, "unit-price", self.unit_price, "unit-amount-minor", self.unit_amount_minor)
                .read(currency)?
                .ok_or_else(|| needs("unit-price"))?;
        let included_units = match self.included_units {
            None => 0,
            Some(value) => {
                let field = format!("{field}.included-units");
                let units = integer(&field, value, "")?;
                u64::try_from(units).map_err(|_| invalid(field, format!("must be 0 or more, got {units}")))?
            }
        };
        let cap_minor = Amount::new(field, "cap", self.cap, "cap-minor", self.cap_minor).read(currency)?;
        Ok(PricingModel::Usage { meter, unit_amount_minor, currency, included_units, cap_minor })
    }
}

/// An amount a plan may write two ways: a decimal in the currency (`price = "9.00"`), or
/// the older integer of minor units (`amount-minor = 900`, still read, with a warning).
struct Amount<'a> {
    plan: &'a str,
    decimal_key: &'static str,
    decimal: Option<toml::Value>,
    minor_key: &'static str,
    minor: Option<toml::Value>,
}

impl<'a> Amount<'a> {
    fn new(
        plan: &'a str,
        decimal_key: &'static str,
        decimal: Option<toml::Value>,
        minor_key: &'static str,
        minor: Option<toml::Value>,
    ) -> Self {
        Self { plan, decimal_key, decimal, minor_key, minor }
    }

    fn read(self, currency: Currency) -> Result<Option<i64>, ManifestError> {
        let (plan, key) = (self.plan, self.decimal_key);
        match (self.decimal, self.minor) {
            (Some(_), Some(_)) => Err(invalid(
                format!("{plan}.{}", self.minor_key),
                format!("give {key} or {}, not both (write {key} = \"9.00\")", self.minor_key),
            )),
            (Some(value), None) => decimal(&format!("{plan}.{key}"), value, currency).map(Some),
            (None, Some(value)) => money(&format!("{plan}.{}", self.minor_key), value).map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// A decimal amount in major units, written as a string so that no float is involved:
/// `"9.00"`, `"1200"` (JPY), `"0.125"` (KWD); more than zero.
fn decimal(field: &str, value: toml::Value, currency: Currency) -> Result<i64, ManifestError> {
    let example = match currency.exponent() {
        0 => "\"1200\"".to_string(),
        n => format!("\"9.{}\"", "9".repeat(n as usize)),
    };
    let text = match value {
        toml::Value::String(text) => text,
        toml::Value::Integer(n) => {
            return Err(invalid(field, format!("must be a decimal string in {currency}, such as {example}; got {n}")));
        }
        toml::Value::Float(x) => {
            return Err(invalid(
                field,
                format!("must be a decimal string in {currency}, such as {example}; got {x:?}"),
            ));
        }
        other => return Err(invalid(field, format!("must be a decimal string, got a {}", other.type_str()))),
    };
    let amount = nexus_money::Money::parse(&text, currency)
        .map_err(|e| invalid(field, format!("{e}; write it like {example}")))?;
    if amount.minor <= 0 {
        return Err(invalid(field, format!("must be greater than 0, got {text:?}")));
    }
    Ok(amount.minor)
}

fn currency(plan: &str, text: String) -> Result<Currency, ManifestError> {
    Currency::from_code(&text).map_err(|e| invalid(format!("{plan}.currency"), e.to_string()))
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
