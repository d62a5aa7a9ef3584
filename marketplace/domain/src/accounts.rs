//! Who may call: operators, publishers (partners) and tenants. Publisher credentials live in
//! the registry; operator and tenant tokens live here, in `account_tokens`, stored only as
//! sha256 and shown once. A token's prefix says which table holds it: `nxo_` operator,
//! `nxt_` tenant, anything else is a publisher token.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use nexus_registry::publishers::{Issuer, random_hex, secret_hash};
use nexus_registry::{Credential, Db, ErrorCode, RegistryError, db::now_ms};
use serde::{Deserialize, Serialize};

use crate::error::{MarketError, storage};

const OPERATOR_PREFIX: &str = "nxo_";
const TENANT_PREFIX: &str = "nxt_";

/// What a tenant token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TenantScope {
    /// Install, configure, consent, pause, resume, uninstall.
    Installs,
    /// Send events and invoke installs.
    Events,
    /// See installs, invocations and usage.
    Read,
    /// Issue and revoke the tenant's tokens.
    Tokens,
}

impl TenantScope {
    pub const ALL: [Self; 4] = [Self::Installs, Self::Events, Self::Read, Self::Tokens];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Installs => "installs",
            Self::Events => "events",
            Self::Read => "read",
            Self::Tokens => "tokens",
        }
    }
}

impl FromStr for TenantScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope `{s}` (expected installs, events, read or tokens)"))
    }
}

/// A tenant's id: lowercase letters, digits and '-', starting with a letter, 2 to 39 long.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = MarketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (2..=39).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.ends_with('-');
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(MarketError::invalid(
                ErrorCode::InvalidId,
                format!("`{s}` is not a tenant id: use 2-39 lowercase letters, digits and '-', starting with a letter"),
            ))
        }
    }
}

impl TryFrom<String> for TenantId {
    type Error = MarketError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is calling, established from a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator { token_id: String },
    Publisher(Credential),
    Tenant { tenant: TenantId, token_id: String, scopes: BTreeSet<TenantScope> },
}

impl Caller {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        match self {
            Self::Operator { token_id } => format!("operator:{token_id}"),
            Self::Publisher(credential) => format!("publisher:{}:{}", credential.publisher, credential.token_id),
            Self::Tenant { tenant, token_id, .. } => format!("tenant:{tenant}:{token_id}"),
        }
    }

    pub fn role(&self) -> &'static str {
        match self {
            Self::Operator { .. } => "operator",
            Self::Publisher(_) => "publisher",
            Self::Tenant { .. } => "tenant",
        }
    }

    pub fn token_id(&self) -> &str {
        match self {
            Self::Operator { token_id } | Self::Tenant { token_id, .. } => token_id,
            Self::Publisher(credential) => &credential.token_id,
        }
    }

    pub fn require_operator(&self) -> Result<(), MarketError> {
        match self {
            Self::Operator { .. } => Ok(()),
            _ => Err(MarketError::Forbidden(format!("only an operator may do this; this is a {} token", self.role()))),
        }
    }

    /// The tenant the caller acts for, if it holds `scope`. Operators act for any tenant
    /// only where a route names it; this is for the tenant's own routes.
    pub fn tenant(&self, scope: TenantScope) -> Result<&TenantId, MarketError> {
        match self {
            Self::Tenant { tenant, scopes, .. } if scopes.contains(&scope) => Ok(tenant),
            Self::Tenant { .. } => Err(RegistryError::MissingScope(scope.as_str()).into()),
            _ => Err(MarketError::Forbidden(format!("this needs a tenant token; this is a {} token", self.role()))),
        }
    }

    /// The tenant whose things a read is about: an operator's must be named (`?tenant=`); a
    /// tenant (with `read`) reads its own, and naming another is not found (ids of others are
    /// not confirmed).
    pub fn tenant_to_read(&self, named: Option<&TenantId>) -> Result<TenantId, MarketError> {
        match (self, named) {
            (Self::Operator { .. }, Some(tenant)) => Ok(tenant.clone()),
            (Self::Operator { .. }, None) => {
                Err(MarketError::invalid(ErrorCode::InvalidQuery, "operators must name the tenant: ?tenant=<id>"))
            }
            (_, named) => {
                let own = self.tenant(TenantScope::Read)?;
                match named {
                    Some(named) if named != own => Err(MarketError::NotFound(format!("tenant {named}"))),
                    _ => Ok(own.clone()),
                }
            }
        }
    }

    /// Whether the caller is `publisher` itself or an operator.
    pub fn may_act_for_publisher(&self, publisher: &str) -> Result<(), MarketError> {
        match self {
            Self::Operator { .. } => Ok(()),
            Self::Publisher(credential) if credential.publisher.as_str() == publisher => Ok(()),
            Self::Publisher(_) => Err(RegistryError::NamespaceNotOwned { namespace: publisher.to_string() }.into()),
            Self::Tenant { .. } => Err(MarketError::Forbidden("this needs a publisher or operator token".into())),
        }
    }
}

