//! People: accounts that sign in to the console with an email address and a password,
//! beside the API tokens machines keep using.
//!
//! - **Sign-up** creates the person and, with them as its owner, a tenant organization, and
//!   mails a link that confirms the address (valid 24 h). A sign-up with an address already
//!   registered writes nothing but a mail to that address, and is answered exactly as a new
//!   one: answers never reveal whether an address is registered.
//! - **Passwords** are kept as argon2id hashes (the `argon2` crate's defaults: 19 MiB, two
//!   passes), hashed off the async threads. A password has 12 to 256 characters, is not a
//!   common one and does not contain the address; the refusal says which rule it broke.
//! - **Sign-in** needs the confirmed address. Failures are counted per address and per
//!   client over 15 minutes (5 and 30): beyond them sign-in is refused for the rest of the
//!   window, whether the password is right or not. Each attempt is counted before its
//!   password is checked, so parallel guesses get exactly the limit. An unknown address costs one hash like a
//!   known one and gets the same answer.
//! - **Reset**: asking mails a link (valid 1 h, one use) if the address is registered, and
//!   answers the same either way. Setting the new password confirms the address and signs
//!   the person out everywhere.
//! - **Sign-out everywhere** ends every session the person opened before it.
//!
//! Passwords, link secrets and session cookies are never logged, stored in the clear,
//! returned or audited.

use std::collections::BTreeSet;

pub mod login;
pub mod second_factor;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use nexus_registry::ErrorCode;
use nexus_registry::publishers::{random_hex, secret_hash};
use serde_json::json;

use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::error::{MarketError, storage};
use crate::mail::{self, Mail};
use crate::market::Market;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;
/// How long a confirmation link works.
pub const VERIFY_LINK_MS: i64 = 24 * 60 * 60 * 1000;
/// How long a reset link works.
pub const RESET_LINK_MS: i64 = 60 * 60 * 1000;
/// The window over which failed sign-ins are counted.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Failed sign-ins one address may have in the window.
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
/// Failed sign-ins one client may have in the window (over every address it tries).
pub const MAX_FAILURES_PER_CLIENT: i64 = 30;
/// A new confirmation or reset link is mailed at most this often per person.
const RELINK_AFTER_MS: i64 = 60 * 1000;

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

/// A person's role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Finance,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Finance => "finance",
            Self::Viewer => "viewer",
        }
    }

    pub const ALL: [Self; 5] = [Self::Owner, Self::Admin, Self::Developer, Self::Finance, Self::Viewer];

    pub(crate) fn stored(text: &str) -> Result<Self, MarketError> {
        Self::ALL.into_iter().find(|role| role.as_str() == text).ok_or_else(|| storage(format!("unknown role {text}")))
    }

    /// A role someone named: refused with the roles there are.
    pub fn named(text: &str) -> Result<Self, MarketError> {
        Self::ALL.into_iter().find(|role| role.as_str() == text.trim()).ok_or_else(|| {
            MarketError::invalid(
                ErrorCode::InvalidRequest,
                format!("there is no role `{}`: use owner, admin, developer, finance or viewer", text.trim()),
            )
        })
    }

    /// Owners and admins manage members.
    pub fn manages_members(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }

    /// What the role may do for a publisher, in the scopes its API tokens carry (finance
    /// and viewers read the partner pages, which need none).
    pub fn publisher_scopes(self) -> BTreeSet<nexus_registry::Scope> {
        use nexus_registry::Scope;
        match self {
            Self::Owner | Self::Admin => Scope::ALL.into_iter().collect(),
            Self::Developer => [Scope::Publish, Scope::Yank].into(),
            Self::Finance | Self::Viewer => BTreeSet::new(),
        }
    }

    /// What the role may do for a tenant, in the scopes its API tokens carry.
    pub fn tenant_scopes(self) -> BTreeSet<TenantScope> {
        match self {
            Self::Owner | Self::Admin => TenantScope::ALL.into_iter().collect(),
            Self::Developer => [TenantScope::Installs, TenantScope::Events, TenantScope::Read].into(),
            Self::Finance | Self::Viewer => [TenantScope::Read].into(),
        }
    }
}

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

