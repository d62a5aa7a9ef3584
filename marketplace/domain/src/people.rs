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

mod links;
pub mod login;
mod passwords;
mod reset;
pub mod second_factor;
mod seeding;
mod sign_in;
mod sign_up;

use nexus_registry::ErrorCode;

pub use passwords::check_password;
pub use reset::{request_reset, reset_password};
pub use seeding::{add_confirmed_member, insert_confirmed};
pub use sign_in::{SignedIn, sign_in, sign_out_everywhere};
pub use sign_up::{SignUp, sign_up, verify_email};

use crate::accounts::{Caller, TenantScope};
use crate::error::{MarketError, storage};
use crate::ids::PersonId;
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

/// The clock console sessions are stamped with (`sessions.rs`: the system's), which
/// `sessions_valid_after` is compared with; the billing clock may be shifted (a demo's
/// history, `NEXUS_CLOCK_OFFSET_MS`).
fn session_time() -> i64 {
    nexus_registry::db::now_ms()
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
pub async fn memberships(market: &Market, person: &PersonId) -> Result<Vec<Membership>, MarketError> {
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
    person: &PersonId,
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
