//! [`Money`]: an integer count of minor units in one currency. Amounts of different
//! currencies never add; overflow is an error, never a wrap.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Currency, MoneyError};

/// An amount: `minor` units (cents, yen, fils) of `currency`. In JSON
/// `{"minor": 1250, "currency": "EUR"}`; a float such as `12.5` is refused, never rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// A decimal amount in major units as people write it (`12.50`, `-3`, `1000`), with at
    /// most as many decimals as the currency has: `12.345` EUR is refused, not rounded.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let invalid = |why| MoneyError::InvalidAmount(text.chars().take(40).collect(), why);
        let (negative, digits) = match text.trim().strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.trim()),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let exponent = currency.exponent() as usize;
        if whole.is_empty() || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected digits with an optional decimal point"));
        }
        if fraction.len() > exponent {
            return Err(invalid("more decimals than the currency has minor units"));
        }
        let padded = format!("{whole}{fraction:0<exponent$}");
        let minor: i64 = padded.parse().map_err(|_| MoneyError::Overflow)?;
        Ok(Self::new(if negative { -minor } else { minor }, currency))
    }

    /// `self + other`, in one currency.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.minor.checked_add(other.minor).map(|minor| Self::new(minor, self.currency)).ok_or(MoneyError::Overflow)
    }

    /// `self - other`, in one currency.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.minor.checked_sub(other.minor).map(|minor| Self::new(minor, self.currency)).ok_or(MoneyError::Overflow)
    }

    /// `-self`.
    pub fn checked_neg(self) -> Result<Self, MoneyError> {
        self.minor.checked_neg().map(|minor| Self::new(minor, self.currency)).ok_or(MoneyError::Overflow)
    }

    /// `self × count`, for a unit price times units.
    pub fn checked_mul(self, count: u64) -> Result<Self, MoneyError> {
        let product = i128::from(self.minor).checked_mul(i128::from(count)).ok_or(MoneyError::Overflow)?;
        i64::try_from(product).map(|minor| Self::new(minor, self.currency)).map_err(|_| MoneyError::Overflow)
    }

    fn same_currency(self, other: Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            return Ok(());
        }
        Err(MoneyError::CurrencyMismatch { left: self.currency.to_string(), right: other.currency.to_string() })
    }
}

/// `12.50 EUR`, `-3 JPY`, `1.250 KWD`: major units with the currency's decimals.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = self.currency.exponent() as usize;
        let sign = if self.minor < 0 { "-" } else { "" };
        let magnitude = self.minor.unsigned_abs();
        let scale = 10u64.pow(exponent as u32);
        if exponent == 0 {
            return write!(f, "{sign}{magnitude} {}", self.currency);
        }
        write!(f, "{sign}{}.{:0exponent$} {}", magnitude / scale, magnitude % scale, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::from_code(code).expect("known currency")
    }

    #[test]
    fn amounts_print_with_their_currencys_decimals() {
        assert_eq!(Money::new(1250, currency("EUR")).to_string(), "12.50 EUR");
        assert_eq!(Money::new(-5, currency("EUR")).to_string(), "-0.05 EUR");
        assert_eq!(Money::new(1250, currency("JPY")).to_string(), "1250 JPY");
        assert_eq!(Money::new(1250, currency("KWD")).to_string(), "1.250 KWD");
        assert_eq!(Money::new(i64::MIN, currency("EUR")).to_string(), "-92233720368547758.08 EUR");
    }

    #[test]
    fn parsing_refuses_what_it_would_have_to_round() {
        let eur = currency("EUR");
        assert_eq!(Money::parse("12.5", eur), Ok(Money::new(1250, eur)));
        assert_eq!(Money::parse("-3", eur), Ok(Money::new(-300, eur)));
        assert_eq!(Money::parse("7", currency("JPY")), Ok(Money::new(7, currency("JPY"))));
        for refused in ["12.345", "1e3", "", ".5", "12,50", "+1", "1.2.3"] {
            assert!(matches!(Money::parse(refused, eur), Err(MoneyError::InvalidAmount(..))), "{refused}");
        }
        assert_eq!(
            Money::parse("1.5", currency("JPY")).err().map(|e| e.to_string()).as_deref(),
            Some("invalid amount `1.5`: more decimals than the currency has minor units")
        );
        assert_eq!(Money::parse("99999999999999999999", eur), Err(MoneyError::Overflow));
    }

    #[test]
    fn currencies_never_mix_and_overflow_is_an_error() {
        let (eur, usd) = (currency("EUR"), currency("USD"));
        let mixed = Money::new(1, eur).checked_add(Money::new(1, usd));
        assert_eq!(mixed, Err(MoneyError::CurrencyMismatch { left: "EUR".into(), right: "USD".into() }));
        assert_eq!(Money::new(i64::MAX, eur).checked_add(Money::new(1, eur)), Err(MoneyError::Overflow));
        assert_eq!(Money::new(i64::MAX, eur).checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(Money::new(i64::MIN, eur).checked_neg(), Err(MoneyError::Overflow));
    }

    #[test]
    fn json_is_integer_minor_units_and_a_code() {
        let amount: Money = serde_json::from_str(r#"{"minor": 1250, "currency": "EUR"}"#).expect("json");
        assert_eq!(amount, Money::new(1250, currency("EUR")));
        for refused in [
            r#"{"minor": 12.5, "currency": "EUR"}"#,
            r#"{"minor": 1, "currency": "XAU"}"#,
            r#"{"minor": 1, "currency": "EUR", "extra": 1}"#,
        ] {
            assert!(serde_json::from_str::<Money>(refused).is_err(), "{refused}");
        }
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_the_same_amount(minor in -1_000_000_000_000i64..1_000_000_000_000, code in prop::sample::select(vec!["EUR", "JPY", "KWD", "USD"])) {
            let amount = Money::new(minor, currency(code));
            let text = amount.to_string();
            let number = text.split_whitespace().next().unwrap();
            prop_assert_eq!(Money::parse(number, amount.currency), Ok(amount));
        }
    }
}
