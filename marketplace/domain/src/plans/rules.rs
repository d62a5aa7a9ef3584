//! The rules a plan request must keep, by model.

use nexus_money::Currency;
use nexus_money::rating::UsagePrice;
use nexus_registry::ErrorCode;

use super::{MAX_AMOUNT_MINOR, MAX_TRIAL_DAYS, PlanModel, PlanRequest};
use crate::error::MarketError;
use crate::error::money_error;

fn invalid(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::InvalidPlan, message)
}

/// Checks a request against the model's rules; amounts are integers (a float is refused by
/// the JSON reader), never negative.
pub fn check(request: &PlanRequest) -> Result<(), MarketError> {
    let key_ok = (1..=32).contains(&request.key.len())
        && request.key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !key_ok {
        return Err(invalid(format!("plan key `{}` must be 1 to 32 of a-z, 0-9 and '-'", request.key)));
    }
    MarketError::check_text(ErrorCode::InvalidPlan, "name", &request.name, 64)?;
    check_amounts(request)?;
    if request.trial_days > MAX_TRIAL_DAYS {
        return Err(invalid(format!("trial_days is at most {MAX_TRIAL_DAYS}")));
    }
    let currency = request.currency.as_deref().map(Currency::from_code).transpose().map_err(money_error)?;
    check_model(request, currency)?;
    if let (Some(usage), Some(currency)) = (&request.usage, currency) {
        if !nexus_host::capability::usage::valid_meter(&usage.meter) {
            return Err(invalid(format!("meter `{}` must be 1 to 64 of a-z, 0-9 and '-'", usage.meter)));
        }
        let money = |minor| nexus_money::Money::new(minor, currency);
        UsagePrice::new(money(usage.unit_minor), usage.included_units, usage.cap_minor.map(money))
            .map_err(money_error)?;
    }
    Ok(())
}

/// No negative price, no amount above [`MAX_AMOUNT_MINOR`].
fn check_amounts(request: &PlanRequest) -> Result<(), MarketError> {
    if request.price_minor < 0 {
        return Err(MarketError::invalid(ErrorCode::InvalidAmount, "price_minor cannot be negative"));
    }
    let amounts = [
        Some(request.price_minor),
        request.usage.as_ref().map(|u| u.unit_minor),
        request.usage.as_ref().and_then(|u| u.cap_minor),
    ];
    if amounts.into_iter().flatten().any(|minor| minor > MAX_AMOUNT_MINOR) {
        return Err(MarketError::invalid(
            ErrorCode::InvalidAmount,
            format!("amounts are at most {MAX_AMOUNT_MINOR} minor units"),
        ));
    }
    Ok(())
}

/// What each model needs and refuses: a currency, a price, an interval, trial days, usage.
fn check_model(request: &PlanRequest, currency: Option<Currency>) -> Result<(), MarketError> {
    let model = request.model;
    let refuse = |what: &str| Err(invalid(format!("a {model} plan {what}")));
    match model {
        PlanModel::Free => {
            if currency.is_some() || request.price_minor != 0 || request.interval.is_some() {
                return refuse("has no currency, price or interval");
            }
        }
        PlanModel::OneTime => {
            if request.price_minor == 0 || request.interval.is_some() {
                return refuse("has a price above zero and no interval");
            }
        }
        PlanModel::Subscription => {
            if request.interval.is_none() {
                return refuse("needs an interval: month or year");
            }
            if request.price_minor == 0 && request.usage.is_none() {
                return refuse("charges a base fee, usage, or both");
            }
        }
        PlanModel::Usage => {
            if request.usage.is_none() || request.price_minor != 0 {
                return refuse("needs `usage` terms and no base price (use a subscription for base + usage)");
            }
        }
    }
    if model != PlanModel::Free && currency.is_none() {
        return refuse("needs a currency");
    }
    if request.trial_days > 0 && model != PlanModel::Subscription {
        return Err(invalid("only subscriptions have trial days"));
    }
    if request.usage.is_some() && !matches!(model, PlanModel::Subscription | PlanModel::Usage) {
        return refuse("has no usage terms");
    }
    Ok(())
}
