//! Double-entry postings: a ledger transaction is a set of entries between named accounts
//! whose amounts sum to zero in every currency. [`Posting::new`] refuses anything else, so an
//! unbalanced transaction cannot be built, let alone stored. Entries are never changed; a
//! correction is a new posting (the caller names what it corrects). [`Account`] is the one
//! place an account's name is written and read back.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::share::Split;
use crate::{Currency, Money, MoneyError};

/// The accounts money moves between. Debits are positive: a tenant's receivable is what it
/// owes (positive), a partner's payable what the platform owes it (negative, a credit).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    /// What a tenant has been charged and not yet paid.
    TenantReceivable(String),
    /// What the platform owes a partner.
    PartnerPayable(String),
    /// Money the platform holds (collected from tenants, not yet paid out).
    PlatformCash,
    /// The platform's revenue share.
    PlatformFeeRevenue,
    /// Sales billed and not yet collected (split when collected).
    PlatformUnsettledSales,
    /// Payouts on their way to partners: out of their payable, not yet confirmed paid.
    PlatformPayoutsInTransit,
    /// What operators' adjustments of partners' balances cost (or returned to) the platform.
    PlatformAdjustments,
}

/// A tenant's receivable is named `tenant:<tenant>:receivable`.
const TENANT: (&str, &str) = ("tenant:", ":receivable");
/// A partner's payable is named `partner:<publisher>:payable`.
const PARTNER: (&str, &str) = ("partner:", ":payable");
const CASH: &str = "platform:cash";
const FEE_REVENUE: &str = "platform:fee-revenue";
const UNSETTLED_SALES: &str = "platform:unsettled-sales";
const PAYOUTS_IN_TRANSIT: &str = "platform:payouts-in-transit";
const ADJUSTMENTS: &str = "platform:adjustments";

impl Account {
    /// The name entries store.
    pub fn name(&self) -> String {
        match self {
            Self::TenantReceivable(tenant) => format!("{}{tenant}{}", TENANT.0, TENANT.1),
            Self::PartnerPayable(publisher) => format!("{}{publisher}{}", PARTNER.0, PARTNER.1),
            Self::PlatformCash => CASH.into(),
            Self::PlatformFeeRevenue => FEE_REVENUE.into(),
            Self::PlatformUnsettledSales => UNSETTLED_SALES.into(),
            Self::PlatformPayoutsInTransit => PAYOUTS_IN_TRANSIT.into(),
            Self::PlatformAdjustments => ADJUSTMENTS.into(),
        }
    }

