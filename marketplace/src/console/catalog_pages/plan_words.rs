//! Plans in words: their terms, a listing card's price, and what the install form says is
//! charged and when.

use crate::billing::plans::{Plan, PlanModel};
use crate::catalog::Listing;
use crate::console::money;

/// A plan in words: `9.00 USD a month, 14-day trial`, `0.10 USD per event beyond 100`.
pub fn plan_terms(plan: &Plan) -> String {
    let currency = plan.currency.as_deref().unwrap_or("");
    let mut terms = match plan.model {
        PlanModel::Free => "no charge".to_string(),
        PlanModel::OneTime => format!("{} once", money(plan.price_minor, currency)),
        PlanModel::Subscription | PlanModel::Usage => {
            let mut parts = Vec::new();
            if plan.price_minor > 0 || plan.model == PlanModel::Subscription {
                let every = plan.interval.map_or("month", |i| i.as_str());
                parts.push(format!("{} a {every}", money(plan.price_minor, currency)));
            }
            if let Some(usage) = &plan.usage {
                let mut usage_terms = format!("{} per {}", money(usage.unit_minor, currency), usage.meter);
                if usage.included_units > 0 {
                    usage_terms.push_str(&format!(" beyond {} included", usage.included_units));
                }
                if let Some(cap) = usage.cap_minor {
                    usage_terms.push_str(&format!(", at most {} a period", money(cap, currency)));
                }
                parts.push(usage_terms);
            }
            parts.join(" plus ")
        }
    };
    if plan.trial_days > 0 {
        terms.push_str(&format!(", {}-day trial", plan.trial_days));
    }
    terms
}

/// Plans with their terms in words, as pages list them.
pub fn with_terms(plans: Vec<Plan>) -> Vec<(Plan, String)> {
    plans
        .into_iter()
        .map(|p| {
            let terms = plan_terms(&p);
            (p, terms)
        })
        .collect()
}

/// A card's price: `Free`, `from 9.00 USD a month`, `from 49.00 EUR once · free plan`.
pub fn price_label(listing: &Listing) -> String {
    let free = listing.pricing_models.iter().any(|m| m == PlanModel::Free.as_str());
    match &listing.price_from {
        None => "Free".to_string(),
        Some(price) if free => format!("Free plan; paid from {}", price.terms()),
        Some(price) => format!("From {}", price.terms()),
    }
}

/// When a plan charges, said on the install form before anyone installs: `9.00 USD is
/// charged now, then every month`, `nothing for 14 days, then 9.00 USD every month`.
pub fn charge_notice(plan: &Plan) -> String {
    let currency = plan.currency.as_deref().unwrap_or("");
    let every = plan.interval.map_or("month", |i| i.as_str());
    let usage = plan.usage.as_ref().map(|u| format!("usage ({}) is charged at the end of each {every}", u.meter));
    let base = match plan.model {
        PlanModel::Free => return "Nothing is charged.".to_string(),
        PlanModel::OneTime => Some(format!("{} is charged now, once", money(plan.price_minor, currency))),
        PlanModel::Subscription | PlanModel::Usage if plan.price_minor > 0 => {
            let price = money(plan.price_minor, currency);
            Some(if plan.trial_days > 0 {
                format!("nothing for {} days, then {price} every {every}, in advance", plan.trial_days)
            } else {
                format!("{price} is charged now, then every {every}, in advance")
            })
        }
        PlanModel::Subscription | PlanModel::Usage => None,
    };
    let mut notice = [base, usage].into_iter().flatten().collect::<Vec<_>>().join("; ");
    if let Some(first) = notice.get(..1) {
        notice = format!("{}{}.", first.to_uppercase(), &notice[1..]);
    }
    notice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::plans;

    #[test]
    fn the_install_form_says_what_is_charged_and_when() {
        let plan = |model, price_minor, trial_days, usage: Option<&str>| Plan {
            id: "pln_0000000000000001".parse().unwrap(),
            plugin: "acme/a".into(),
            key: "k".into(),
            revision: 1,
            name: "K".into(),
            model,
            currency: Some("USD".parse().unwrap()),
            price_minor,
            interval: None,
            trial_days,
            usage: usage.map(|meter| plans::UsageTerms {
                meter: meter.into(),
                unit_minor: 2,
                included_units: 0,
                cap_minor: None,
            }),
            created_at: 0,
            retired_at: None,
        };
        assert_eq!(charge_notice(&plan(PlanModel::Free, 0, 0, None)), "Nothing is charged.");
        assert_eq!(charge_notice(&plan(PlanModel::OneTime, 4900, 0, None)), "49.00 USD is charged now, once.");
        assert_eq!(
            charge_notice(&plan(PlanModel::Subscription, 900, 0, None)),
            "9.00 USD is charged now, then every month, in advance."
        );
        assert_eq!(
            charge_notice(&plan(PlanModel::Subscription, 900, 14, Some("emails"))),
            "Nothing for 14 days, then 9.00 USD every month, in advance; usage (emails) is charged at the end of each month."
        );
        assert_eq!(
            charge_notice(&plan(PlanModel::Usage, 0, 0, Some("emails"))),
            "Usage (emails) is charged at the end of each month."
        );
    }
}
