//! Resetting a forgotten password with a mailed link.

use serde_json::json;

use super::links::{linked_lately, new_link, use_link};
use super::passwords::hash_password;
use super::{RESET_LINK_MS, check_password, login, normalized_email, session_time};
use crate::audit;
use crate::error::MarketError;
use crate::ids::PersonId;
use crate::mail::{self, Mail};
use crate::market::Market;

/// Mails a reset link if `email` is registered (at most one a minute); answers the same
/// either way.
pub async fn request_reset(market: &Market, base: &str, email: &str) -> Result<(), MarketError> {
    let email = normalized_email(email)?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let person = sqlx::query_as::<_, (PersonId, String)>("SELECT id, display_name FROM people WHERE email = $1")
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some((id, name)) = person
        && !linked_lately(&mut tx, &id, "reset", now).await?
    {
        let secret = new_link(&mut tx, &id, "reset", now, RESET_LINK_MS).await?;
        let reset = Mail {
            kind: "reset",
            to: email.clone(),
            subject: "Reset your Nexus password".into(),
            body: format!(
                "Hello {name},\n\nChoose a new password for {email} here:\n\n{base}/console/reset/{secret}\n\n\
                 The link works once, for an hour. Setting a new password signs you out everywhere. \
                 If you did not ask for this, ignore this mail: your password stays as it is.\n"
            ),
        };
        mail::enqueue(&mut tx, now, &reset).await?;
    }
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(())
}

/// Sets a new password with a reset link: confirms the address and ends every session.
pub async fn reset_password(market: &Market, secret: &str, password: &str) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let person = match use_link(&mut tx, secret, "reset", now).await {
        Ok(person) => person,
        Err(refused) => {
            tx.rollback().await?;
            return Err(refused);
        }
    };
    let email: String =
        sqlx::query_scalar("SELECT email FROM people WHERE id = $1").bind(&person).fetch_one(&mut *tx).await?;
    if let Err(weak) = check_password(password, &email) {
        // The link stays usable for a better password.
        tx.rollback().await?;
        return Err(weak);
    }
    let hash = hash_password(password).await?;
    sqlx::query(
        "UPDATE people SET password_hash = $1, email_verified_at = COALESCE(email_verified_at, $2), \
         sessions_valid_after = $4, updated_at = $2 WHERE id = $3",
    )
    .bind(&hash)
    .bind(now)
    .bind(&person)
    .bind(session_time())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM console_sessions WHERE person_id = $1").bind(&person).execute(&mut *tx).await?;
    login::revoke_of_person(&mut tx, &person, None).await?;
    sqlx::query("DELETE FROM sign_in_failures WHERE subject = $1")
        .bind(format!("email:{email}"))
        .execute(&mut *tx)
        .await?;
    audit::record(&mut *tx, &format!("person:{person}"), "person.password_reset", person.as_str(), json!({})).await?;
    tx.commit().await?;
    Ok(())
}
