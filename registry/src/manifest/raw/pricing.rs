//! `[[pricing]]` as written: each plan's model and the keys it may use, and amounts written
//! as decimals (or, still read, as integers of minor units).

use serde::Deserialize;

use super::required_key;
use crate::manifest::{Currency, Interval, ManifestError, PricingModel, PricingPlan, invalid};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct Plan {
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

impl Plan {
    pub(super) fn into_plan(self, field: &str) -> Result<PricingPlan, ManifestError> {
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
