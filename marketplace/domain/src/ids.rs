//! Typed ids of what money adds: a charge id is never taken for a plan id. Each is a prefix
//! and 16 hex digits, checked when parsed from a path or a row.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::MarketError;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn random() -> Result<Self, MarketError> {
                let hex = nexus_registry::publishers::random_hex(8).map_err(crate::error::storage)?;
                Ok(Self(format!("{}{hex}", $prefix)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = MarketError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let valid = s.strip_prefix($prefix).is_some_and(|hex| {
                    hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                });
                if valid {
                    Ok(Self(s.to_string()))
                } else {
                    Err(MarketError::NotFound(format!("{} {}", $what, s.chars().take(40).collect::<String>())))
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = MarketError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

typed_id!(
    /// A plan revision (`pln_…`).
    PlanId, "pln_", "plan"
);
typed_id!(
    /// A charge (`chg_…`).
    ChargeId, "chg_", "charge"
);
typed_id!(
    /// A refund (`ref_…`).
    RefundId, "ref_", "refund"
);
typed_id!(
    /// A ledger transaction (`ltx_…`).
    TransactionId, "ltx_", "ledger transaction"
);
typed_id!(
    /// A revenue-share policy (`pol_…`).
    PolicyId, "pol_", "policy"
);
