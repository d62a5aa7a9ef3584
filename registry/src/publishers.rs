//! Publishers, their API tokens and their signing keys. Tokens are shown once and stored
//! only as sha256; each is scoped to its publisher's namespace and to what it may do.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::db::{Db, is_unique_violation, now_ms, storage};
use crate::error::RegistryError;
use crate::id::PublisherName;
use crate::signature::PublicKey;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    Publish,
    Yank,
    Keys,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Self::Publish, Self::Yank, Self::Keys];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Yank => "yank",
            Self::Keys => "keys",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope `{s}` (expected publish, yank or keys)"))
    }
}

/// A token as issued: `secret` is shown this once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub id: String,
    pub secret: String,
    pub publisher: PublisherName,
    pub scopes: BTreeSet<Scope>,
    pub expires_at: Option<i64>,
}

/// Who is calling, established from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub token_id: String,
    pub publisher: PublisherName,
    pub scopes: BTreeSet<Scope>,
}

impl Credential {
    pub fn require(&self, scope: Scope) -> Result<(), RegistryError> {
        if self.scopes.contains(&scope) { Ok(()) } else { Err(RegistryError::MissingScope(scope.as_str())) }
    }
}

/// A registered signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct KeyInfo {
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// `bytes` random bytes as hex, for ids and secrets.
pub fn random_hex(bytes: usize) -> Result<String, RegistryError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| RegistryError::Storage(format!("no randomness: {e}")))?;
    Ok(hex::encode(buffer))
}

/// The sha256 a token secret is stored as.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn scopes_text(scopes: &BTreeSet<Scope>) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

/// Creates a publisher (an operator's action) and its first token, with every scope.
pub async fn create_publisher(
    db: &Db,
    name: &PublisherName,
    display_name: &str,
    created_by: &str,
) -> Result<IssuedToken, RegistryError> {
    let mut conn = db.writer().acquire().await.map_err(storage)?;
    insert_publisher(&mut conn, name, display_name).await?;
    drop(conn);
    issue_token(db, name, Scope::ALL.into_iter().collect(), "initial", None, &Issuer::by(created_by)).await
}

/// Who a token is issued by: the audit name of the caller creating it, and the person it is
/// issued to when a person signed in for it (such a token ends with their membership).
#[derive(Debug, Clone, Copy)]
pub struct Issuer<'a> {
    pub created_by: &'a str,
    pub person: Option<&'a str>,
}

impl<'a> Issuer<'a> {
    pub fn by(created_by: &'a str) -> Self {
        Self { created_by, person: None }
    }
}

/// Registers the publisher `name` on `conn` (in the caller's transaction, if it holds one),
/// without a token: `publisher_exists` if the name is taken.
pub async fn insert_publisher(
    conn: &mut sqlx::AnyConnection,
    name: &PublisherName,
    display_name: &str,
) -> Result<(), RegistryError> {
    crate::text::check("display_name", display_name, crate::text::MAX_DISPLAY_NAME_CHARS, true)
        .map_err(RegistryError::InvalidRequest)?;
    let inserted = sqlx::query("INSERT INTO publishers (name, display_name, created_at) VALUES ($1, $2, $3)")
        .bind(name.as_str())
        .bind(display_name)
        .bind(now_ms())
        .execute(&mut *conn)
        .await;
    match inserted {
        Err(error) if is_unique_violation(&error) => Err(RegistryError::PublisherExists(name.to_string())),
        other => other.map(|_| ()).map_err(storage),
    }
}

/// Issues a token for `publisher` with `scopes`, optionally expiring at `expires_at` (ms).
pub async fn issue_token(
    db: &Db,
    publisher: &PublisherName,
    scopes: BTreeSet<Scope>,
    label: &str,
    expires_at: Option<i64>,
    issuer: &Issuer<'_>,
) -> Result<IssuedToken, RegistryError> {
    crate::text::check("label", label, crate::text::MAX_LABEL_CHARS, false).map_err(RegistryError::InvalidRequest)?;
    // A person's token may read only (a finance member's); a machine's token does something.
    if scopes.is_empty() && issuer.person.is_none() {
        return Err(RegistryError::InvalidRequest("a token needs at least one scope".into()));
    }
    let id = format!("tok_{}", random_hex(8)?);
    let secret = format!("nexus_{}_{}", &id[4..], random_hex(24)?);
    sqlx::query(
        "INSERT INTO publisher_tokens (id, publisher, secret_sha256, scopes, label, created_at, expires_at, \
         created_by, person_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(publisher.as_str())
    .bind(secret_hash(&secret))
    .bind(scopes_text(&scopes))
    .bind(label)
    .bind(now_ms())
    .bind(expires_at)
    .bind(issuer.created_by)
    .bind(issuer.person)
    .execute(db.writer())
    .await
    .map_err(storage)?;
    Ok(IssuedToken { id, secret, publisher: publisher.clone(), scopes, expires_at })
}

/// The credential a token secret stands for.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Credential, RegistryError> {
    authenticate_hash(db, &secret_hash(secret.trim())).await
}

