//! Every typed id the domain generates, in one place: a charge id is never taken for a plan id,
//! an install id never for a person id. Each is a prefix and a fixed number of lowercase hex
//! digits, the exact shape its `random()` makes (and older rows hold), checked when parsed
//! from a path or a row. They cross the database as their text (sqlx `Type`/`Encode`/`Decode`
//! over `String`, a row's value checked as it is decoded) and JSON and the OpenAPI document as
//! a plain string.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::MarketError;

/// What every id kept as its text shares, for a `$name(String)` with its own `FromStr` (how a
/// request's id is checked) and `stored(String)` (how a row's is): `as_str`, the conversions to
/// and from `String`, `Display`, binding to and reading from the database as text (a malformed
/// stored id is an error, never passed on), and a plain string in `/openapi.json`.
/// `typed_id!` uses it for the generated ids, [`crate::accounts::TenantId`] for its own shape.
macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::error::MarketError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Bound as its text.
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        /// Read as its text and checked: a malformed stored id is an error, never passed on.
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(Self::stored(<String as sqlx::Decode<'r, DB>>::decode(value)?)?)
            }
        }

        /// In `/openapi.json`: a plain string, as the JSON carries it.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String).into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use string_id;

macro_rules! typed_id {
    // Time-ordered: `ordered()` makes it; ids made before it was ordered had 20 random digits
    // and are still read.
    ($(#[$doc:meta])* $name:ident, $prefix:literal, ordered, $what:literal) => {
        typed_id!(@shape $(#[$doc])* $name, $prefix, 28, [20], $what);

        impl $name {
            /// A fresh id that sorts after the ones made before it (see `ordered_hex`).
            pub fn ordered() -> Result<Self, MarketError> {
                Ok(Self(format!("{}{}", $prefix, ordered_hex()?)))
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $hex:literal, $what:literal) => {
        typed_id!(@shape $(#[$doc])* $name, $prefix, $hex, [], $what);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Result<Self, MarketError> {
                let hex = nexus_registry::publishers::random_hex($hex / 2).map_err(crate::error::storage)?;
                Ok(Self(format!("{}{hex}", $prefix)))
            }
        }
    };
    (@shape $(#[$doc:meta])* $name:ident, $prefix:literal, $hex:literal, [$($older:literal),*], $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            /// How many hex digits follow the prefix.
            pub const HEX_DIGITS: usize = $hex;
            /// Every count of digits a well-formed one has: this one's and older shapes'.
            const SHAPES: &'static [usize] = &[$hex $(, $older)*];

            /// An id as a row holds it: a malformed one is a storage error, not a missing entity.
            pub fn stored(text: String) -> Result<Self, MarketError> {
                if is_hex_id(&text, $prefix, Self::SHAPES) {
                    Ok(Self(text))
                } else {
                    Err(crate::error::storage(format!("stored {} id `{text}`", $what)))
                }
            }
        }

        impl FromStr for $name {
            type Err = MarketError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if is_hex_id(s, $prefix, Self::SHAPES) {
                    Ok(Self(s.to_string()))
                } else {
                    Err(MarketError::NotFound(format!("{} {}", $what, s.chars().take(40).collect::<String>())))
                }
            }
        }

        string_id!($name);
    };
}

/// `s` is `prefix` followed by exactly one of `digits` lowercase hex digits.
fn is_hex_id(s: &str, prefix: &str, digits: &[usize]) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        digits.contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The digits of a time-ordered id: the milliseconds since the epoch (12 hex digits), then 8
/// random bytes. Rows written together then sit side by side in the indexes that hold these
/// ids (the invocations' primary key, the applied-once index) instead of each on a random
/// page, which was most of what a batch of rows wrote; 64 random bits per millisecond keep
/// them as unlikely to collide as the 80 random bits before.
fn ordered_hex() -> Result<String, MarketError> {
    let millis = u64::try_from(nexus_registry::db::now_ms()).unwrap_or(0) & 0xffff_ffff_ffff;
    let random = nexus_registry::publishers::random_hex(8).map_err(crate::error::storage)?;
    Ok(format!("{millis:012x}{random}"))
}

// Money's ids: 8 random bytes each.
typed_id!(
    /// A plan revision (`pln_…`).
    PlanId, "pln_", 16, "plan"
);
typed_id!(
    /// A charge (`chg_…`).
    ChargeId, "chg_", 16, "charge"
);
typed_id!(
    /// A refund (`ref_…`).
    RefundId, "ref_", 16, "refund"
);
typed_id!(
    /// A ledger transaction (`ltx_…`).
    TransactionId, "ltx_", 16, "ledger transaction"
);
typed_id!(
    /// A revenue-share policy (`pol_…`).
    PolicyId, "pol_", 16, "policy"
);
typed_id!(
    /// An operator's adjustment of a partner's balance (`adj_…`).
    AdjustmentId, "adj_", 16, "adjustment"
);
typed_id!(
    /// An operator's hold on a partner's payouts (`hold_…`).
    HoldId, "hold_", 16, "hold"
);
typed_id!(
    /// A payout to a publisher (`pay_…`).
    PayoutId, "pay_", 16, "payout"
);

// The rest of the marketplace's entities. The digits differ because each was sized on its
// own before they met here; stored rows hold these shapes, so they stay.
typed_id!(
    /// An install of a plugin in a tenant (`ins_…`).
    InstallId, "ins_", 16, "install"
);
typed_id!(
    /// An API token (`tok_…`).
    TokenId, "tok_", 16, "token"
);
typed_id!(
    /// A person who signs in (`usr_…`).
    PersonId, "usr_", 20, "person"
);
typed_id!(
    /// An invitation to join an organization (`inv_…`); not an invocation, whose ids are
    /// longer and time-ordered ([`InvocationId`]; invocations recorded before ids were
    /// ordered have this same shape, so the prefix alone does not tell the two apart).
    InvitationId, "inv_", 20, "invitation"
);
typed_id!(
    /// A webhook endpoint (`whe_…`).
    WebhookEndpointId, "whe_", 20, "webhook endpoint"
);
typed_id!(
    /// A review of a plugin (`rev_…`).
    ReviewId, "rev_", 16, "review"
);
typed_id!(
    /// An application to the partner program (`app_…`).
    ApplicationId, "app_", 20, "application"
);
typed_id!(
    /// A mail in the outbox (`mail_…`).
    MailId, "mail_", 24, "mail"
);
typed_id!(
    /// A `nexus serve` node of the marketplace (`node_…`).
    NodeId, "node_", 12, "node"
);
typed_id!(
    /// A featured placement bought through co-marketing (`fp_…`).
    PlacementId, "fp_", 16, "placement"
);
typed_id!(
    /// An event id the CLI makes for `nexus events send` (`evt_cli_…`): the client's own id,
    /// so that sending again cannot apply the event twice.
    CliEventId, "evt_cli_", 20, "event"
);
typed_id!(
    /// An API request, in its `x-request-id` header and its error body (`req_…`).
    RequestId, "req_", 24, "request"
);

// Time-ordered ids (see `ordered_hex`).
typed_id!(
    /// A plugin's invocation (`inv_…`), recorded in `invocations`; not an invitation.
    InvocationId, "inv_", ordered, "invocation"
);
typed_id!(
    /// One install's delivery of an asynchronous event (`dlv_…`).
    DeliveryId, "dlv_", ordered, "delivery"
);
typed_id!(
    /// An event id the server generates when the client sent none (`evt_…`). Events also
    /// carry the client's own ids and schedule ticks' `sched_…` ids, so an event id in a row or
    /// a request is a `String`: this type is only how one is made.
    GeneratedEventId, "evt_", ordered, "event"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_id_parses_back_and_others_do_not() {
        let person = PersonId::random().unwrap();
        assert_eq!((person.as_str().len(), &person.as_str()[..4]), (4 + 20, "usr_"));
        assert_eq!(person.as_str().parse::<PersonId>().unwrap(), person);
        let node = NodeId::random().unwrap();
        assert_eq!(node.as_str().len(), "node_".len() + 12);
        assert!(node.as_str().parse::<NodeId>().is_ok());
        assert!(person.as_str().parse::<InvitationId>().is_err());
        assert!("ins_0123456789ABCDEF".parse::<InstallId>().is_err());
        assert!("ins_0123456789abcde".parse::<InstallId>().is_err());
        assert!("ins_0123456789abcdef".parse::<InstallId>().is_ok());
    }

    #[test]
    fn ordered_ids_start_with_the_time_and_differ_within_a_millisecond() {
        let (first, second) = (InvocationId::ordered().unwrap(), InvocationId::ordered().unwrap());
        let (first, second) = (first.as_str(), second.as_str());
        assert_eq!((first.len(), &first[..4]), ("inv_".len() + 12 + 16, "inv_"));
        assert_ne!(first, second);
        let millis = |id: &str| u64::from_str_radix(&id[4..16], 16).unwrap();
        let now = u64::try_from(nexus_registry::db::now_ms()).unwrap();
        assert!(millis(first) <= millis(second) && now - millis(second) < 60_000, "{first} {second}");
        assert!(first.parse::<InvocationId>().is_ok() && "inv_0123456789abcdef0123".parse::<InvocationId>().is_ok());
        assert!(DeliveryId::ordered().unwrap().as_str().parse::<DeliveryId>().is_ok());
    }

    #[test]
    fn serde_is_the_plain_string() {
        let id: InstallId = "ins_0123456789abcdef".parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"ins_0123456789abcdef\"");
        assert!(serde_json::from_str::<InstallId>("\"ins_x\"").is_err());
    }
}
