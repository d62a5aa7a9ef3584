//! Tokens a person signs in for (`nexus login`): the email address, the password and, when
//! the person has one, the second factor's code, exchanged for an API token of one of
//! their organizations, in their role there. Such a token names the person: it ends when
//! they leave that organization or their role changes, and when they sign out everywhere.
//!
//! Sign-in limits and answers are the console's (`people::sign_in`): a wrong address or
//! password is one answer, and failures count per address and per client.

use nexus_registry::publishers::{self, Issuer};
use nexus_registry::{ErrorCode, RegistryError};
use serde::Serialize;

use super::{Membership, second_factor};
use crate::accounts::{self, TenantId};
use crate::audit;
use crate::error::{MarketError, storage};
use crate::ids::{PersonId, TokenId};
use crate::market::Market;

/// How long a token from `nexus login` lasts.
pub const LOGIN_TOKEN_DAYS: i64 = 30;
/// The operators' organization's id (its kind is `operator`).
pub const OPERATORS: &str = "marketplace";

/// What `nexus login` sends.
#[derive(Debug, Clone, Default)]
pub struct LogIn {
    pub email: String,
    pub password: String,
    /// The authenticator's code or a recovery code, for a person with a second factor.
    pub code: Option<String>,
    /// `tenant:<id>`, `publisher:<name>` or `operator`; the person's first when absent.
    pub organization: Option<String>,
    /// Names the token in lists (the machine it is for); `nexus login` by default.
    pub label: Option<String>,
}

/// A token issued to a person: `secret` is shown this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoggedIn {
    pub token_id: TokenId,
    pub secret: String,
    /// `tenant:<id>`, `publisher:<name>` or `operator`.
    pub organization: String,
    pub role: String,
    pub email: String,
    pub scopes: Vec<String>,
    pub expires_at: i64,
}

/// How an organization is named to people and in `--organization`.
pub fn org_name(kind: &str, id: &str) -> String {
    if kind == "operator" { "operator".to_string() } else { format!("{kind}:{id}") }
}

/// Checks the person as the console does, then issues a token for the organization asked for.
pub async fn log_in(market: &Market, base: &str, request: LogIn, client: &str) -> Result<LoggedIn, MarketError> {
    let signed = super::sign_in(market, base, &request.email, &request.password, client).await?;
    let person = signed.person;
    let memberships = check_second_factor(market, &person, request.code.as_deref()).await?;
    let membership = chosen(&memberships, request.organization.as_deref())?;
    let label = request.label.as_deref().map(str::trim).filter(|label| !label.is_empty()).unwrap_or("nexus login");
    let now = nexus_registry::db::now_ms();
    let expires_at = now + LOGIN_TOKEN_DAYS * 24 * 60 * 60 * 1000;
    let created_by = format!("person:{person}");
    let issuer = Issuer { created_by: &created_by, person: Some(person.as_str()) };
    let (token_id, secret, scopes) = issue(market, membership, label, expires_at, &issuer).await?;
    let organization = org_name(&membership.org_kind, &membership.org_id);
    let detail = serde_json::json!({ "token": token_id, "organization": organization, "label": label });
    audit::record(market.db.writer(), &created_by, "person.logged_in", person.as_str(), detail).await?;
    let email: String =
        sqlx::query_scalar("SELECT email FROM people WHERE id = $1").bind(&person).fetch_one(&market.db.pool).await?;
    Ok(LoggedIn {
        token_id,
        secret,
        organization,
        role: membership.role.as_str().to_string(),
        email,
        scopes,
        expires_at,
    })
}

/// Checks the second factor's `code` of a person who has one, refuses a person who must
/// have one and has not, and answers the person's memberships.
async fn check_second_factor(
    market: &Market,
    person: &PersonId,
    code: Option<&str>,
) -> Result<Vec<Membership>, MarketError> {
    let has_second_factor = second_factor::enabled(market, person).await?;
    let memberships = super::memberships(market, person).await?;
    if has_second_factor {
        let code = code.map(str::trim).filter(|code| !code.is_empty()).ok_or_else(|| {
            MarketError::invalid(
                ErrorCode::SecondFactorRequired,
                "this account signs in with a second factor: pass the authenticator's code (--code), or a recovery code",
            )
        })?;
        second_factor::verify(market, person, code).await?;
    } else if super::second_factor_required(market, &memberships).await? {
        return Err(MarketError::invalid(
            ErrorCode::SecondFactorRequired,
            "this account must set up a second factor first: sign in to the console and open Security",
        ));
    }
    Ok(memberships)
}

