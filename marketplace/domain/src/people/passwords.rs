//! Passwords: the rules a new one must meet, and argon2id hashing off the async threads.

use std::collections::BTreeSet;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use nexus_registry::ErrorCode;
use nexus_registry::publishers::random_hex;

use super::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use crate::error::{MarketError, storage};

/// Passwords refused however long they are: the most common long ones in breach lists.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "password1234",
    "password12345",
    "passwordpassword",
    "qwertyuiopasdf",
    "qwerty123456",
    "iloveyou1234",
    "111111111111",
    "000000000000",
    "aaaaaaaaaaaa",
    "abcdefghijkl",
    "abc123abc123",
    "letmein12345",
    "welcome12345",
    "adminadmin12",
    "administrator",
    "changeme1234",
    "correcthorsebatterystaple",
];

/// Whether `password` may be used by `email`; the refusal names the rule it broke.
pub fn check_password(password: &str, email: &str) -> Result<(), MarketError> {
    let chars = password.chars().count();
    let weak = |message: String| Err(MarketError::invalid(ErrorCode::WeakPassword, message));
    if chars < MIN_PASSWORD_CHARS {
        return weak(format!("a password needs at least {MIN_PASSWORD_CHARS} characters; this one has {chars}"));
    }
    if chars > MAX_PASSWORD_CHARS {
        return weak(format!("a password has at most {MAX_PASSWORD_CHARS} characters; this one has {chars}"));
    }
    let lowered = password.to_lowercase();
    if COMMON_PASSWORDS.contains(&lowered.as_str()) {
        return weak("that password is among the most common ones; choose another".into());
    }
    if password.chars().collect::<BTreeSet<_>>().len() < 4 {
        return weak("a password needs at least 4 different characters".into());
    }
    let local = email.split('@').next().unwrap_or_default();
    if lowered.contains(email) || (local.len() >= 4 && lowered.contains(local)) {
        return weak("a password must not contain your email address or its name part".into());
    }
    Ok(())
}

pub(super) async fn hash_password(password: &str) -> Result<String, MarketError> {
    let password = password.to_string();
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| storage(format!("no randomness for a salt: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt).map_err(storage)?;
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string()).map_err(storage)
    })
    .await
    .map_err(storage)?
}

/// Whether `password` matches the stored hash; without one (an unknown address), a hash
/// of the same cost is checked anyway so both take as long.
pub(super) async fn password_matches(password: &str, stored: Option<String>) -> Result<bool, MarketError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let stored = match stored {
            Some(stored) => stored,
            None => decoy_hash()?,
        };
        let parsed = PasswordHash::new(&stored).map_err(storage)?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(storage)?
}

/// A hash of a random password, made once, for unknown addresses.
fn decoy_hash() -> Result<String, MarketError> {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(hash) = DECOY.get() {
        return Ok(hash.clone());
    }
    let salt = SaltString::encode_b64(b"nexus-decoy-salt").map_err(storage)?;
    let hash = Argon2::default().hash_password(random_hex(16)?.as_bytes(), &salt).map_err(storage)?.to_string();
    Ok(DECOY.get_or_init(|| hash).clone())
}
