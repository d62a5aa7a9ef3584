//! The revenue share: the platform's fee on a charge under a tiered policy, and how much of
//! it goes back when the charge is refunded.
//!
//! Tiers are by the partner's lifetime gross collected in the charge's currency before the
//! charge (app stores: 0% on the first 1,000,000.00, 15% above). The fee is computed once
//! over the whole charge: a charge that crosses a boundary is split across the tiers, the
//! exact fee summed as a fraction, then rounded once, half up. The partner's share is the
//! gross minus the fee, so nothing is created or lost.

use serde::Serialize;

use crate::{MoneyError, round_half_up};

/// A rate in basis points (1/100 of a percent): 1500 is 15%.
pub const BASIS_POINTS: i64 = 10_000;

/// One tier: `rate_bp` applies to lifetime gross from the previous tier's bound up to
/// `up_to` (exclusive), or without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub up_to: Option<i64>,
    pub rate_bp: i64,
}

/// A checked tiered policy: bounds ascending and positive, the last tier unbounded, rates
/// between 0 and 100%.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    tiers: Vec<Tier>,
}

/// A charge's split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Split {
    pub gross: i64,
    pub fee: i64,
    pub partner: i64,
}

impl Policy {
    pub fn new(tiers: Vec<Tier>) -> Result<Self, MoneyError> {
        let invalid = |why: &str| Err(MoneyError::InvalidPolicy(why.into()));
        if tiers.is_empty() {
            return invalid("a policy needs at least one tier");
        }
        let mut previous = 0;
        for (index, tier) in tiers.iter().enumerate() {
            if !(0..=BASIS_POINTS).contains(&tier.rate_bp) {
                return invalid("a rate is between 0 and 10000 basis points");
            }
            let last = index + 1 == tiers.len();
            match (tier.up_to, last) {
                (None, true) => {}
                (None, false) => return invalid("only the last tier may be unbounded"),
                (Some(_), true) => return invalid("the last tier must be unbounded"),
                (Some(bound), false) if bound <= previous => {
                    return invalid("tier bounds must be positive and ascending (tiers may not overlap)");
                }
                (Some(bound), false) => previous = bound,
            }
        }
        Ok(Self { tiers })
    }

    /// The app-store default: 0% up to 1,000,000.00 in the currency, 15% above. `major` is
    /// the currency's minor units per major unit (100 for EUR).
    pub fn app_store_default(minor_per_major: i64) -> Result<Self, MoneyError> {
        let bound = 1_000_000i64.checked_mul(minor_per_major).ok_or(MoneyError::Overflow)?;
        Self::new(vec![Tier { up_to: Some(bound), rate_bp: 0 }, Tier { up_to: None, rate_bp: 1500 }])
    }

    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The split of a charge of `gross` for a partner whose lifetime gross in the currency
    /// was `lifetime_before`.
    pub fn split(&self, lifetime_before: i64, gross: i64) -> Result<Split, MoneyError> {
        if gross < 0 || lifetime_before < 0 {
            return Err(MoneyError::InvalidAmount(gross.to_string(), "charges and lifetime gross are not negative"));
        }
        let end = lifetime_before.checked_add(gross).ok_or(MoneyError::Overflow)?;
        // Σ portion × rate, exact, in basis-point minor units; rounded once below.
        let mut weighted: i128 = 0;
        let mut lower = 0i64;
        for tier in &self.tiers {
            let upper = tier.up_to.unwrap_or(i64::MAX);
            let from = lifetime_before.max(lower);
            let to = end.min(upper);
            if to > from {
                weighted += i128::from(to - from) * i128::from(tier.rate_bp);
            }
            lower = upper;
        }
        let fee = round_half_up(weighted, 1, i128::from(BASIS_POINTS))?;
        Ok(Split { gross, fee, partner: gross - fee })
    }
}