/// A token as issued: `secret` is shown this once and never stored. A retry of the request
/// with the same `Idempotency-Key` gets this answer without `secret` and with
/// `secret_shown_once: true`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedAccountToken {
    pub id: String,
    pub secret: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
}

/// A tenant as listed to operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Tenant {
    pub id: String,
    pub display_name: String,
    pub created_at: i64,
}

/// Where a token is kept: the registry (publishers) or `account_tokens` (operators and
/// tenants). The secret's prefix says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Publisher,
    Account,
}

impl TokenKind {
    pub fn of(secret: &str) -> Self {
        let secret = secret.trim();
        if secret.starts_with(OPERATOR_PREFIX) || secret.starts_with(TENANT_PREFIX) {
            Self::Account
        } else {
            Self::Publisher
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publisher => "publisher",
            Self::Account => "account",
        }
    }
}

impl FromStr for TokenKind {
    type Err = MarketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "publisher" => Ok(Self::Publisher),
            "account" => Ok(Self::Account),
            other => Err(storage(format!("unknown token kind {other}"))),
        }
    }
}

/// The bearer token's caller, or why it is refused.
pub async fn authenticate(db: &Db, registry: &nexus_registry::Registry, secret: &str) -> Result<Caller, MarketError> {
    let secret = secret.trim();
    authenticate_hash(db, registry, TokenKind::of(secret), &secret_hash(secret)).await
}

/// The caller of the token stored as `hash`, checked for revocation and expiry now.
pub async fn authenticate_hash(
    db: &Db,
    registry: &nexus_registry::Registry,
    kind: TokenKind,
    hash: &str,
) -> Result<Caller, MarketError> {
    if kind == TokenKind::Publisher {
        return Ok(Caller::Publisher(registry.authenticate_hash(hash).await?));
    }
    Ok(account_caller(db, hash).await?.caller)
}

/// The caller of an account token, and the cache generations it was read at (in the same
/// statement, so a revocation and its generation bump are seen together or not at all).
#[derive(Debug, Clone)]
pub struct ReadCaller {
    pub caller: Caller,
    pub expires_at: Option<i64>,
    /// The marketplace's `cache_generation`.
    pub generation: i64,
    /// The tenant's `tenants.generation` (0 for operators).
    pub tenant_generation: i64,
}

/// Checks an account token (operator or tenant) stored as `hash` for revocation and expiry
/// now.
pub async fn account_caller(db: &Db, hash: &str) -> Result<ReadCaller, MarketError> {
    let row = sqlx::query_as::<_, TokenRow>(
        "SELECT t.id, t.role, t.tenant_id, t.scopes, t.expires_at, t.revoked_at, \
         (SELECT generation FROM cache_generation WHERE id = 1) AS generation, \
         COALESCE((SELECT generation FROM tenants WHERE id = t.tenant_id), 0) AS tenant_generation \
         FROM account_tokens t WHERE t.secret_sha256 = $1",
    )
    .bind(hash)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(RegistryError::Unauthenticated)?;
    if row.revoked_at.is_some() {
        return Err(RegistryError::TokenRevoked.into());
    }
    let expires_at = row.expires_at;
    if expires_at.is_some_and(|at| at <= now_ms()) {
        return Err(RegistryError::TokenExpired.into());
    }
    let token_id = row.id;
    let caller = match row.role.as_str() {
        "operator" => Caller::Operator { token_id },
        "tenant" => Caller::Tenant {
            tenant: row.tenant_id.unwrap_or_default().parse()?,
            token_id,
            scopes: row.scopes.split(',').filter_map(|s| s.parse().ok()).collect(),
        },
        other => return Err(storage(format!("token {token_id} has unknown role {other}"))),
    };
    Ok(ReadCaller { caller, expires_at, generation: row.generation, tenant_generation: row.tenant_generation })
}

/// A row of [`account_caller`].
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    role: String,
    tenant_id: Option<String>,
    scopes: String,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    generation: i64,
    tenant_generation: i64,
}

