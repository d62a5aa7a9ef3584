//! An organization's API tokens as its members manage them in the console: the list (who
//! made each, the person it was issued to, its scopes, its state), a new one made by a
//! member whose role may (a tenant's owners and admins, `tokens`; a publisher's, `keys`),
//! never with a scope the member lacks, shown once; and revoking one. Each names its
//! creator, the member's audit name.

use std::collections::BTreeSet;

use nexus_registry::publishers::{self, Issuer};
use nexus_registry::{ErrorCode, RegistryError, Scope};
use serde::Serialize;
use serde_json::json;

use crate::accounts::{self, Caller, TenantScope};
use crate::audit;
use crate::error::MarketError;
use crate::ids::TokenId;
use crate::market::Market;

/// One token as the organization's page lists it (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct OrgToken {
    pub id: TokenId,
    pub label: String,
    pub scopes: Vec<String>,
    /// The audit name of whoever made it.
    pub created_by: Option<String>,
    /// The email address of the person it was issued to (`nexus login`).
    pub person: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A token just made: the secret, shown this once.
#[derive(Debug, Clone)]
pub struct Made {
    pub id: TokenId,
    pub secret: String,
}

/// The scopes a member may put on a token: the ones their own session holds.
pub fn grantable(caller: &Caller) -> Vec<&'static str> {
    match caller {
        Caller::Tenant { scopes, .. } => scopes.iter().map(|s| s.as_str()).collect(),
        Caller::Publisher(credential) => credential.scopes.iter().map(|s| s.as_str()).collect(),
        Caller::Operator { .. } => Vec::new(),
    }
}

/// Who may manage the tokens: a tenant's with `tokens`, a publisher's with `keys`.
pub fn require_manager(caller: &Caller) -> Result<(), MarketError> {
    match caller {
        Caller::Tenant { .. } => caller.tenant(TenantScope::Tokens).map(drop),
        Caller::Publisher(credential) => credential.require(Scope::Keys).map_err(Into::into),
        Caller::Operator { .. } => Err(MarketError::Forbidden(
            "operators' tokens are made with `nexus operator token` or POST /v1/operator/tokens".into(),
        )),
    }
}

/// The organization's tokens, newest first (the last 200).
pub async fn list(market: &Market, caller: &Caller) -> Result<Vec<OrgToken>, MarketError> {
    require_manager(caller)?;
    let (table, owner, id) = match caller {
        Caller::Tenant { tenant, .. } => ("account_tokens", "tenant_id", tenant.as_str().to_string()),
        Caller::Publisher(credential) => ("publisher_tokens", "publisher", credential.publisher.to_string()),
        Caller::Operator { .. } => unreachable_operator()?,
    };
    let rows = sqlx::query_as::<_, OrgTokenRow>(&format!(
        "SELECT t.id, t.label, t.scopes, t.created_by, p.email, t.created_at, t.expires_at, t.revoked_at \
         FROM {table} t LEFT JOIN people p ON p.id = t.person_id WHERE t.{owner} = $1 \
         ORDER BY t.created_at DESC, t.id LIMIT 200"
    ))
    .bind(&id)
    .fetch_all(&market.db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| OrgToken {
            id: row.id,
            label: row.label,
            scopes: row.scopes.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            created_by: row.created_by,
            person: row.email,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct OrgTokenRow {
    id: TokenId,
    label: String,
    scopes: String,
    created_by: Option<String>,
    email: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

fn unreachable_operator<T>() -> Result<T, MarketError> {
    Err(MarketError::Forbidden("operators have no organization tokens page".into()))
}

/// Makes a token with `scopes` (each one the member holds) for `days` (none: no expiry).
pub async fn create(
    market: &Market,
    caller: &Caller,
    label: &str,
    scopes: &[String],
    days: Option<u32>,
) -> Result<Made, MarketError> {
    require_manager(caller)?;
    let mine = grantable(caller);
    if let Some(missing) = scopes.iter().find(|scope| !mine.contains(&scope.as_str())) {
        return Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            format!("`{missing}` is not a scope you hold (yours: {})", mine.join(", ")),
        ));
    }
    let expires_at = accounts::expiry_in_days(days)?;
    let actor = caller.actor();
    let issuer = Issuer::by(&actor);
    let (id, secret, target) = match caller {
        Caller::Tenant { tenant, .. } => {
            let scopes: BTreeSet<TenantScope> = scopes.iter().filter_map(|s| s.parse().ok()).collect();
            let made = accounts::issue_tenant_token(&market.db, tenant, scopes, label, expires_at, &issuer).await?;
            (made.id, made.secret, tenant.to_string())
        }
        Caller::Publisher(credential) => {
            let scopes: BTreeSet<Scope> = scopes.iter().filter_map(|s| s.parse().ok()).collect();
            let made =
                publishers::issue_token(&market.db, &credential.publisher, scopes, label, expires_at, &issuer).await?;
            (TokenId::stored(made.id)?, made.secret, credential.publisher.to_string())
        }
        Caller::Operator { .. } => return unreachable_operator(),
    };
    let detail = json!({ "token": id, "scopes": scopes, "expires_at": expires_at });
    audit::record(market.db.writer(), &actor, "token.issued", &target, detail).await?;
    Ok(Made { id, secret })
}

/// Revokes one of the organization's tokens.
pub async fn revoke(market: &Market, caller: &Caller, token_id: &TokenId) -> Result<(), MarketError> {
    require_manager(caller)?;
    let target = match caller {
        Caller::Tenant { tenant, .. } => {
            accounts::revoke_token(&market.db, Some(tenant), token_id.as_str()).await?;
            tenant.to_string()
        }
        Caller::Publisher(credential) => {
            publishers::revoke_token(&market.db, credential, token_id.as_str()).await.map_err(|e| match e {
                RegistryError::NotFound(what) => MarketError::NotFound(what),
                other => other.into(),
            })?;
            credential.publisher.to_string()
        }
        Caller::Operator { .. } => return unreachable_operator(),
    };
    audit::record(market.db.writer(), &caller.actor(), "token.revoked", &target, json!({ "token": token_id })).await
}
