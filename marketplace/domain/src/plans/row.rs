//! A plan revision as stored.

use super::{Plan, UsageTerms};
use crate::error::MarketError;
use crate::error::money_error;
use crate::error::stored_currency;
use crate::ids::PlanId;

/// A row of [`COLUMNS`], as stored.
#[derive(sqlx::FromRow)]
pub(super) struct PlanRow {
    id: PlanId,
    plugin_id: String,
    plan_key: String,
    revision: i64,
    name: String,
    model: String,
    currency: Option<String>,
    price_minor: i64,
    billing_interval: Option<String>,
    trial_days: i64,
    meter: Option<String>,
    unit_minor: Option<i64>,
    included_units: Option<i64>,
    cap_minor: Option<i64>,
    created_at: i64,
    retired_at: Option<i64>,
}

impl TryFrom<PlanRow> for Plan {
    type Error = MarketError;

    fn try_from(row: PlanRow) -> Result<Self, MarketError> {
        let usage = row.meter.map(|meter| UsageTerms {
            meter,
            unit_minor: row.unit_minor.unwrap_or(0),
            included_units: u64::try_from(row.included_units.unwrap_or(0)).unwrap_or(0),
            cap_minor: row.cap_minor,
        });
        Ok(Plan {
            id: row.id,
            plugin: row.plugin_id,
            key: row.plan_key,
            revision: row.revision,
            name: row.name,
            model: row.model.parse()?,
            currency: row.currency.as_deref().map(stored_currency).transpose()?,
            price_minor: row.price_minor,
            interval: row.billing_interval.map(|i| i.parse().map_err(money_error)).transpose()?,
            trial_days: u32::try_from(row.trial_days).unwrap_or(0),
            usage,
            created_at: row.created_at,
            retired_at: row.retired_at,
        })
    }
}
