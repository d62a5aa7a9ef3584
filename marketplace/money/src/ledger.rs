//! Double-entry postings: a ledger transaction is a set of entries between named accounts
//! whose amounts sum to zero in every currency. [`Posting::new`] refuses anything else, so an
//! unbalanced transaction cannot be built, let alone stored. Entries are never changed; a
//! correction is a new posting (the caller names what it corrects).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::share::Split;
use crate::{Currency, Money, MoneyError};

/// One leg: `amount` to `account` (positive debits it, negative credits it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub account: String,
    pub amount: Money,
}

/// A balanced set of entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Posting {
    entries: Vec<Entry>,
}

impl Posting {
    /// The entries as one transaction: at least two, none zero, summing to zero per currency.
    pub fn new(entries: Vec<Entry>) -> Result<Self, MoneyError> {
        if entries.len() < 2 {
            return Err(MoneyError::InvalidPosting("a posting has at least two entries".into()));
        }
        let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
        for entry in &entries {
            if entry.amount.minor == 0 {
                return Err(MoneyError::InvalidAmount(entry.account.clone(), "an entry moves a non-zero amount"));
            }
            *sums.entry(entry.amount.currency).or_default() += i128::from(entry.amount.minor);
        }
        if let Some((currency, sum)) = sums.iter().find(|(_, sum)| **sum != 0) {
            return Err(MoneyError::InvalidPosting(format!(
                "the entries do not balance: {sum} minor units of {currency} left over"
            )));
        }
        Ok(Self { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// The posting of a collected charge split between the platform and a partner: the tenant's
/// payment comes in as cash; the fee is platform revenue and the share is owed to the
/// partner. Zero legs (a 0% fee) are left out.
pub fn collected_charge(split: Split, currency: Currency, partner_payable: &str) -> Result<Posting, MoneyError> {
    let legs =
        [("platform:cash", split.gross), ("platform:fee-revenue", -split.fee), (partner_payable, -split.partner)];
    Posting::new(
        legs.into_iter()
            .filter(|(_, minor)| *minor != 0)
            .map(|(account, minor)| Entry { account: account.to_string(), amount: Money::new(minor, currency) })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::share::Policy;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::from_code("EUR").expect("EUR"))
    }

    fn entry(account: &str, amount: Money) -> Entry {
        Entry { account: account.into(), amount }
    }

    #[test]
    fn unbalanced_postings_cannot_be_built() {
        let usd = Money::new(100, Currency::from_code("USD").expect("USD"));
        assert!(Posting::new(vec![entry("a", eur(100)), entry("b", eur(-100))]).is_ok());
        let left = Posting::new(vec![entry("a", eur(100)), entry("b", eur(-99))]).err().map(|e| e.to_string());
        assert_eq!(
            left.as_deref(),
            Some("invalid posting: the entries do not balance: 1 minor units of EUR left over")
        );
        // Balanced in total but across currencies is not balanced.
        assert!(Posting::new(vec![entry("a", eur(100)), entry("b", usd.checked_neg().expect("neg"))]).is_err());
        assert!(Posting::new(vec![entry("a", eur(0)), entry("b", eur(0))]).is_err());
        assert!(Posting::new(vec![entry("a", eur(5))]).is_err());
    }

    #[test]
    fn a_collected_charge_posts_gross_fee_and_share() {
        let split = Policy::app_store_default(100).expect("policy").split(100_000_000, 10_000).expect("split");
        let posting = collected_charge(split, eur(0).currency, "partner:acme:payable").expect("posting");
        let legs: Vec<(&str, i64)> = posting.entries().iter().map(|e| (e.account.as_str(), e.amount.minor)).collect();
        assert_eq!(
            legs,
            [("platform:cash", 10_000), ("platform:fee-revenue", -1_500), ("partner:acme:payable", -8_500)]
        );
        // Below the first tier the fee leg is left out.
        let free = Policy::app_store_default(100).expect("policy").split(0, 10_000).expect("split");
        assert_eq!(
            collected_charge(free, eur(0).currency, "partner:acme:payable").expect("posting").entries().len(),
            2
        );
    }

    proptest! {
        #[test]
        fn every_collected_charge_balances(before in 0i64..200_000_000, gross in 1i64..50_000_000) {
            let split = Policy::app_store_default(100).unwrap().split(before, gross).unwrap();
            let posting = collected_charge(split, eur(0).currency, "partner:p:payable").unwrap();
            prop_assert_eq!(posting.entries().iter().map(|e| e.amount.minor).sum::<i64>(), 0);
        }
    }
}
