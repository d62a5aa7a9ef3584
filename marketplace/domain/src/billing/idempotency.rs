//! Idempotency keys of the requests that move money (refunds, adjustments, plan changes):
//! each stores its key with the SHA-256 of the request it made, under a unique constraint.
//! A retry with the same key and the same request gets the first result again; the same key
//! with another request is refused (`idempotency_key_reused`); a request without a key is
//! refused before anything (`idempotency_key_required`). Each kind keeps its own table and
//! messages; the rule is here once.

use nexus_registry::ErrorCode;
use sha2::{Digest, Sha256};

use super::ledger;
use crate::error::MarketError;

/// A request's key (already qualified by its caller and kind) and its request's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotent {
    pub key: String,
    pub request_sha256: String,
}

/// Where a kind of request records its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `ledger_transactions` (refunds and adjustments): the key is stored with the ledger
    /// transaction, which records the refund or adjustment made.
    Ledger,
    /// `plan_changes`.
    PlanChanges,
}

/// What a key has done before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Never used: make the request.
    Fresh,
    /// Used for this same request: answer with its result, the id recorded with the key
    /// where the scope records one.
    Replay(Option<String>),
    /// Used for another request: refuse ([`reused`]).
    Reused,
}

/// The key a money-moving request must carry; `message` says why when it is missing.
pub fn required<'k>(key: Option<&'k str>, message: &'static str) -> Result<&'k str, MarketError> {
    key.ok_or_else(|| MarketError::invalid(ErrorCode::IdempotencyKeyRequired, message))
}

/// The refusal of a key used for another request.
pub fn reused(message: &'static str) -> MarketError {
    MarketError::invalid(ErrorCode::IdempotencyKeyReused, message)
}

/// The hex SHA-256 a request is stored with.
pub fn sha256_hex(request: &str) -> String {
    hex::encode(Sha256::digest(request.as_bytes()))
}

impl Idempotent {
    /// `key` for the request whose canonical text is `request`.
    pub fn new(key: String, request: &str) -> Self {
        Self { key, request_sha256: sha256_hex(request) }
    }

    /// What this key did before in `scope`, read through `conn` (the request's own write
    /// transaction where it has one, so the answer holds until it commits).
    pub async fn check(&self, conn: &mut sqlx::AnyConnection, scope: Scope) -> Result<Seen, MarketError> {
        let seen = match scope {
            Scope::Ledger => {
                ledger::by_idempotency_key(conn, &self.key).await?.map(|(_, hash, recorded)| (hash, recorded))
            }
            Scope::PlanChanges => {
                sqlx::query_scalar::<_, String>("SELECT request_sha256 FROM plan_changes WHERE idempotency_key = $1")
                    .bind(&self.key)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|hash| (hash, None))
            }
        };
        Ok(match seen {
            None => Seen::Fresh,
            Some((hash, recorded)) if hash == self.request_sha256 => Seen::Replay(recorded),
            Some(_) => Seen::Reused,
        })
    }
}

impl From<Idempotent> for ledger::IdempotencyKey {
    fn from(Idempotent { key, request_sha256 }: Idempotent) -> Self {
        Self { key, request_sha256 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_hex_sha256_of_the_request() {
        let idempotent = Idempotent::new("refund:op:k1".into(), "abc");
        assert_eq!(idempotent.request_sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(idempotent.key, "refund:op:k1");
    }

    #[test]
    fn a_missing_key_and_a_reused_one_are_refused_with_their_codes() {
        assert_eq!(required(Some("k"), "send one").unwrap(), "k");
        let missing = required(None, "a refund moves money: send an Idempotency-Key header").unwrap_err();
        assert_eq!(missing.code(), ErrorCode::IdempotencyKeyRequired);
        assert_eq!(missing.to_string(), "a refund moves money: send an Idempotency-Key header");
        assert_eq!(reused("use a new key").code(), ErrorCode::IdempotencyKeyReused);
    }
}
