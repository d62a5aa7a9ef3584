//! Operator and tenant tokens: issued (the secret shown once, kept as sha256), checked for
//! revocation and expiry on every request, and revoked.

use std::collections::BTreeSet;

use nexus_registry::publishers::{Issuer, random_hex, secret_hash};
use nexus_registry::{Db, ErrorCode, RegistryError, db::now_ms};
use serde::{Deserialize, Serialize};

use super::{Caller, OPERATOR_PREFIX, TENANT_PREFIX, TenantId, TenantScope, TokenKind};
use crate::error::{MarketError, storage};
use crate::ids::TokenId;

/// A token as issued: `secret` is shown this once and never stored. A retry of the request
/// with the same `Idempotency-Key` gets this answer without `secret` and with
/// `secret_shown_once: true`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssuedAccountToken {
    #[schema(value_type = String)]
    pub id: crate::ids::TokenId,
    pub secret: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
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
    let id = TokenId::random()?;
    let prefix = if tenant.is_some() { TENANT_PREFIX } else { OPERATOR_PREFIX };
    let secret = format!("{prefix}{}_{}", &id.as_str()[4..], random_hex(24)?);
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
