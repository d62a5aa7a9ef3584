//! The links mailed to a person (confirm the address, reset the password): made, used, and
//! rationed to one a minute.

use nexus_registry::ErrorCode;
use nexus_registry::publishers::{random_hex, secret_hash};

use crate::error::MarketError;
use crate::ids::PersonId;

/// A new confirmation or reset link is mailed at most this often per person.
const RELINK_AFTER_MS: i64 = 60 * 1000;

/// Whether a link of `purpose` went out to `person` within [`RELINK_AFTER_MS`].
pub(super) async fn linked_lately(
    tx: &mut sqlx::AnyConnection,
    person: &PersonId,
    purpose: &str,
    now: i64,
) -> Result<bool, MarketError> {
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM person_links WHERE person_id = $1 AND purpose = $2 AND created_at > $3",
    )
    .bind(person)
    .bind(purpose)
    .bind(now - RELINK_AFTER_MS)
    .fetch_one(&mut *tx)
    .await?;
    Ok(recent > 0)
}

/// A new link's secret and its row, in `tx`; the secret goes only into the mail.
pub(super) async fn new_link(
    tx: &mut sqlx::AnyConnection,
    person: &PersonId,
    purpose: &str,
    now: i64,
    lifetime: i64,
) -> Result<String, MarketError> {
    let secret = random_hex(24)?;
    sqlx::query(
        "INSERT INTO person_links (secret_sha256, person_id, purpose, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(secret_hash(&secret))
    .bind(person)
    .bind(purpose)
    .bind(now)
    .bind(now + lifetime)
    .execute(&mut *tx)
    .await?;
    Ok(secret)
}

/// Uses a link of `purpose` in `tx`: the person it names, or why not.
pub(super) async fn use_link(
    tx: &mut sqlx::AnyConnection,
    secret: &str,
    purpose: &str,
    now: i64,
) -> Result<PersonId, MarketError> {
    let used = sqlx::query_scalar::<_, PersonId>(
        "UPDATE person_links SET used_at = $1 \
         WHERE secret_sha256 = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 RETURNING person_id",
    )
    .bind(now)
    .bind(secret_hash(secret.trim()))
    .bind(purpose)
    .fetch_optional(&mut *tx)
    .await?;
    used.ok_or_else(|| {
        MarketError::invalid(
            ErrorCode::InvalidLink,
            "this link is unknown, was already used or has expired; ask for a new one",
        )
    })
}
