//! Accounts: tenants and publishers (created by operators), tenant and operator tokens,
//! `whoami`, and the audit log.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use nexus_registry::publishers::Issuer;
use nexus_registry::{ErrorCode, IssuedToken, RegistryError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::extract::{JsonBody, QueryParams};
use super::{ApiError, AppState};
use crate::accounts::{self, Caller, IssuedAccountToken, Tenant, TenantId, TenantScope};
use crate::audit::{self, AuditEntry, AuditQuery};
use crate::error::{CursorPage, MarketError, Page, PageQuery};
use crate::ids::TokenId;
use crate::people::login;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show_whoami))
        .routes(routes!(log_in))
        .routes(routes!(log_out))
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(create_tenant_token))
        .routes(routes!(revoke_tenant_token))
        .routes(routes!(create_publisher))
        .routes(routes!(create_operator_token))
        .routes(routes!(revoke_operator_token))
        .routes(routes!(read_audit))
        .routes(routes!(list_nodes))
}

/// The nodes serving this marketplace, live ones first (operators only).
#[utoipa::path(get, path = "/v1/nodes", tag = "accounts", params(PageQuery),
    responses((status = 200, body = Page<crate::nodes::Node>)))]
pub async fn list_nodes(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<crate::nodes::Node>>, ApiError> {
    Ok(Json(Page::of(crate::nodes::list(&state.market, &caller).await?, &query)?))
}

/// The calling token: its role, whom it acts for, its scopes, and where it came from.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    role: &'static str,
    token_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    publisher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    scopes: Vec<String>,
    /// The email address of the person the token was issued to (`nexus login`).
    #[serde(skip_serializing_if = "Option::is_none")]
    person: Option<String>,
    /// The audit name of whoever created the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<String>,
}

#[utoipa::path(get, path = "/v1/whoami", tag = "accounts", responses((status = 200, body = WhoAmI)))]
pub async fn show_whoami(State(state): State<AppState>, Auth(caller): Auth) -> Result<Json<WhoAmI>, ApiError> {
    let (publisher, tenant, scopes) = match &caller {
        Caller::Operator { .. } => (None, None, vec!["admin".to_string()]),
        Caller::Publisher(c) => {
            (Some(c.publisher.to_string()), None, c.scopes.iter().map(|s| s.as_str().to_string()).collect())
        }
        Caller::Tenant { tenant, scopes, .. } => {
            (None, Some(tenant.to_string()), scopes.iter().map(|s| s.as_str().to_string()).collect())
        }
    };
    let origin = login::token_origin(&state.market, caller.token_id()).await?;
    Ok(Json(WhoAmI {
        role: caller.role(),
        token_id: caller.token_id().to_string(),
        publisher,
        tenant,
        scopes,
        person: origin.person,
        created_by: origin.created_by,
    }))
}

/// `nexus login`: a person's email address, password and (with a second factor) code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogInBody {
    email: String,
    password: String,
    /// The authenticator's code, or a recovery code.
    #[serde(default)]
    code: Option<String>,
    /// `tenant:<id>`, `publisher:<name>` or `operator`; the person's first organization when absent.
    #[serde(default)]
    organization: Option<String>,
    /// Names the token (the machine it is for).
    #[serde(default)]
    label: Option<String>,
}

/// Exchanges a person's sign-in for an API token of one of their organizations, in their
/// role there, for 30 days (shown once). Refused like the console's sign-in: one answer for
/// a wrong address or password, limits per address and per client.
#[utoipa::path(post, path = "/v1/login", tag = "accounts", request_body = LogInBody, security(()),
    responses((status = 201, body = login::LoggedIn, description = "the token, shown once")))]
pub async fn log_in(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    JsonBody(body): JsonBody<LogInBody>,
) -> Result<(StatusCode, Json<login::LoggedIn>), ApiError> {
    let client = super::extract::client_address(&extensions);
    let request = login::LogIn {
        email: body.email,
        password: body.password,
        code: body.code,
        organization: body.organization,
        label: body.label,
    };
    let logged_in = login::log_in(&state.market, &state.public_url, request, &client).await?;
    Ok((StatusCode::CREATED, Json(logged_in)))
}

/// Ends the calling token (`nexus logout`).
#[utoipa::path(post, path = "/v1/logout", tag = "accounts", responses((status = 204)))]
pub async fn log_out(State(state): State<AppState>, Auth(caller): Auth) -> Result<StatusCode, ApiError> {
    login::log_out(&state.market, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// The id: lowercase letters, digits and '-'.
    id: String,
    display_name: String,
}

#[utoipa::path(post, path = "/v1/tenants", tag = "accounts", request_body = CreateAccount,
    responses((status = 201, body = IssuedAccountToken, description = "the tenant's first token, shown once")))]