/// Issues the token of `membership`'s organization, in its role there: its id, its secret
/// and its scopes.
async fn issue(
    market: &Market,
    membership: &Membership,
    label: &str,
    expires_at: i64,
    issuer: &Issuer<'_>,
) -> Result<(TokenId, String, Vec<String>), MarketError> {
    Ok(match membership.org_kind.as_str() {
        "tenant" => {
            let tenant: TenantId = membership.org_id.parse()?;
            let issued = accounts::issue_tenant_token(
                &market.db,
                &tenant,
                membership.role.tenant_scopes(),
                label,
                Some(expires_at),
                issuer,
            )
            .await?;
            (issued.id, issued.secret, issued.scopes)
        }
        "publisher" => {
            let name = membership
                .org_id
                .parse()
                .map_err(|e: nexus_registry::id::NameError| storage(format!("stored publisher: {e}")))?;
            let scopes = membership.role.publisher_scopes();
            let issued = publishers::issue_token(&market.db, &name, scopes, label, Some(expires_at), issuer).await?;
            (TokenId::stored(issued.id)?, issued.secret, issued.scopes.iter().map(|s| s.as_str().to_string()).collect())
        }
        "operator" => {
            let issued = accounts::issue_operator_token(&market.db, label, Some(expires_at), issuer).await?;
            (issued.id, issued.secret, issued.scopes)
        }
        other => return Err(storage(format!("membership of an unknown kind of organization: {other}"))),
    })
}

/// The membership `--organization` names, or the person's first.
fn chosen<'m>(memberships: &'m [Membership], named: Option<&str>) -> Result<&'m Membership, MarketError> {
    let Some(named) = named.map(str::trim).filter(|named| !named.is_empty()) else {
        return memberships.first().ok_or_else(|| {
            MarketError::Forbidden("you belong to no organization yet: accept an invitation or sign up again".into())
        });
    };
    memberships.iter().find(|m| org_name(&m.org_kind, &m.org_id) == named).ok_or_else(|| {
        let yours: Vec<String> = memberships.iter().map(|m| org_name(&m.org_kind, &m.org_id)).collect();
        MarketError::NotFound(format!("your membership of {named} (yours: {})", yours.join(", ")))
    })
}

/// Revokes the tokens `person` signed in for: of one organization (`org`: kind and id), or
/// all of them; in the caller's transaction, beside the change that ends them.
pub async fn revoke_of_person(
    tx: &mut sqlx::AnyConnection,
    person: &PersonId,
    org: Option<(&str, &str)>,
) -> Result<(), MarketError> {
    let now = nexus_registry::db::now_ms();
    let (kind, id) = org.unzip();
    let everything = kind.is_none();
    if everything || kind == Some("tenant") || kind == Some("operator") {
        // A tenant's tokens name it; the operators' name none.
        let tenant = if kind == Some("tenant") { id } else { None };
        sqlx::query(
            "UPDATE account_tokens SET revoked_at = $1 WHERE person_id = $2 AND revoked_at IS NULL \
             AND ($3 OR (tenant_id = $4) OR ($4 IS NULL AND role = 'operator'))",
        )
        .bind(now)
        .bind(person)
        .bind(everything)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    }
    if everything || kind == Some("publisher") {
        sqlx::query(
            "UPDATE publisher_tokens SET revoked_at = $1 WHERE person_id = $2 AND revoked_at IS NULL \
             AND ($3 OR publisher = $4)",
        )
        .bind(now)
        .bind(person)
        .bind(everything)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The person a token was issued to (`nexus login`) and who created it, by the token's id.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TokenOrigin {
    /// The audit name of the caller that created the token.
    pub created_by: Option<String>,
    /// The email address of the person the token was issued to.
    pub person: Option<String>,
}

/// Where the token `token_id` came from (either kind of token).
pub async fn token_origin(market: &Market, token_id: &str) -> Result<TokenOrigin, MarketError> {
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT t.created_by, p.email FROM (SELECT created_by, person_id FROM account_tokens WHERE id = $1 \
         UNION ALL SELECT created_by, person_id FROM publisher_tokens WHERE id = $1) t \
         LEFT JOIN people p ON p.id = t.person_id",
    )
    .bind(token_id)
    .fetch_optional(&market.db.pool)
    .await?;
    let Some((created_by, person)) = row else { return Ok(TokenOrigin::default()) };
    Ok(TokenOrigin { created_by, person })
}

/// Ends the calling token (`nexus logout`), whoever it was issued to.
pub async fn log_out(market: &Market, caller: &crate::accounts::Caller) -> Result<(), MarketError> {
    let table = match caller {
        crate::accounts::Caller::Publisher(_) => "publisher_tokens",
        _ => "account_tokens",
    };
    let mut tx = market.db.write_tx().await?;
    let revoked = sqlx::query(&format!("UPDATE {table} SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"))
        .bind(nexus_registry::db::now_ms())
        .bind(caller.token_id())
        .execute(&mut *tx)
        .await?;
    if revoked.rows_affected() == 0 {
        tx.rollback().await?;
        return Err(RegistryError::TokenRevoked.into());
    }
    let detail = serde_json::json!({ "token": caller.token_id() });
    audit::record(&mut *tx, &caller.actor(), "token.revoked", caller.token_id(), detail).await?;
    tx.commit().await?;
    Ok(())
}

/// The person the calling token was issued to (`nexus login`), if it was; a person's console
/// session names its person itself.
pub async fn person_of(market: &Market, caller: &crate::accounts::Caller) -> Result<Option<PersonId>, MarketError> {
    let table = match caller {
        crate::accounts::Caller::Publisher(_) => "publisher_tokens",
        _ => "account_tokens",
    };
    let person: Option<Option<PersonId>> = sqlx::query_scalar(&format!("SELECT person_id FROM {table} WHERE id = $1"))
        .bind(caller.token_id())
        .fetch_optional(&market.db.pool)
        .await?;
    Ok(person.flatten())
}
