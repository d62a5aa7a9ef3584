//! Money arithmetic for the Nexus marketplace: amounts in integer minor units of an ISO 4217
//! currency ([`Money`], [`Currency`]), rating usage against a price ([`rating`]), the
//! tiered revenue-share split and its reversal on refunds ([`share`]), balanced double-entry
//! postings ([`ledger`]), dividing an amount among parties ([`allocate`]), and billing periods
//! and proration over UTC calendar months ([`period`]).
//!
//! Pure: no SQL, no async, no HTTP. Every operation is exact integer arithmetic (i128 where a
//! product can pass i64), fails with a typed [`MoneyError`] instead of wrapping or rounding
//! silently, rounds once with one rule ([`round_half_up`]), and conserves totals: what is
//! split adds up to what was split, to the minor unit.

mod amount;
mod currency;
pub mod ledger;
pub mod period;
pub mod rating;
pub mod share;

pub use amount::Money;
pub use currency::Currency;

/// Why a money operation was refused. Nothing is ever rounded, wrapped or mixed instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency `{0}`: expected an ISO 4217 code with minor units, such as EUR, JPY or KWD")]
    UnknownCurrency(String),
    #[error("cannot combine {left} and {right}: amounts in different currencies never mix")]
    CurrencyMismatch { left: String, right: String },
    #[error("the amount does not fit in 64-bit minor units")]
    Overflow,
    #[error("invalid amount `{0}`: {1}")]
    InvalidAmount(String, &'static str),
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    #[error("invalid posting: {0}")]
    InvalidPosting(String),
    #[error("a refund of {requested} minor units exceeds the {remaining} that remain of the charge")]
    RefundExceedsCharge { requested: i64, remaining: i64 },
    #[error("unknown interval `{0}`: expected `month` or `year`")]
    UnknownInterval(String),
    #[error("invalid period: {0}")]
    InvalidPeriod(String),
}

/// `value × numerator / denominator`, rounded half up (half away from zero), computed in i128
/// so the product cannot overflow. The one rounding rule of the marketplace: 15% of 0.30 is
/// 0.05 (4.5 cents rounds up). `denominator` must be positive.
pub fn round_half_up(value: i128, numerator: i128, denominator: i128) -> Result<i64, MoneyError> {
    if denominator <= 0 {
        return Err(MoneyError::Overflow);
    }
    let product = value.checked_mul(numerator).ok_or(MoneyError::Overflow)?;
    let (quotient, remainder) = (product / denominator, product % denominator);
    // |remainder| * 2 >= denominator rounds away from zero.
    let rounded = if remainder.abs() * 2 >= denominator { quotient + product.signum() } else { quotient };
    i64::try_from(rounded).map_err(|_| MoneyError::Overflow)
}

/// Divides `total` among parties in proportion to `weights`, exactly: each gets the floor of
/// its share, and the minor units left over go one each to the largest remainders, ties to
/// the earlier party. The result always sums to `total`. No weights, or all zero, gives
/// all of `total` to no one: an error.
pub fn allocate(total: i64, weights: &[u64]) -> Result<Vec<i64>, MoneyError> {
    let sum: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if sum == 0 {
        return Err(MoneyError::InvalidAmount(total.to_string(), "there is no one to allocate it to"));
    }
    let sum = i128::try_from(sum).map_err(|_| MoneyError::Overflow)?;
    let total = i128::from(total);
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (index, weight) in weights.iter().enumerate() {
        let exact = total.checked_mul(i128::from(*weight)).ok_or(MoneyError::Overflow)?;
        shares.push(exact.div_euclid(sum));
        remainders.push((exact.rem_euclid(sum), index));
    }
    let mut left = total - shares.iter().sum::<i128>();
    // Largest remainder first; equal remainders in party order (a stable, stated rule).
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, index) in remainders {
        if left == 0 {
            break;
        }
        shares[index] += 1;
        left -= 1;
    }
    shares.into_iter().map(|s| i64::try_from(s).map_err(|_| MoneyError::Overflow)).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rounding_is_half_up_once() {
        // 15% of 30 cents is 4.5 cents: half up gives 5.
        assert_eq!(round_half_up(30, 1500, 10_000), Ok(5));
        assert_eq!(round_half_up(29, 1500, 10_000), Ok(4));
        assert_eq!(round_half_up(-30, 1500, 10_000), Ok(-5));
        assert_eq!(round_half_up(i128::from(i64::MAX), 2, 1), Err(MoneyError::Overflow));
    }

    #[test]
    fn allocation_gives_leftovers_to_the_largest_remainders() {
        assert_eq!(allocate(100, &[1, 1, 1]), Ok(vec![34, 33, 33]));
        assert_eq!(allocate(5, &[1, 3]), Ok(vec![1, 4]));
        assert_eq!(allocate(-100, &[1, 1, 1]), Ok(vec![-33, -33, -34]));
        assert!(allocate(5, &[0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn allocation_conserves_and_stays_within_one_unit(total in -1_000_000_000i64..1_000_000_000, weights in proptest::collection::vec(0u64..1000, 1..8)) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let shares = allocate(total, &weights).unwrap();
            prop_assert_eq!(shares.iter().sum::<i64>(), total);
            let sum: u64 = weights.iter().sum();
            for (share, weight) in shares.iter().zip(&weights) {
                let exact = total as f64 * *weight as f64 / sum as f64;
                prop_assert!((*share as f64 - exact).abs() < 1.0 + 1e-6);
            }
        }

        #[test]
        fn half_up_is_within_half_a_unit(value in -1_000_000_000i64..1_000_000_000, bp in 0i64..10_001) {
            let rounded = round_half_up(i128::from(value), i128::from(bp), 10_000).unwrap();
            let exact = value as f64 * bp as f64 / 10_000.0;
            prop_assert!((rounded as f64 - exact).abs() <= 0.5 + 1e-9);
        }
    }
}
