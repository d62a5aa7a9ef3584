//! People added with a confirmed address to an existing organization, for seeding a
//! marketplace (the demo, `nexus operator person`).

use nexus_registry::ErrorCode;
use serde_json::json;

use super::passwords::hash_password;
use super::{Role, check_password, normalized_email};
use crate::audit;
use crate::error::MarketError;
use crate::ids::PersonId;
use crate::market::Market;

/// A person with a confirmed address, as a member of an existing organization (`org_kind`
/// `tenant`, `publisher` or `operator`) in `role`: for seeding a marketplace (the demo).
/// Refused like a sign-up for a bad address or password.
pub async fn add_confirmed_member(
    market: &Market,
    email: &str,
    name: &str,
    password: &str,
    org: (&str, &str),
    role: Role,
) -> Result<PersonId, MarketError> {
    insert_confirmed(&market.db, market.billing.clock.now_ms(), email, name, password, org, role).await
}

/// [`add_confirmed_member`] on a database alone (`nexus operator person`, with no server):
/// `already_member` if the address has an account.
pub async fn insert_confirmed(
    db: &nexus_registry::Db,
    now: i64,
    email: &str,
    name: &str,
    password: &str,
    (org_kind, org_id): (&str, &str),
    role: Role,
) -> Result<PersonId, MarketError> {
    let email = normalized_email(email)?;
    check_password(password, &email)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "a name has 1 to 100 characters"));
    }
    let hash = hash_password(password).await?;
    let person = PersonId::random()?;
    let mut tx = db.write_tx().await?;
    let inserted = sqlx::query(
        "INSERT INTO people (id, email, display_name, password_hash, email_verified_at, sessions_valid_after, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $5, $5)",
    )
    .bind(&person)
    .bind(&email)
    .bind(name)
    .bind(&hash)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(error) if nexus_registry::db::is_unique_violation(&error) => {
            tx.rollback().await?;
            return Err(MarketError::conflict(ErrorCode::AlreadyMember, format!("{email} already has an account")));
        }
        other => other?,
    };
    sqlx::query("INSERT INTO memberships (person_id, org_kind, org_id, role, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&person)
        .bind(org_kind)
        .bind(org_id)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let detail = json!({ "org": format!("{org_kind} {org_id}"), "role": role.as_str() });
    audit::record(&mut *tx, audit::SYSTEM, "person.added", person.as_str(), detail).await?;
    tx.commit().await?;
    Ok(person)
}