pub async fn create_tenant(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<CreateAccount>,
) -> Result<(StatusCode, Json<IssuedAccountToken>), ApiError> {
    caller.require_operator()?;
    let id: TenantId = body.id.parse()?;
    let token = accounts::create_tenant(&state.market.db, &id, &body.display_name, &caller.actor()).await?;
    let detail = json!({ "display_name": body.display_name, "token": token.id });
    audit::record(state.market.db.writer(), &caller.actor(), "tenant.created", id.as_str(), detail).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "accounts", params(PageQuery),
    responses((status = 200, body = Page<Tenant>)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    caller.require_operator()?;
    Ok(Json(accounts::list_tenants(&state.market.db, &query).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[schema(value_type = Vec<String>)]
    scopes: BTreeSet<TenantScope>,
    label: String,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

/// When a token given `days` to live expires; zero days is refused (a token dead on arrival).
pub(super) fn expiry(days: Option<u32>) -> Result<Option<i64>, ApiError> {
    Ok(accounts::expiry_in_days(days)?)
}

/// The tenant named in the path, if the caller is that tenant with `scope` or an operator.
async fn tenant_for(state: &AppState, caller: &Caller, tenant: &str, scope: TenantScope) -> Result<TenantId, ApiError> {
    let id: TenantId = tenant.parse()?;
    match caller {
        Caller::Operator { .. } => {
            if !accounts::tenant_exists(&state.market.db, &id).await? {
                return Err(MarketError::NotFound(format!("tenant {id}")).into());
            }
        }
        _ if caller.tenant(scope)? == &id => {}
        _ => return Err(MarketError::NotFound(format!("tenant {id}")).into()),
    }
    Ok(id)
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "accounts", request_body = CreateToken,
    params(("tenant" = String, Path)), responses((status = 201, body = IssuedAccountToken)))]
pub async fn create_tenant_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<IssuedAccountToken>), ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, TenantScope::Tokens).await?;
    // A token cannot mint a stronger one: a tenant grants only scopes it holds.
    if let Caller::Tenant { scopes, .. } = &caller
        && let Some(missing) = body.scopes.iter().find(|scope| !scopes.contains(scope))
    {
        return Err(RegistryError::MissingScope(missing.as_str()).into());
    }
    let token = accounts::issue_tenant_token(
        &state.market.db,
        &tenant,
        body.scopes,
        &body.label,
        expiry(body.expires_in_days)?,
        &Issuer::by(&caller.actor()),
    )
    .await?;
    let detail = json!({ "token": token.id, "scopes": token.scopes, "expires_at": token.expires_at });
    audit::record(state.market.db.writer(), &caller.actor(), "token.issued", tenant.as_str(), detail).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/tokens/{id}", tag = "accounts",
    params(("tenant" = String, Path), ("id" = String, Path)), responses((status = 204)))]
pub async fn revoke_tenant_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_for(&state, &caller, &tenant, TenantScope::Tokens).await?;
    let id: TokenId = id.parse()?;
    accounts::revoke_token(&state.market.db, Some(&tenant), id.as_str()).await?;
    audit::record(state.market.db.writer(), &caller.actor(), "token.revoked", tenant.as_str(), json!({ "token": id }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/publishers", tag = "accounts", request_body = CreateAccount,
    responses((status = 201, body = Object, description = "the publisher's first token, shown once")))]
pub async fn create_publisher(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<CreateAccount>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    caller.require_operator()?;
    let name = body
        .id
        .parse()
        .map_err(|e: nexus_registry::id::NameError| ApiError::bad_request(ErrorCode::InvalidId, e.to_string()))?;
    let token = state.market.registry.create_publisher(&name, &body.display_name, &caller.actor()).await?;
    let detail = json!({ "display_name": body.display_name, "token": token.id });
    audit::record(state.market.db.writer(), &caller.actor(), "publisher.created", name.as_str(), detail).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorToken {
    label: String,
}

#[utoipa::path(post, path = "/v1/operator/tokens", tag = "accounts", request_body = OperatorToken,
    responses((status = 201, body = IssuedAccountToken)))]
pub async fn create_operator_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<OperatorToken>,
) -> Result<(StatusCode, Json<IssuedAccountToken>), ApiError> {
    caller.require_operator()?;
    let token =
        accounts::issue_operator_token(&state.market.db, &body.label, None, &Issuer::by(&caller.actor())).await?;
    audit::record(state.market.db.writer(), &caller.actor(), "token.issued", "operator", json!({ "token": token.id }))
        .await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(delete, path = "/v1/operator/tokens/{id}", tag = "accounts", params(("id" = String, Path)),
    responses((status = 204)))]
pub async fn revoke_operator_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Only operators learn whether an operator token exists, a malformed id included.
    caller.require_operator()?;
    let id: TokenId = id.parse()?;
    accounts::revoke_token(&state.market.db, None, id.as_str()).await?;
    audit::record(state.market.db.writer(), &caller.actor(), "token.revoked", "operator", json!({ "token": id }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/audit", tag = "accounts", params(AuditQuery),
    responses((status = 200, body = CursorPage<AuditEntry>)))]
pub async fn read_audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<CursorPage<AuditEntry>>, ApiError> {
    caller.require_operator()?;
    Ok(Json(audit::list(&state.market.db, &query).await?))
}
