//! The lowest price a listing asks, as its catalog card shows it.

use nexus_money::Currency;
use nexus_money::period::Interval;
use serde::{Deserialize, Serialize};

use super::{Plan, PlanModel};

/// The lowest price a listing asks, for its catalog card ("from 9.00 USD a month").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PriceFrom {
    pub model: PlanModel,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    /// The one-time price, the base fee of each period, or (a plan with no base fee) the
    /// price of one unit of `meter`, in minor units.
    pub amount_minor: i64,
    #[schema(value_type = Option<String>)]
    pub interval: Option<Interval>,
    /// The meter usage is billed on (a usage plan, or a subscription with usage on top).
    pub meter: Option<String>,
}

impl PriceFrom {
    /// `49.00 EUR once`, `9.00 USD a month plus usage`, `0.02 USD per emails-sent`.
    pub fn terms(&self) -> String {
        let amount = nexus_money::Money::new(self.amount_minor, self.currency).to_string();
        let every = self.interval.map_or("month", |i| i.as_str());
        match (self.model, &self.meter) {
            (PlanModel::OneTime, _) => format!("{amount} once"),
            (PlanModel::Usage, Some(meter)) if self.amount_minor > 0 && self.interval.is_none() => {
                format!("{amount} per {meter}")
            }
            (_, Some(_)) => format!("{amount} a {every} plus usage"),
            _ => format!("{amount} a {every}"),
        }
    }
}

/// The lowest paid price among `offered` (in the currency of the first paid plan; prices in
/// different currencies are not compared), or `None` when every plan is free.
pub fn price_from(offered: &[Plan]) -> Option<PriceFrom> {
    let paid: Vec<&Plan> = offered.iter().filter(|p| p.model != PlanModel::Free && p.currency.is_some()).collect();
    let currency = paid.first()?.currency?;
    let quote = |p: &Plan| -> PriceFrom {
        let (amount_minor, interval) = if p.price_minor > 0 || p.model == PlanModel::Subscription {
            (
                p.price_minor,
                if p.model == PlanModel::OneTime { None } else { Some(p.interval.unwrap_or(Interval::Month)) },
            )
        } else {
            (p.usage.as_ref().map_or(0, |u| u.unit_minor), None)
        };
        PriceFrom { model: p.model, currency, amount_minor, interval, meter: p.usage.as_ref().map(|u| u.meter.clone()) }
    };
    paid.iter().filter(|p| p.currency == Some(currency)).map(|p| quote(p)).min_by_key(|q| q.amount_minor)
}
