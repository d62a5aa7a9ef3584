//! Rating: what a period's usage of one meter costs under a usage price. The line explains
//! itself: units reported, included, billable, unit price, whether the cap applied.

use serde::Serialize;

use crate::{Money, MoneyError};

/// A price per unit of a meter, with units included free each period and an optional cap
/// on what one period may cost (the amount the tenant approved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsagePrice {
    pub unit: Money,
    pub included_units: u64,
    pub cap: Option<Money>,
}

/// One rated usage line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageLine {
    pub reported_units: u64,
    pub included_units: u64,
    pub billable_units: u64,
    pub unit: Money,
    /// The cap, when it lowered the amount.
    pub capped_at: Option<Money>,
    pub amount: Money,
}

impl UsagePrice {
    /// Checks the price: a unit price and cap that are not negative, in one currency.
    pub fn new(unit: Money, included_units: u64, cap: Option<Money>) -> Result<Self, MoneyError> {
        if unit.minor < 0 {
            return Err(MoneyError::InvalidAmount(unit.to_string(), "a unit price cannot be negative"));
        }
        if let Some(cap) = cap {
            unit.checked_sub(cap)?;
            if cap.minor < 0 {
                return Err(MoneyError::InvalidAmount(cap.to_string(), "a cap cannot be negative"));
            }
        }
        Ok(Self { unit, included_units, cap })
    }

    /// What `reported` units cost in one period.
    pub fn rate(&self, reported: u64) -> Result<UsageLine, MoneyError> {
        let billable = reported.saturating_sub(self.included_units);
        // In i128 first: usage large enough to overflow i64 still ends at the cap.
        let uncapped = i128::from(self.unit.minor) * i128::from(billable);
        let (amount, capped_at) = match self.cap {
            Some(cap) if i128::from(cap.minor) < uncapped => (cap, Some(cap)),
            _ => (Money::new(i64::try_from(uncapped).map_err(|_| MoneyError::Overflow)?, self.unit.currency), None),
        };
        Ok(UsageLine {
            reported_units: reported,
            included_units: self.included_units.min(reported),
            billable_units: billable,
            unit: self.unit,
            capped_at,
            amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Currency;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::from_code("EUR").expect("EUR"))
    }

    #[test]
    fn included_units_are_free_and_the_cap_holds() {
        let price = UsagePrice::new(eur(2), 100, Some(eur(500))).expect("price");
        let line = price.rate(150).expect("rate");
        assert_eq!((line.billable_units, line.amount, line.capped_at, line.included_units), (50, eur(100), None, 100));
        let line = price.rate(1_000).expect("rate");
        assert_eq!((line.billable_units, line.amount, line.capped_at), (900, eur(500), Some(eur(500))));
        assert_eq!(price.rate(40).expect("rate").amount, eur(0));
        assert_eq!(price.rate(40).expect("rate").included_units, 40);
    }

    #[test]
    fn bad_prices_are_refused() {
        assert!(UsagePrice::new(eur(-1), 0, None).is_err());
        assert!(UsagePrice::new(eur(1), 0, Some(eur(-5))).is_err());
        let jpy = Money::new(5, Currency::from_code("JPY").expect("JPY"));
        assert!(matches!(UsagePrice::new(eur(1), 0, Some(jpy)), Err(MoneyError::CurrencyMismatch { .. })));
        let huge = UsagePrice::new(eur(i64::MAX), 0, None).expect("price");
        assert_eq!(huge.rate(2), Err(MoneyError::Overflow));
        // With a cap, any usage ends at the cap.
        let capped = UsagePrice::new(eur(i64::MAX), 0, Some(eur(500))).expect("price");
        assert_eq!(capped.rate(u64::MAX).expect("rate").amount, eur(500));
    }

    proptest! {
        #[test]
        fn an_amount_never_passes_its_cap(unit in 0i64..10_000, included in 0u64..1000, cap in 0i64..1_000_000, units in 0u64..1_000_000) {
            let price = UsagePrice::new(eur(unit), included, Some(eur(cap))).unwrap();
            let line = price.rate(units).unwrap();
            prop_assert!(line.amount.minor <= cap);
            prop_assert_eq!(line.billable_units + line.included_units, units);
            let uncapped = unit * line.billable_units as i64;
            prop_assert_eq!(line.amount.minor, uncapped.min(cap));
        }
    }
}