/// The fee returned by refunding `refund` of a charge split as `split`, after `refunded`
/// was refunded before. Computed cumulatively (the fee returned so far is always the
/// charge's fee in proportion to all that was refunded, rounded once), so a charge refunded
/// in pieces returns exactly its whole fee, and never more.
pub fn refunded_fee(split: Split, refunded: i64, refund: i64) -> Result<i64, MoneyError> {
    let remaining = split.gross - refunded;
    if refund <= 0 || refunded < 0 {
        return Err(MoneyError::InvalidAmount(refund.to_string(), "a refund is a positive amount"));
    }
    if refund > remaining {
        return Err(MoneyError::RefundExceedsCharge { requested: refund, remaining });
    }
    let back = |amount: i64| round_half_up(i128::from(split.fee), i128::from(amount), i128::from(split.gross));
    Ok(back(refunded + refund)? - back(refunded)?)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn default_eur() -> Policy {
        Policy::app_store_default(100).expect("policy")
    }

    #[test]
    fn the_default_policy_is_free_up_to_a_million_then_fifteen_percent() {
        let policy = default_eur();
        assert_eq!(policy.split(0, 10_000).expect("split"), Split { gross: 10_000, fee: 0, partner: 10_000 });
        let million = 100_000_000;
        assert_eq!(policy.split(million, 10_000).expect("split").fee, 1_500);
        // 30 cents above the boundary: 4.5 cents rounds up to 5.
        assert_eq!(policy.split(million, 30).expect("split").fee, 5);
        // Crossing: 100.00 below the boundary (0%) and 100.00 above (15%): one rounding.
        assert_eq!(
            policy.split(million - 10_000, 20_000).expect("split"),
            Split { gross: 20_000, fee: 1_500, partner: 18_500 }
        );
    }

    #[test]
    fn overlapping_or_unbounded_tiers_are_refused() {
        let tier = |up_to, rate_bp| Tier { up_to, rate_bp };
        assert!(Policy::new(vec![]).is_err());
        assert!(Policy::new(vec![tier(Some(100), 0)]).is_err(), "the last tier is unbounded");
        assert!(Policy::new(vec![tier(None, 0), tier(None, 100)]).is_err());
        assert!(Policy::new(vec![tier(Some(100), 0), tier(Some(100), 5), tier(None, 10)]).is_err());
        assert!(Policy::new(vec![tier(Some(0), 0), tier(None, 10)]).is_err());
        assert!(Policy::new(vec![tier(None, 10_001)]).is_err());
        assert!(Policy::new(vec![tier(None, -1)]).is_err());
    }

    #[test]
    fn refunds_return_the_fee_in_proportion_and_never_more() {
        let split = Split { gross: 1_000, fee: 150, partner: 850 };
        // Three refunds of a third: 50 each, and together exactly the whole fee.
        let a = refunded_fee(split, 0, 333).expect("refund");
        let b = refunded_fee(split, 333, 333).expect("refund");
        let c = refunded_fee(split, 666, 334).expect("refund");
        assert_eq!((a, b, c, a + b + c), (50, 50, 50, 150));
        assert_eq!(
            refunded_fee(split, 666, 335),
            Err(MoneyError::RefundExceedsCharge { requested: 335, remaining: 334 })
        );
        assert!(refunded_fee(split, 0, 0).is_err());
    }

    proptest! {
        #[test]
        fn a_split_conserves_the_gross(before in 0i64..200_000_000, gross in 0i64..50_000_000) {
            let split = default_eur().split(before, gross).unwrap();
            prop_assert_eq!(split.fee + split.partner, gross);
            prop_assert!(split.fee >= 0 && split.fee <= gross);
        }

        #[test]
        fn charges_in_any_pieces_pay_about_the_fee_of_one(before in 90_000_000i64..110_000_000, pieces in proptest::collection::vec(1i64..5_000_000, 1..6)) {
            // Splitting a sale into pieces may move each piece's rounding by half a unit,
            // never more: the tiers themselves are exact.
            let policy = default_eur();
            let total: i64 = pieces.iter().sum();
            let whole = policy.split(before, total).unwrap().fee;
            let mut lifetime = before;
            let mut sum = 0;
            for piece in &pieces {
                sum += policy.split(lifetime, *piece).unwrap().fee;
                lifetime += piece;
            }
            prop_assert!((sum - whole).abs() <= pieces.len() as i64);
        }

        #[test]
        fn refunds_in_pieces_return_exactly_the_whole_fee(gross in 1i64..10_000_000, fee_bp in 0i64..10_001, cuts in proptest::collection::vec(1u64..100, 1..10)) {
            let fee = round_half_up(i128::from(gross), i128::from(fee_bp), 10_000).unwrap();
            let split = Split { gross, fee, partner: gross - fee };
            let pieces = crate::allocate(gross, &cuts).unwrap();
            let (mut refunded, mut back) = (0, 0);
            for piece in pieces.into_iter().filter(|p| *p > 0) {
                let returned = refunded_fee(split, refunded, piece).unwrap();
                prop_assert!(returned >= 0);
                back += returned;
                refunded += piece;
                prop_assert!(back <= fee);
            }
            prop_assert_eq!(refunded, gross);
            prop_assert_eq!(back, fee);
        }
    }
}