/// The address as kept: trimmed and lowercased, if it is one.
pub fn normalized_email(email: &str) -> Result<String, MarketError> {
    let email = email.trim().to_lowercase();
    let problem = if email.is_empty() {
        Some("enter an email address".to_string())
    } else if email.len() > 254 {
        Some("an email address has at most 254 characters".to_string())
    } else {
        match email.parse::<lettre::Address>() {
            Ok(address) if address.domain().contains('.') => None,
            Ok(_) => Some(format!("`{email}` has no domain with a dot after the @")),
            Err(_) => Some(format!("`{email}` is not an email address (name@example.com)")),
        }
    };
    match problem {
        Some(problem) => Err(MarketError::invalid(ErrorCode::InvalidEmail, problem)),
        None => Ok(email),
    }
}

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

async fn hash_password(password: &str) -> Result<String, MarketError> {
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
async fn password_matches(password: &str, stored: Option<String>) -> Result<bool, MarketError> {
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

/// Whether a link of `purpose` went out to `person` within [`RELINK_AFTER_MS`].
async fn linked_lately(
    tx: &mut sqlx::AnyConnection,
    person: &str,
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
async fn new_link(
    tx: &mut sqlx::AnyConnection,
    person: &str,
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
    let hash = hash_password(&request.password).await?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let registered: Option<String> =
        sqlx::query_scalar(&format!("SELECT display_name FROM people WHERE email = $1{}", market.db.for_update()))
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(name) = registered {
        let notice = Mail {
            kind: "already-registered",
            to: email.clone(),
            subject: "You already have a Nexus account".into(),
            body: format!(
                "Hello {name},\n\nSomeone (perhaps you) tried to sign up with {email}, which already has an \
                 account. Sign in at {base}/console/sign-in, or reset your password at {base}/console/reset.\n"
            ),
        };
        mail::enqueue(&mut tx, now, &notice).await?;
        tx.commit().await?;
        market.runner.wake_workers();
        return Ok(());
    }
    let inserted = sqlx::query("INSERT INTO tenants (id, display_name, created_at) VALUES ($1, $2, $3)")
        .bind(tenant.as_str())
        .bind(tenant_name)
        .bind(now)
        .execute(&mut *tx)
        .await;
    match inserted {
        Err(error) if nexus_registry::db::is_unique_violation(&error) => {
            return Err(MarketError::conflict(
                ErrorCode::TenantExists,
                format!("the organization id {tenant} is taken; choose another"),
            ));
        }
        other => other?,
    };
    let person = format!("usr_{}", random_hex(10)?);
    let name = request.display_name.trim();
    let created = sqlx::query(
        "INSERT INTO people (id, email, display_name, password_hash, sessions_valid_after, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 0, $5, $5)",
    )
    .bind(&person)
    .bind(&email)
    .bind(name)
    .bind(&hash)
    .bind(now)
    .execute(&mut *tx)
    .await;
    if let Err(error) = &created
        && nexus_registry::db::is_unique_violation(error)
    {
        // Signed up a moment ago by a concurrent request: answered as a registered address.
        return Ok(());
    }
    created?;
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
    audit::record(&mut *tx, &actor, "person.signed_up", &person, json!({ "tenant": tenant.as_str() })).await?;
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(())
}

/// Uses a link of `purpose` in `tx`: the person it names, or why not.
async fn use_link(tx: &mut sqlx::AnyConnection, secret: &str, purpose: &str, now: i64) -> Result<String, MarketError> {
    let used = sqlx::query_scalar::<_, String>(
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
    audit::record(&mut *tx, &format!("person:{person}"), "person.email_verified", &person, json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// Who signed in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub person: String,
}

#[derive(sqlx::FromRow)]
struct SignInRow {
    id: String,
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

/// Mails a new confirmation link, unless one went out within the last minute.
async fn relink(
    market: &Market,
    base: &str,
    person: &str,
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

/// Mails a reset link if `email` is registered (at most one a minute); answers the same
/// either way.
pub async fn request_reset(market: &Market, base: &str, email: &str) -> Result<(), MarketError> {
    let email = normalized_email(email)?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let person = sqlx::query_as::<_, (String, String)>("SELECT id, display_name FROM people WHERE email = $1")
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
    audit::record(&mut *tx, &format!("person:{person}"), "person.password_reset", &person, json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// The clock console sessions are stamped with (`sessions.rs`: the system's), which
/// `sessions_valid_after` is compared with; the billing clock may be shifted (a demo's
/// history, `NEXUS_CLOCK_OFFSET_MS`).
fn session_time() -> i64 {
    nexus_registry::db::now_ms()
}

/// Ends every session `person` has open.
pub async fn sign_out_everywhere(market: &Market, person: &str) -> Result<(), MarketError> {
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
    audit::record(&mut *tx, &format!("person:{person}"), "person.signed_out_everywhere", person, json!({})).await?;
    tx.commit().await?;
    Ok(())
}

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
) -> Result<String, MarketError> {
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
) -> Result<String, MarketError> {
    let email = normalized_email(email)?;
    check_password(password, &email)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "a name has 1 to 100 characters"));
    }
    let hash = hash_password(password).await?;
    let person = format!("usr_{}", random_hex(10)?);
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
    audit::record(&mut *tx, audit::SYSTEM, "person.added", &person, detail).await?;
    tx.commit().await?;
    Ok(person)
}

/// One organization a person belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// `tenant` or `publisher`.
    pub org_kind: String,
    pub org_id: String,
    pub role: Role,
}

/// Every organization `person` belongs to, in the order they joined.
pub async fn memberships(market: &Market, person: &str) -> Result<Vec<Membership>, MarketError> {
    let rows = sqlx::query_as::<_, (String, String, String)>(
        "SELECT org_kind, org_id, role FROM memberships WHERE person_id = $1 ORDER BY created_at, org_kind, org_id",
    )
    .bind(person)
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter()
        .map(|(org_kind, org_id, role)| Ok(Membership { org_kind, org_id, role: Role::stored(&role)? }))
        .collect()
}

/// What a person's session acts as.
#[derive(Debug, Clone)]
pub struct PersonCaller {
    pub caller: Caller,
    /// Every organization of the person (for the console's switcher).
    pub memberships: Vec<Membership>,
    /// The person must set up a second factor before doing anything else (operators, or
    /// everyone while the operators require it).
    pub needs_second_factor: bool,
}

/// The caller a person's session acts as: the organization it selected (`org`: kind and
/// id; while the person is still a member), or the person's first, in their role there.
/// `None` when the person is gone, belongs to nothing, or signed out everywhere after
/// `opened_at`. An operator's session acts as the marketplace's operator.
pub async fn caller_of(
    market: &Market,
    person: &str,
    opened_at: i64,
    org: Option<(&str, &str)>,
) -> Result<Option<PersonCaller>, MarketError> {
    let row = sqlx::query_as::<_, SessionGateRow>(
        "SELECT sessions_valid_after, CASE WHEN totp_sealed IS NULL THEN 0 ELSE 1 END AS has_second_factor, \
         (SELECT value FROM marketplace_settings WHERE name = $2) AS required FROM people WHERE id = $1",
    )
    .bind(person)
    .bind(crate::settings::REQUIRE_SECOND_FACTOR)
    .fetch_optional(&market.db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if opened_at <= row.sessions_valid_after {
        return Ok(None);
    }
    let all = memberships(market, person).await?;
    // The organization the session chose, or (none chosen, or no longer a member) the first.
    let chosen = org.and_then(|(kind, id)| all.iter().find(|m| m.org_kind == kind && m.org_id == id)).or(all.first());
    let Some(membership) = chosen else { return Ok(None) };
    let token_id = person.to_string();
    let caller = match membership.org_kind.as_str() {
        "tenant" => {
            Caller::Tenant { tenant: membership.org_id.parse()?, token_id, scopes: membership.role.tenant_scopes() }
        }
        "publisher" => Caller::Publisher(nexus_registry::Credential {
            token_id,
            publisher: membership
                .org_id
                .parse()
                .map_err(|e: nexus_registry::id::NameError| storage(format!("stored publisher: {e}")))?,
            scopes: membership.role.publisher_scopes(),
        }),
        "operator" => Caller::Operator { token_id },
        other => return Err(storage(format!("membership of an unknown kind of organization: {other}"))),
    };
    let required = row.required.as_deref() == Some("on") || all.iter().any(|m| m.org_kind == "operator");
    let needs_second_factor = required && row.has_second_factor == 0;
    Ok(Some(PersonCaller { caller, memberships: all, needs_second_factor }))
}

/// A row of [`caller_of`]: when the person's sessions start being valid, whether they have
/// a second factor, and whether the operators require one.
#[derive(sqlx::FromRow)]
struct SessionGateRow {
    sessions_valid_after: i64,
    has_second_factor: i64,
    required: Option<String>,
}

/// Whether a person with these memberships must have a second factor: operators always,
/// everyone while the operators require it (`settings::REQUIRE_SECOND_FACTOR`).
pub async fn second_factor_required(market: &Market, memberships: &[Membership]) -> Result<bool, MarketError> {
    if memberships.iter().any(|m| m.org_kind == "operator") {
        return Ok(true);
    }
    crate::settings::require_second_factor(market).await
}
