//! A person's second factor: time-based one-time codes (RFC 6238: SHA-1, 6 digits, 30 s,
//! a step either side accepted), with ten recovery codes for a lost device.
//!
//! - **Setting it up** makes a secret (160 bits) kept sealed and pending until a code from
//!   the person's app confirms it; the recovery codes are shown then, once.
//! - **At sign-in**, once the password is right, a code (or an unused recovery code) is
//!   asked for. A code works once (the step it matched is kept). Wrong codes count as failed
//!   sign-ins of the person: past [`super::MAX_FAILURES_PER_EMAIL`] in the window, the second
//!   step is refused until the window passes.
//! - **Turning it off** needs a current code.
//!
//! The secret and the recovery codes are never logged, audited or shown again.

use std::collections::BTreeMap;

use nexus_registry::ErrorCode;
use nexus_registry::publishers::{random_hex, secret_hash};
use serde_json::json;
use totp_rs::{Algorithm, TOTP};

use crate::audit;
use crate::error::{MarketError, storage};
use crate::ids::PersonId;
use crate::market::Market;
use crate::secrets;

/// Recovery codes made at set-up.
pub const RECOVERY_CODES: usize = 10;
/// How long the second step of a sign-in may take.
pub const CHALLENGE_MS: i64 = 5 * 60 * 1000;
const STEP_SECS: u64 = 30;

/// What the person's authenticator app needs: the secret in base32 and as an `otpauth://`
/// URI (for a QR code).
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub secret_base32: String,
    pub uri: String,
}

fn totp(secret: Vec<u8>, email: &str) -> Result<TOTP, MarketError> {
    TOTP::new(Algorithm::SHA1, 6, 1, STEP_SECS, secret, Some("Nexus".into()), email.to_string())
        .map_err(|e| storage(format!("a TOTP secret: {e}")))
}

fn seal(market: &Market, person: &PersonId, secret: &[u8]) -> Result<String, MarketError> {
    let map = BTreeMap::from([("totp".to_string(), hex::encode(secret))]);
    secrets::seal(&market.master_key, person.as_str(), &map).map_err(|e| storage(format!("sealing a TOTP secret: {e}")))
}

fn unseal(market: &Market, person: &PersonId, sealed: &str) -> Result<Vec<u8>, MarketError> {
    let map = secrets::open(&market.master_key, person.as_str(), sealed)
        .map_err(|e| storage(format!("a TOTP secret: {e}")))?;
    hex::decode(map.get("totp").map(String::as_str).unwrap_or_default()).map_err(storage)
}

fn wrong_code() -> MarketError {
    MarketError::Invalid {
        code: ErrorCode::SignInFailed,
        message: "that code is not right; try the current one".into(),
    }
}

/// Starts setting up a second factor for `person` (again, if one was pending).
pub async fn start(market: &Market, person: &PersonId) -> Result<Enrolment, MarketError> {
    let email: String =
        sqlx::query_scalar("SELECT email FROM people WHERE id = $1").bind(person).fetch_one(&market.db.pool).await?;
    let mut secret = vec![0u8; 20];
    getrandom::fill(&mut secret).map_err(|e| storage(format!("no randomness for a secret: {e}")))?;
    let totp = totp(secret.clone(), &email)?;
    sqlx::query("UPDATE people SET totp_pending_sealed = $1 WHERE id = $2")
        .bind(seal(market, person, &secret)?)
        .bind(person)
        .execute(market.db.writer())
        .await?;
    Ok(Enrolment { secret_base32: totp.get_secret_base32(), uri: totp.get_url() })
}

/// The time step a 6-digit `code` matches for `secret` around `now_ms`, if any.
fn matching_step(secret: &[u8], email: &str, code: &str, now_ms: i64) -> Result<Option<i64>, MarketError> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = totp(secret.to_vec(), email)?;
    let step = now_ms.div_euclid(1000) as u64 / STEP_SECS;
    for candidate in [step.saturating_sub(1), step, step + 1] {
        if totp.generate(candidate * STEP_SECS) == code {
            return Ok(Some(candidate as i64));
        }
    }
    Ok(None)
}

/// Confirms the pending secret with a code from the app: the second factor is on, and the
/// recovery codes (shown this once) are returned.
pub async fn confirm(market: &Market, person: &PersonId, code: &str) -> Result<Vec<String>, MarketError> {
    let now = market.billing.clock.now_ms();
    let (email, pending): (String, Option<String>) =
        sqlx::query_as("SELECT email, totp_pending_sealed FROM people WHERE id = $1")
            .bind(person)
            .fetch_one(&market.db.pool)
            .await?;
    let Some(pending) = pending else {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "start setting up the second factor first"));
    };
    let secret = unseal(market, person, &pending)?;
    let Some(step) = matching_step(&secret, &email, code, now)? else { return Err(wrong_code()) };
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| random_hex(5).map(|hex| format!("{}-{}", &hex[..5], &hex[5..])))
        .collect::<Result<_, _>>()?;
    let mut tx = market.db.write_tx().await?;
    sqlx::query(
        "UPDATE people SET totp_sealed = totp_pending_sealed, totp_pending_sealed = NULL, totp_last_step = $1, \
         updated_at = $2 WHERE id = $3 AND totp_pending_sealed = $4",
    )
    .bind(step)
    .bind(now)
    .bind(person)
    .bind(&pending)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE person_id = $1").bind(person).execute(&mut *tx).await?;
    for code in &codes {
        sqlx::query("INSERT INTO recovery_codes (person_id, code_sha256) VALUES ($1, $2)")
            .bind(person)
            .bind(secret_hash(code))
            .execute(&mut *tx)
            .await?;
    }
    let actor = format!("person:{person}");
    audit::record(&mut *tx, &actor, "person.second_factor_enabled", person.as_str(), json!({})).await?;
    tx.commit().await?;
    Ok(codes)
}

