//! Web console sessions: a person signed in with their email address and password
//! (`people.rs`; the session acts as their organization, in their role, resolved again on
//! every request), or an API token, typed once into the sign-in form, exchanged for a
//! session cookie. The session is only a pointer to the token: every request resolves the
//! token again through [`accounts::authenticate_hash`], so a session can never do more than
//! its token, and revoking or expiring the token ends it. Nothing secret is stored: the
//! cookie and the token are kept as sha256.

use nexus_registry::RegistryError;
use nexus_registry::db::now_ms;
use nexus_registry::publishers::{random_hex, secret_hash};

use crate::accounts::{self, Caller, TokenKind};
use crate::error::MarketError;
use crate::ids::PersonId;
use crate::market::Market;

/// How long a session lasts from sign-in, whatever is done with it.
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;

/// A signed-in console user.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    /// The value every form of this session must carry back.
    pub csrf: String,
    pub expires_at: i64,
    /// The person signed in, when it was one rather than a pasted API token.
    pub person: Option<PersonId>,
    /// Every organization of that person (empty for a token's session).
    pub memberships: Vec<crate::people::Membership>,
    /// The person must set up a second factor before the console does anything else.
    pub needs_second_factor: bool,
}

/// A new session and the cookie value that names it (shown to the browser once).
#[derive(Debug)]
pub struct Opened {
    pub cookie: String,
    pub session: Session,
}

/// Signs in with an API token: refused exactly as the API refuses the token.
pub async fn open(market: &Market, token: &str) -> Result<Opened, MarketError> {
    let token = token.trim();
    let caller = accounts::authenticate(&market.db, &market.registry, token).await?;
    let now = now_ms();
    sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1").bind(now).execute(market.db.writer()).await?;
    let cookie = random_hex(32)?;
    let csrf = random_hex(16)?;
    let expires_at = now + SESSION_LIFETIME_MS;
    sqlx::query(
        "INSERT INTO console_sessions (id_sha256, token_kind, token_sha256, csrf, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(secret_hash(&cookie))
    .bind(TokenKind::of(token).as_str())
    .bind(secret_hash(token))
    .bind(&csrf)
    .bind(now)
    .bind(expires_at)
    .execute(market.db.writer())
    .await?;
    let session =
        Session { caller, csrf, expires_at, person: None, memberships: Vec::new(), needs_second_factor: false };
    Ok(Opened { cookie, session })
}

/// Signs a person in (`people::sign_in` checked who): a session acting as their
/// organization, in their role there.
pub async fn open_for_person(market: &Market, person: &PersonId) -> Result<Opened, MarketError> {
    let now = now_ms();
    let acting = crate::people::caller_of(market, person, now, None).await?.ok_or(RegistryError::Unauthenticated)?;
    sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1").bind(now).execute(market.db.writer()).await?;
    let cookie = random_hex(32)?;
    let csrf = random_hex(16)?;
    let expires_at = now + SESSION_LIFETIME_MS;
    sqlx::query(
        "INSERT INTO console_sessions (id_sha256, token_kind, token_sha256, csrf, created_at, expires_at, person_id) \
         VALUES ($1, 'person', '', $2, $3, $4, $5)",
    )
    .bind(secret_hash(&cookie))
    .bind(&csrf)
    .bind(now)
    .bind(expires_at)
    .bind(person)
    .execute(market.db.writer())
    .await?;
    let session = Session {
        caller: acting.caller,
        csrf,
        expires_at,
        person: Some(person.clone()),
        memberships: acting.memberships,
        needs_second_factor: acting.needs_second_factor,
    };
    Ok(Opened { cookie, session })
}

/// The session a cookie names, with its caller as of now.
pub async fn resolve(market: &Market, cookie: &str) -> Result<Session, MarketError> {
    let row = sqlx::query_as::<_, SessionRow>(
        "SELECT token_kind, token_sha256, csrf, created_at, expires_at, person_id, org_kind, org_id \
         FROM console_sessions WHERE id_sha256 = $1",
    )
    .bind(secret_hash(cookie))
    .fetch_optional(&market.db.pool)
    .await?
    .ok_or(RegistryError::Unauthenticated)?;
    let expires_at = row.expires_at;
    if expires_at <= now_ms() {
        close(market, cookie).await?;
        return Err(RegistryError::TokenExpired.into());
    }
    if let Some(person) = row.person_id {
        let org = row.org_kind.as_deref().zip(row.org_id.as_deref());
        let acting = crate::people::caller_of(market, &person, row.created_at, org)
            .await?
            .ok_or(RegistryError::Unauthenticated)?;
        return Ok(Session {
            caller: acting.caller,
            csrf: row.csrf,
            expires_at,
            person: Some(person),
            memberships: acting.memberships,
            needs_second_factor: acting.needs_second_factor,
        });
    }
    let kind: TokenKind = row.token_kind.parse()?;
    let caller = accounts::authenticate_hash(&market.db, &market.registry, kind, &row.token_sha256).await?;
    Ok(Session {
        caller,
        csrf: row.csrf,
        expires_at,
        person: None,
        memberships: Vec::new(),
        needs_second_factor: false,
    })
}

/// A row of [`resolve`]: a person's session (`person_id`), or a token's.
#[derive(sqlx::FromRow)]
struct SessionRow {
    token_kind: String,
    token_sha256: String,
    csrf: String,
    created_at: i64,
    expires_at: i64,
    person_id: Option<PersonId>,
    org_kind: Option<String>,
    org_id: Option<String>,
}

/// Makes a person's session act as another organization of theirs.
pub async fn switch(
    market: &Market,
    cookie: &str,
    person: &PersonId,
    org_kind: &str,
    org_id: &str,
) -> Result<(), MarketError> {
    let belongs =
        crate::people::memberships(market, person).await?.iter().any(|m| m.org_kind == org_kind && m.org_id == org_id);
    if !belongs {
        return Err(MarketError::NotFound(format!("your membership of {org_kind} {org_id}")));
    }
    sqlx::query("UPDATE console_sessions SET org_kind = $1, org_id = $2 WHERE id_sha256 = $3 AND person_id = $4")
        .bind(org_kind)
        .bind(org_id)
        .bind(secret_hash(cookie))
        .bind(person)
        .execute(market.db.writer())
        .await?;
    Ok(())
}

/// Signs out: the cookie names nothing afterwards.
pub async fn close(market: &Market, cookie: &str) -> Result<(), MarketError> {
    sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
        .bind(secret_hash(cookie))
        .execute(market.db.writer())
        .await?;
    Ok(())
}