/// The credential of the token stored as `hash` ([`secret_hash`] of its secret), checked
/// for revocation and expiry now: a console session keeps only the hash and asks again on
/// every request, so revoking the token ends the session.
pub async fn authenticate_hash(db: &Db, hash: &str) -> Result<Credential, RegistryError> {
    let row = sqlx::query_as::<_, TokenRow>(
        "SELECT id, publisher, scopes, expires_at, revoked_at FROM publisher_tokens WHERE secret_sha256 = $1",
    )
    .bind(hash)
    .fetch_optional(&db.pool)
    .await
    .map_err(storage)?
    .ok_or(RegistryError::Unauthenticated)?;
    if row.revoked_at.is_some() {
        return Err(RegistryError::TokenRevoked);
    }
    if row.expires_at.is_some_and(|at| at <= now_ms()) {
        return Err(RegistryError::TokenExpired);
    }
    Ok(Credential {
        token_id: row.id,
        publisher: row.publisher.parse().map_err(|e| RegistryError::Storage(format!("stored publisher: {e}")))?,
        scopes: row.scopes.split(',').filter_map(|s| s.parse().ok()).collect(),
    })
}

/// A `publisher_tokens` row as [`authenticate_hash`] reads it.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    publisher: String,
    scopes: String,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// Revokes one of the caller's publisher's tokens.
pub async fn revoke_token(db: &Db, caller: &Credential, token_id: &str) -> Result<(), RegistryError> {
    caller.require(Scope::Keys)?;
    let result = sqlx::query(
        "UPDATE publisher_tokens SET revoked_at = $1 WHERE id = $2 AND publisher = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(token_id)
    .bind(caller.publisher.as_str())
    .execute(db.writer())
    .await
    .map_err(storage)?;
    if result.rows_affected() == 0 {
        return Err(RegistryError::NotFound(format!("active token {token_id}")));
    }
    Ok(())
}

/// Registers a signing key for the caller's publisher. Rotation is: add the new key, sign
/// with it, revoke the old one.
pub async fn add_key(db: &Db, caller: &Credential, key: &PublicKey) -> Result<KeyInfo, RegistryError> {
    caller.require(Scope::Keys)?;
    let info =
        KeyInfo { fingerprint: key.fingerprint(), public_key: key.to_string(), created_at: now_ms(), revoked_at: None };
    let inserted = sqlx::query(
        "INSERT INTO publisher_keys (fingerprint, publisher, public_key, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&info.fingerprint)
    .bind(caller.publisher.as_str())
    .bind(&info.public_key)
    .bind(info.created_at)
    .execute(db.writer())
    .await;
    match inserted {
        Err(error) if is_unique_violation(&error) => {
            Err(RegistryError::InvalidRequest(format!("key {} is already registered", info.fingerprint)))
        }
        other => other.map(|_| info).map_err(storage),
    }
}

/// Revokes a key: versions it signed no longer verify, so a leaked key cannot vouch for
/// anything after the publisher learns of the leak.
pub async fn revoke_key(db: &Db, caller: &Credential, fingerprint: &str) -> Result<(), RegistryError> {
    caller.require(Scope::Keys)?;
    let result = sqlx::query(
        "UPDATE publisher_keys SET revoked_at = $1 WHERE fingerprint = $2 AND publisher = $3 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(fingerprint)
    .bind(caller.publisher.as_str())
    .execute(db.writer())
    .await
    .map_err(storage)?;
    // Unknown, another publisher's, or already revoked: not found, as a second DELETE of
    // anything is.
    if result.rows_affected() == 0 {
        return Err(RegistryError::NotFound(format!("active signing key {fingerprint}")));
    }
    Ok(())
}

/// Every key of `publisher`, revoked ones included.
pub async fn keys(db: &Db, publisher: &PublisherName) -> Result<Vec<KeyInfo>, RegistryError> {
    sqlx::query_as::<_, KeyInfo>(
        "SELECT fingerprint, public_key, created_at, revoked_at FROM publisher_keys WHERE publisher = $1 ORDER BY created_at, fingerprint",
    )
    .bind(publisher.as_str())
    .fetch_all(&db.pool)
    .await
    .map_err(storage)
}

/// The active key of `publisher` with `fingerprint`.
pub async fn active_key(db: &Db, publisher: &PublisherName, fingerprint: &str) -> Result<PublicKey, RegistryError> {
    let key = keys(db, publisher)
        .await?
        .into_iter()
        .find(|k| k.fingerprint == fingerprint && k.revoked_at.is_none())
        .ok_or_else(|| RegistryError::UnknownKey(fingerprint.to_string()))?;
    key.public_key.parse().map_err(RegistryError::Signature)
}