/// Sets a second factor up at once, with no app in the loop: for seeding a demo, whose
/// output prints the key. Confirmed with the previous step's code, so the code an app shows
/// now still signs in. The key in base32.
pub async fn set_up_for_demo(market: &Market, person: &PersonId) -> Result<String, MarketError> {
    let enrolment = start(market, person).await?;
    let secret = totp_rs::Secret::Encoded(enrolment.secret_base32.clone())
        .to_bytes()
        .map_err(|e| storage(format!("a TOTP secret: {e:?}")))?;
    let email: String =
        sqlx::query_scalar("SELECT email FROM people WHERE id = $1").bind(person).fetch_one(&market.db.pool).await?;
    let previous = (market.billing.clock.now_ms().div_euclid(1000) as u64 / STEP_SECS).saturating_sub(1);
    let code = totp(secret, &email)?.generate(previous * STEP_SECS);
    confirm(market, person, &code).await?;
    Ok(enrolment.secret_base32)
}

/// Whether `person` signs in with a second factor.
pub async fn enabled(market: &Market, person: &PersonId) -> Result<bool, MarketError> {
    let sealed: Option<Option<String>> = sqlx::query_scalar("SELECT totp_sealed FROM people WHERE id = $1")
        .bind(person)
        .fetch_optional(&market.db.pool)
        .await?;
    Ok(sealed.flatten().is_some())
}

/// Checks a code (or a recovery code, used up by this) for `person`, counting failures.
pub async fn verify(market: &Market, person: &PersonId, code: &str) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let subject = format!("second-factor:{person}");
    let failures: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sign_in_failures WHERE subject = $1 AND at > $2")
        .bind(&subject)
        .bind(now - super::FAILURE_WINDOW_MS)
        .fetch_one(&market.db.pool)
        .await?;
    if failures >= super::MAX_FAILURES_PER_EMAIL {
        return Err(MarketError::SignInLimited {
            retry_after: std::time::Duration::from_millis(super::FAILURE_WINDOW_MS as u64),
        });
    }
    let (email, sealed): (String, Option<String>) =
        sqlx::query_as("SELECT email, totp_sealed FROM people WHERE id = $1")
            .bind(person)
            .fetch_one(&market.db.pool)
            .await?;
    let Some(sealed) = sealed else { return Ok(()) };
    let secret = unseal(market, person, &sealed)?;
    let mut tx = market.db.write_tx().await?;
    let accepted = match matching_step(&secret, &email, code, now)? {
        // A code works once: its step must be later than the last accepted one.
        Some(step) => sqlx::query(
            "UPDATE people SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(person)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1,
        None => {
            sqlx::query(
                "UPDATE recovery_codes SET used_at = $1 WHERE person_id = $2 AND code_sha256 = $3 AND used_at IS NULL",
            )
            .bind(now)
            .bind(person)
            .bind(secret_hash(&code.trim().to_lowercase()))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        }
    };
    if !accepted {
        tx.rollback().await?;
        sqlx::query("INSERT INTO sign_in_failures (subject, at) VALUES ($1, $2)")
            .bind(&subject)
            .bind(now)
            .execute(market.db.writer())
            .await?;
        return Err(wrong_code());
    }
    sqlx::query("DELETE FROM sign_in_failures WHERE subject = $1").bind(&subject).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Turns the second factor off, with a current code.
pub async fn disable(market: &Market, person: &PersonId, code: &str) -> Result<(), MarketError> {
    if super::second_factor_required(market, &super::memberships(market, person).await?).await? {
        return Err(MarketError::Forbidden(
            "two-step sign-in stays on: operators, and everyone while the operators require it, sign in with two steps"
                .into(),
        ));
    }
    verify(market, person, code).await?;
    let mut tx = market.db.write_tx().await?;
    sqlx::query(
        "UPDATE people SET totp_sealed = NULL, totp_pending_sealed = NULL, totp_last_step = NULL WHERE id = $1",
    )
    .bind(person)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE person_id = $1").bind(person).execute(&mut *tx).await?;
    let actor = format!("person:{person}");
    audit::record(&mut *tx, &actor, "person.second_factor_disabled", person.as_str(), json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// After a right password: a challenge the second step answers; the cookie value names it.
pub async fn challenge(market: &Market, person: &PersonId) -> Result<String, MarketError> {
    let now = market.billing.clock.now_ms();
    let cookie = random_hex(24)?;
    let mut tx = market.db.write_tx().await?;
    sqlx::query("DELETE FROM second_factor_challenges WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO second_factor_challenges (id_sha256, person_id, expires_at) VALUES ($1, $2, $3)")
        .bind(secret_hash(&cookie))
        .bind(person)
        .bind(now + CHALLENGE_MS)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(cookie)
}

/// Answers the challenge `cookie` names with `code`: the person, signed in.
pub async fn answer(market: &Market, cookie: &str, code: &str) -> Result<PersonId, MarketError> {
    let now = market.billing.clock.now_ms();
    let person: Option<PersonId> =
        sqlx::query_scalar("SELECT person_id FROM second_factor_challenges WHERE id_sha256 = $1 AND expires_at > $2")
            .bind(secret_hash(cookie))
            .bind(now)
            .fetch_optional(&market.db.pool)
            .await?;
    let person = person.ok_or_else(|| {
        MarketError::invalid(ErrorCode::InvalidLink, "the sign-in took too long: enter your password again")
    })?;
    verify(market, &person, code).await?;
    sqlx::query("DELETE FROM second_factor_challenges WHERE id_sha256 = $1")
        .bind(secret_hash(cookie))
        .execute(market.db.writer())
        .await?;
    Ok(person)
}
