//! Signing in with an address and a password, counted against the failure limits, and
//! signing out everywhere.

use nexus_registry::ErrorCode;
use serde_json::json;

use super::passwords::password_matches;
use super::sign_up::relink;
use super::{
    FAILURE_WINDOW_MS, MAX_FAILURES_PER_CLIENT, MAX_FAILURES_PER_EMAIL, login, normalized_email, session_time,
};
use crate::audit;
use crate::error::{MarketError, storage};
use crate::ids::PersonId;
use crate::market::Market;

/// Who signed in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub person: PersonId,
}

#[derive(sqlx::FromRow)]
struct SignInRow {
    id: PersonId,
    display_name: String,
    password_hash: String,
    email_verified_at: Option<i64>,
}

/// Checks an address and password, counting failures per address and per `client`.
pub async fn sign_in(
    market: &Market,
    base: &str,
    email: &str,
    password: &str,
    client: &str,
) -> Result<SignedIn, MarketError> {
    let email = normalized_email(email)?;
    let now = market.billing.clock.now_ms();
    let subjects = [format!("email:{email}"), format!("client:{client}")];
    reserve_attempt(market, &subjects, now).await?;
    let row = sqlx::query_as::<_, SignInRow>(
        "SELECT id, display_name, password_hash, email_verified_at FROM people WHERE email = $1",
    )
    .bind(&email)
    .fetch_optional(&market.db.pool)
    .await?;
    let stored = row.as_ref().map(|row| row.password_hash.clone());
    if !password_matches(password, stored).await? {
        // The attempt reserved above stays counted as a failure.
        return Err(MarketError::Invalid {
            code: ErrorCode::SignInFailed,
            message: "the email address or the password is wrong".into(),
        });
    }
    // The right password: the address's failures are forgotten, and this attempt's row for
    // the client with them.
    let mut tx = market.db.write_tx().await?;
    sqlx::query("DELETE FROM sign_in_failures WHERE subject = $1").bind(&subjects[0]).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM sign_in_failures WHERE subject = $1 AND at = $2")
        .bind(&subjects[1])
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let row = row.ok_or_else(|| storage("a password matched no account"))?;
    let person = row.id;
    if row.email_verified_at.is_none() {
        relink(market, base, &person, &email, &row.display_name, now).await?;
        return Err(MarketError::Invalid {
            code: ErrorCode::EmailNotVerified,
            message: format!("confirm {email} first: we mailed you a link"),
        });
    }
    Ok(SignedIn { person })
}

/// Counts this attempt against each subject's limit before the password is checked, so
/// parallel guesses cannot pass the limit between a check and its count: under a lock per
/// subject (PostgreSQL advisory locks; SQLite's one writer), refuses a subject at its limit,
/// else records the attempt as a failure, which a right password then takes back.
async fn reserve_attempt(market: &Market, subjects: &[String; 2], now: i64) -> Result<(), MarketError> {
    let since = now - FAILURE_WINDOW_MS;
    let mut tx = market.db.write_tx().await?;
    if market.db.backend == nexus_registry::Backend::Postgres {
        // In a fixed order, so two attempts never wait on each other's second lock.
        let mut ordered: Vec<&String> = subjects.iter().collect();
        ordered.sort();
        for subject in ordered {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(subject).execute(&mut *tx).await?;
        }
    }
    sqlx::query("DELETE FROM sign_in_failures WHERE at <= $1").bind(since).execute(&mut *tx).await?;
    for (subject, limit) in subjects.iter().zip([MAX_FAILURES_PER_EMAIL, MAX_FAILURES_PER_CLIENT]) {
        let failures: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sign_in_failures WHERE subject = $1 AND at > $2")
            .bind(subject)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?;
        if failures >= limit {
            tx.rollback().await?;
            return Err(MarketError::SignInLimited {
                retry_after: std::time::Duration::from_millis(FAILURE_WINDOW_MS as u64),
            });
        }
    }
    for subject in subjects {
        sqlx::query("INSERT INTO sign_in_failures (subject, at) VALUES ($1, $2)")
            .bind(subject)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Ends every session `person` has open.
pub async fn sign_out_everywhere(market: &Market, person: &PersonId) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    sqlx::query("UPDATE people SET sessions_valid_after = $1, updated_at = $2 WHERE id = $3")
        .bind(session_time())
        .bind(now)
        .bind(person)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM console_sessions WHERE person_id = $1").bind(person).execute(&mut *tx).await?;
    login::revoke_of_person(&mut tx, person, None).await?;
    let actor = format!("person:{person}");
    audit::record(&mut *tx, &actor, "person.signed_out_everywhere", person.as_str(), json!({})).await?;
    tx.commit().await?;
    Ok(())
}
