//! ISO 4217 currencies that have minor units (the `iso_currency` table): the exponent of an
//! amount always comes from its currency (JPY 0, EUR 2, KWD 3), never from a guess.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::MoneyError;

/// A currency money can be counted in: an ISO 4217 code with a minor-unit exponent. Codes
/// without one (gold `XAU`, testing `XTS`, no currency `XXX`) are refused. Currencies order
/// by their code, as the codes in rows and `ORDER BY currency` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// The currency of an uppercase ISO 4217 code (`EUR`), if it has minor units.
    pub fn from_code(code: &str) -> Result<Self, MoneyError> {
        iso_currency::Currency::from_code(code)
            .filter(|currency| currency.exponent().is_some())
            .map(Self)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(16).collect()))
    }

    /// The three-letter code, such as `EUR`.
    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// The code, as ids and strings spell it (`as_str`).
    pub fn as_str(self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point of a major unit: 2 for EUR, 0 for JPY, 3 for KWD.
    pub fn exponent(self) -> u32 {
        // `from_code` keeps only currencies that have an exponent.
        u32::from(self.0.exponent().unwrap_or(0))
    }

    /// Minor units in one major unit (100 for EUR).
    pub fn minor_per_major(self) -> i64 {
        10i64.pow(self.exponent())
    }
}

/// By code: `iso_currency`'s own order is not the codes' (its `XCG` sits among the A's).
impl Ord for Currency {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.code().cmp(other.code())
    }
}

impl PartialOrd for Currency {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::from_code(code)
    }
}

/// A code as a row or a wire string holds it (`sqlx`'s `try_from = "String"` reads columns
/// through this).
impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::from_code(&code)
    }
}

impl TryFrom<&str> for Currency {
    type Error = MoneyError;

    fn try_from(code: &str) -> Result<Self, Self::Error> {
        Self::from_code(code)
    }
}

impl PartialEq<str> for Currency {
    fn eq(&self, other: &str) -> bool {
        self.code() == other
    }
}

/// A currency reads as its code wherever text is wanted (`Option<Currency>::as_deref`).
impl std::ops::Deref for Currency {
    type Target = str;

    fn deref(&self) -> &str {
        self.code()
    }
}

impl AsRef<str> for Currency {
    fn as_ref(&self) -> &str {
        self.code()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::from_code(&code).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_come_from_the_currency() {
        let exponent = |code: &str| Currency::from_code(code).map(Currency::exponent);
        assert_eq!(exponent("EUR"), Ok(2));
        assert_eq!(exponent("JPY"), Ok(0));
        assert_eq!(exponent("KWD"), Ok(3));
        assert_eq!(Currency::from_code("KWD").map(Currency::minor_per_major), Ok(1000));
        for refused in ["XAU", "XXX", "eur", "EURO", "", "ZZZ"] {
            assert!(matches!(Currency::from_code(refused), Err(MoneyError::UnknownCurrency(_))), "{refused}");
            assert!(Currency::try_from(refused.to_string()).is_err(), "{refused}");
        }
    }

    #[test]
    fn currencies_order_by_code() {
        let mut codes = ["XCG", "AOA", "EUR", "AED", "USD", "JPY"].map(|code| Currency::from_code(code).unwrap());
        codes.sort();
        assert_eq!(codes.map(Currency::code), ["AED", "AOA", "EUR", "JPY", "USD", "XCG"]);
    }

    #[test]
    fn the_code_is_the_text_and_the_json() {
        let eur = Currency::try_from("EUR".to_string()).unwrap();
        assert_eq!((eur.code(), eur.to_string(), eur.as_ref()), ("EUR", "EUR".to_string(), "EUR"));
        assert!(eur == *"EUR");
        assert_eq!(serde_json::to_string(&eur).unwrap(), "\"EUR\"");
        assert!(serde_json::from_str::<Currency>("\"eur\"").is_err());
    }
}
