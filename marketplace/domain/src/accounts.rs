//! Who may call: operators, publishers (partners) and tenants. Publisher credentials live in
//! the registry; operator and tenant tokens live here, in `account_tokens`, stored only as
//! sha256 and shown once. A token's prefix says which table holds it: `nxo_` operator,
//! `nxt_` tenant, anything else is a publisher token.

mod tenants;
mod tokens;

use std::collections::BTreeSet;
use std::str::FromStr;

use nexus_registry::{Credential, ErrorCode, RegistryError};
use serde::{Deserialize, Serialize};

pub use tenants::{Tenant, create_tenant, list_tenants, tenant_exists};
pub use tokens::{
    IssuedAccountToken, ReadCaller, account_caller, authenticate, authenticate_hash, expiry_in_days,
    issue_operator_token, issue_tenant_token, revoke_token,
};

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
    /// A tenant id as a row holds it: a malformed one is a storage error, not a bad request.
    pub fn stored(text: String) -> Result<Self, MarketError> {
        text.parse().map_err(|_| storage(format!("stored tenant id `{text}`")))
    }
}

crate::ids::string_id!(TenantId);

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