    /// The account a stored name names: the inverse of [`Account::name`] (whose names never
    /// collide, since each kind has its own prefix), `None` for any other string.
    pub fn parse(name: &str) -> Option<Self> {
        let between = |(prefix, suffix): (&str, &str)| name.strip_prefix(prefix)?.strip_suffix(suffix);
        if let Some(tenant) = between(TENANT) {
            return Some(Self::TenantReceivable(tenant.to_string()));
        }
        if let Some(publisher) = between(PARTNER) {
            return Some(Self::PartnerPayable(publisher.to_string()));
        }
        Some(match name {
            CASH => Self::PlatformCash,
            FEE_REVENUE => Self::PlatformFeeRevenue,
            UNSETTLED_SALES => Self::PlatformUnsettledSales,
            PAYOUTS_IN_TRANSIT => Self::PlatformPayoutsInTransit,
            ADJUSTMENTS => Self::PlatformAdjustments,
            _ => return None,
        })
    }
}

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

    /// The posting of `legs` in `currency`, leaving out zero legs (a 0% fee moves nothing).
    pub fn of_legs(currency: Currency, legs: &[(Account, i64)]) -> Result<Self, MoneyError> {
        let entries = legs
            .iter()
            .filter(|(_, minor)| *minor != 0)
            .map(|(account, minor)| Entry { account: account.name(), amount: Money::new(*minor, currency) })
            .collect();
        Self::new(entries)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// The posting of a collected charge split between the platform and a partner: the tenant's
/// payment comes in as cash and settles its receivable; the sale billed comes out of the
/// unsettled sales, split into the fee (platform revenue) and the share owed to the partner.
/// Zero legs (a 0% fee) are left out.
pub fn collected_charge(split: Split, currency: Currency, tenant: &str, partner: &str) -> Result<Posting, MoneyError> {
    Posting::of_legs(
        currency,
        &[
            (Account::PlatformCash, split.gross),
            (Account::TenantReceivable(tenant.to_string()), -split.gross),
            (Account::PlatformUnsettledSales, split.gross),
            (Account::PlatformFeeRevenue, -split.fee),
            (Account::PartnerPayable(partner.to_string()), -split.partner),
        ],
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
    fn account_names_read_back_as_their_accounts() {
        let named = [
            (Account::TenantReceivable("globex".into()), "tenant:globex:receivable"),
            (Account::PartnerPayable("acme-tools".into()), "partner:acme-tools:payable"),
            (Account::PlatformCash, "platform:cash"),
            (Account::PlatformFeeRevenue, "platform:fee-revenue"),
            (Account::PlatformUnsettledSales, "platform:unsettled-sales"),
            (Account::PlatformPayoutsInTransit, "platform:payouts-in-transit"),
            (Account::PlatformAdjustments, "platform:adjustments"),
        ];
        for (account, name) in named {
            assert_eq!(account.name(), name);
            assert_eq!(Account::parse(name), Some(account));
        }
        for other in ["", "platform:", "platform:cash ", "partner:acme", "tenant:acme:payable", "acme:payable"] {
            assert_eq!(Account::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn a_collected_charge_settles_the_sale_and_splits_it() {
        let split = Policy::app_store_default(100).expect("policy").split(100_000_000, 10_000).expect("split");
        let posting = collected_charge(split, eur(0).currency, "globex", "acme").expect("posting");
        let legs: Vec<(&str, i64)> = posting.entries().iter().map(|e| (e.account.as_str(), e.amount.minor)).collect();
        assert_eq!(
            legs,
            [
                ("platform:cash", 10_000),
                ("tenant:globex:receivable", -10_000),
                ("platform:unsettled-sales", 10_000),
                ("platform:fee-revenue", -1_500),
                ("partner:acme:payable", -8_500)
            ]
        );
        // Below the first tier the fee leg is left out.
        let free = Policy::app_store_default(100).expect("policy").split(0, 10_000).expect("split");
        let posting = collected_charge(free, eur(0).currency, "globex", "acme").expect("posting");
        assert!(posting.entries().iter().all(|e| e.account != "platform:fee-revenue"));
        assert_eq!(posting.entries().len(), 4);
        // Nothing collected, nothing to post.
        let nothing = Policy::app_store_default(100).expect("policy").split(0, 0).expect("split");
        assert!(matches!(
            collected_charge(nothing, eur(0).currency, "globex", "acme"),
            Err(MoneyError::InvalidPosting(_))
        ));
    }

    /// An id as tenants and publishers have them: never a `:`.
    fn id() -> impl Strategy<Value = String> {
        "[^:]{0,24}"
    }

    fn account() -> impl Strategy<Value = Account> {
        prop_oneof![
            id().prop_map(Account::TenantReceivable),
            id().prop_map(Account::PartnerPayable),
            Just(Account::PlatformCash),
            Just(Account::PlatformFeeRevenue),
            Just(Account::PlatformUnsettledSales),
            Just(Account::PlatformPayoutsInTransit),
            Just(Account::PlatformAdjustments),
        ]
    }

    proptest! {
        #[test]
        fn every_account_name_parses_back(account in account()) {
            prop_assert_eq!(Account::parse(&account.name()), Some(account));
        }

        #[test]
        fn every_collected_charge_balances(
            before in 0i64..200_000_000,
            gross in 1i64..50_000_000,
            tenant in id(),
            partner in id(),
        ) {
            let split = Policy::app_store_default(100).unwrap().split(before, gross).unwrap();
            let posting = collected_charge(split, eur(0).currency, &tenant, &partner).unwrap();
            prop_assert_eq!(posting.entries().iter().map(|e| e.amount.minor).sum::<i64>(), 0);
            let leg = |account: Account| {
                let name = account.name();
                posting.entries().iter().filter(|e| e.account == name).map(|e| e.amount.minor).sum::<i64>()
            };
            prop_assert_eq!(leg(Account::PlatformCash), gross);
            prop_assert_eq!(leg(Account::TenantReceivable(tenant.clone())), -gross);
            prop_assert_eq!(leg(Account::PlatformUnsettledSales), gross);
            prop_assert_eq!(leg(Account::PlatformFeeRevenue), -split.fee);
            prop_assert_eq!(leg(Account::PartnerPayable(partner.clone())), -split.partner);
            prop_assert!(posting.entries().iter().all(|e| e.amount.minor != 0 && e.amount.currency == eur(0).currency));
        }
    }
}