async fn insert_token(
    db: &Db,
    role: &str,
    tenant: Option<&TenantId>,
    scopes: &[String],
    label: &str,
    expires_at: Option<i64>,
    issuer: &Issuer<'_>,
) -> Result<IssuedAccountToken, MarketError> {
    let id = format!("tok_{}", random_hex(8)?);
    let prefix = if tenant.is_some() { TENANT_PREFIX } else { OPERATOR_PREFIX };
    let secret = format!("{prefix}{}_{}", &id[4..], random_hex(24)?);
    sqlx::query(
        "INSERT INTO account_tokens (id, role, tenant_id, secret_sha256, scopes, label, created_at, expires_at, \
         created_by, person_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(role)
    .bind(tenant.map(TenantId::as_str))
    .bind(secret_hash(&secret))
    .bind(scopes.join(","))
    .bind(label)
    .bind(now_ms())
    .bind(expires_at)
    .bind(issuer.created_by)
    .bind(issuer.person)
    .execute(db.writer())
    .await?;
    Ok(IssuedAccountToken {
        id,
        secret,
        role: role.to_string(),
        tenant: tenant.map(ToString::to_string),
        scopes: scopes.to_vec(),
        expires_at,
    })
}

/// When a token given `days` to live expires (none: never); zero days is refused (a token
/// dead on arrival).
pub fn expiry_in_days(days: Option<u32>) -> Result<Option<i64>, MarketError> {
    match days {
        Some(0) => Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            "expires_in_days must be at least 1; omit it for no expiry",
        )),
        days => Ok(days.map(|days| now_ms() + i64::from(days) * 86_400_000)),
    }
}

/// Issues an operator token. Only the `nexus operator token` command (with database access)
/// and an existing operator may do this.
pub async fn issue_operator_token(
    db: &Db,
    label: &str,
    expires_at: Option<i64>,
    issuer: &Issuer<'_>,
) -> Result<IssuedAccountToken, MarketError> {
    MarketError::check_text(ErrorCode::InvalidRequest, "label", label, nexus_registry::text::MAX_LABEL_CHARS)?;
    insert_token(db, "operator", None, &["admin".to_string()], label, expires_at, issuer).await
}

/// Creates a tenant and its first token, with every scope.
pub async fn create_tenant(
    db: &Db,
    id: &TenantId,
    display_name: &str,
    created_by: &str,
) -> Result<IssuedAccountToken, MarketError> {
    if display_name.trim().is_empty() || display_name.len() > 100 {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "display_name must be 1 to 100 characters"));
    }
    let inserted = sqlx::query("INSERT INTO tenants (id, display_name, created_at) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(display_name)
        .bind(now_ms())
        .execute(db.writer())
        .await;
    match inserted {
        Err(error) if nexus_registry::db::is_unique_violation(&error) => {
            return Err(MarketError::conflict(ErrorCode::TenantExists, format!("tenant {id} already exists")));
        }
        other => other?,
    };
    issue_tenant_token(db, id, TenantScope::ALL.into_iter().collect(), "initial", None, &Issuer::by(created_by)).await
}

pub async fn issue_tenant_token(
    db: &Db,
    tenant: &TenantId,
    scopes: BTreeSet<TenantScope>,
    label: &str,
    expires_at: Option<i64>,
    issuer: &Issuer<'_>,
) -> Result<IssuedAccountToken, MarketError> {
    if scopes.is_empty() {
        return Err(MarketError::invalid(ErrorCode::InvalidRequest, "a token needs at least one scope"));
    }
    MarketError::check_text(ErrorCode::InvalidRequest, "label", label, nexus_registry::text::MAX_LABEL_CHARS)?;
    let scopes: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
    insert_token(db, "tenant", Some(tenant), &scopes, label, expires_at, issuer).await
}

/// Revokes a tenant token (`tenant` Some) or an operator token (`tenant` None).
pub async fn revoke_token(db: &Db, tenant: Option<&TenantId>, token_id: &str) -> Result<(), MarketError> {
    let result = sqlx::query(
        "UPDATE account_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
         AND ((tenant_id = $3) OR ($3 IS NULL AND role = 'operator'))",
    )
    .bind(now_ms())
    .bind(token_id)
    .bind(tenant.map(TenantId::as_str))
    .execute(db.writer())
    .await?;
    if result.rows_affected() == 0 {
        return Err(MarketError::NotFound(format!("active token {token_id}")));
    }
    Ok(())
}

pub async fn tenant_exists(db: &Db, id: &TenantId) -> Result<bool, MarketError> {
    let found = sqlx::query("SELECT 1 FROM tenants WHERE id = $1").bind(id.as_str()).fetch_optional(&db.pool).await?;
    Ok(found.is_some())
}

pub async fn list_tenants(db: &Db, query: &crate::error::PageQuery) -> Result<crate::error::Page<Tenant>, MarketError> {
    let (page, per_page) = query.checked()?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants").fetch_one(&db.pool).await?;
    let items =
        sqlx::query_as::<_, Tenant>("SELECT id, display_name, created_at FROM tenants ORDER BY id LIMIT $1 OFFSET $2")
            .bind(i64::from(per_page))
            .bind(i64::from(page - 1) * i64::from(per_page))
            .fetch_all(&db.pool)
            .await?;
    Ok(crate::error::Page::new(items, page, per_page, total))
}
