//! Signing up (a person with a tenant organization they own) and confirming the address.

use nexus_registry::ErrorCode;
use serde_json::json;

use super::links::{linked_lately, new_link, use_link};
use super::passwords::hash_password;
use super::{VERIFY_LINK_MS, check_password, normalized_email};
use crate::accounts::TenantId;
use crate::audit;
use crate::error::MarketError;
use crate::ids::PersonId;
use crate::mail::{self, Mail};
use crate::market::Market;

/// `sign_up`'s request.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub email: String,
    pub password: String,
    pub display_name: String,
    /// The tenant organization created with the person as its owner.
    pub tenant: String,
    pub tenant_name: String,
}

fn verify_mail(base: &str, email: &str, name: &str, secret: &str) -> Mail {
    Mail {
        kind: "verify",
        to: email.to_string(),
        subject: "Confirm your email address for Nexus".into(),
        body: format!(
            "Hello {name},\n\nConfirm that {email} is yours to finish signing up:\n\n\
             {base}/console/verify?link={secret}\n\nThe link works for 24 hours. \
             If you did not sign up, ignore this mail.\n"
        ),
    }
}

/// Signs a person up with a tenant organization they own, and mails the confirmation link;
/// `base` is the console's public URL. An address already registered is mailed a notice
/// instead, and the answer is the same.
pub async fn sign_up(market: &Market, base: &str, request: SignUp) -> Result<(), MarketError> {
    let (email, tenant, tenant_name) = checked(&request)?;
    let hash = hash_password(&request.password).await?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let registered: Option<String> =
        sqlx::query_scalar(&format!("SELECT display_name FROM people WHERE email = $1{}", market.db.for_update()))
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(name) = registered {
        mail::enqueue(&mut tx, now, &already_registered_mail(base, &email, &name)).await?;
        tx.commit().await?;
        market.runner.wake_workers();
        return Ok(());
    }
    insert_tenant(&mut tx, &tenant, tenant_name, now).await?;
    let person = PersonId::random()?;
    let name = request.display_name.trim();
    if !insert_person(&mut tx, &person, &email, name, &hash, now).await? {
        // Signed up a moment ago by a concurrent request: answered as a registered address.
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO memberships (person_id, org_kind, org_id, role, created_at) VALUES ($1, 'tenant', $2, 'owner', $3)",
    )
    .bind(&person)
    .bind(tenant.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let secret = new_link(&mut tx, &person, "verify", now, VERIFY_LINK_MS).await?;
    mail::enqueue(&mut tx, now, &verify_mail(base, &email, name, &secret)).await?;
    let actor = format!("person:{person}");
    let detail = json!({ "tenant": tenant.as_str() });
    audit::record(&mut *tx, &actor, "person.signed_up", person.as_str(), detail).await?;
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(())
}

/// A sign-up's address (as kept), tenant id and tenant name, or the first rule it breaks.
fn checked(request: &SignUp) -> Result<(String, TenantId, &str), MarketError> {
    let email = normalized_email(&request.email)?;
    check_password(&request.password, &email)?;
    MarketError::check_text(ErrorCode::InvalidRequest, "name", &request.display_name, 100)?;
    if request.display_name.trim().is_empty() {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "enter your name"));
    }
    let tenant: TenantId = request.tenant.trim().parse()?;
    let tenant_name = request.tenant_name.trim();
    if tenant_name.is_empty() || tenant_name.len() > 100 {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "an organization's name has 1 to 100 characters"));
    }
    Ok((email, tenant, tenant_name))
}

/// The notice mailed instead of a confirmation link to an address already registered.
fn already_registered_mail(base: &str, email: &str, name: &str) -> Mail {
    Mail {
        kind: "already-registered",
        to: email.to_string(),
        subject: "You already have a Nexus account".into(),
        body: format!(
            "Hello {name},\n\nSomeone (perhaps you) tried to sign up with {email}, which already has an \
             account. Sign in at {base}/console/sign-in, or reset your password at {base}/console/reset.\n"
        ),
    }
}

/// The new tenant organization, in `tx`; refused when its id is taken.
async fn insert_tenant(
    tx: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    tenant_name: &str,
    now: i64,
) -> Result<(), MarketError> {
    let inserted = sqlx::query("INSERT INTO tenants (id, display_name, created_at) VALUES ($1, $2, $3)")
        .bind(tenant.as_str())
        .bind(tenant_name)
        .bind(now)
        .execute(&mut *tx)
        .await;
    match inserted {
        Err(error) if nexus_registry::db::is_unique_violation(&error) => Err(MarketError::conflict(
            ErrorCode::TenantExists,
            format!("the organization id {tenant} is taken; choose another"),
        )),
        other => {
            other?;
            Ok(())
        }
    }
}

/// The new person, unconfirmed, in `tx`: `false` when the address was registered meanwhile.
async fn insert_person(
    tx: &mut sqlx::AnyConnection,
    person: &PersonId,
    email: &str,
    name: &str,
    hash: &str,
    now: i64,
) -> Result<bool, MarketError> {
    let created = sqlx::query(
        "INSERT INTO people (id, email, display_name, password_hash, sessions_valid_after, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, $5, $5)",
    )
    .bind(person)
    .bind(email)
    .bind(name)
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await;
    if let Err(error) = &created
        && nexus_registry::db::is_unique_violation(error)
    {
        return Ok(false);
    }
    created?;
    Ok(true)
}

/// Confirms the address a confirmation link was mailed to.
pub async fn verify_email(market: &Market, secret: &str) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let person = match use_link(&mut tx, secret, "verify", now).await {
        Ok(person) => person,
        Err(refused) => {
            tx.rollback().await?;
            return Err(refused);
        }
    };
    sqlx::query("UPDATE people SET email_verified_at = COALESCE(email_verified_at, $1), updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(&person)
        .execute(&mut *tx)
        .await?;
    audit::record(&mut *tx, &format!("person:{person}"), "person.email_verified", person.as_str(), json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// Mails a new confirmation link, unless one went out within the last minute.
pub(super) async fn relink(
    market: &Market,
    base: &str,
    person: &PersonId,
    email: &str,
    name: &str,
    now: i64,
) -> Result<(), MarketError> {
    let mut tx = market.db.write_tx().await?;
    if !linked_lately(&mut tx, person, "verify", now).await? {
        let secret = new_link(&mut tx, person, "verify", now, VERIFY_LINK_MS).await?;
        mail::enqueue(&mut tx, now, &verify_mail(base, email, name, &secret)).await?;
    }
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(())
}
