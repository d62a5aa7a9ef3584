//! A publisher's verified domain: claim it (the token to serve), read where it stands, and
//! check it now (`publisher_domains.rs`). Owners and admins of the publisher (tokens with
//! the `keys` scope) and operators.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::extract::JsonBody;
use super::{ApiError, AppState};
use crate::publisher_domains::{self, DomainState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show_domain, claim_domain)).routes(routes!(check_domain))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimDomain {
    /// Such as `example.com`.
    domain: String,
}

/// Claims a domain: serve the answer's `token` at its `url`, then check. Replaces an
/// earlier domain and its badge.
#[utoipa::path(put, path = "/v1/publishers/{publisher}/domain", tag = "registry", request_body = ClaimDomain,
    params(("publisher" = String, Path)), responses((status = 200, body = DomainState)))]
pub async fn claim_domain(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    JsonBody(body): JsonBody<ClaimDomain>,
) -> Result<Json<DomainState>, ApiError> {
    Ok(Json(publisher_domains::claim(&state.market, &caller, &publisher, &body.domain).await?))
}

/// The publisher's domain and where its verification stands.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/domain", tag = "registry",
    params(("publisher" = String, Path)), responses((status = 200, body = DomainState)))]
pub async fn show_domain(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<DomainState>, ApiError> {
    Ok(Json(publisher_domains::state(&state.market, &caller, &publisher).await?))
}

/// Fetches the token from the domain now: `verified` says what was found, `last_error` why not.
#[utoipa::path(post, path = "/v1/publishers/{publisher}/domain/check", tag = "registry",
    params(("publisher" = String, Path)), responses((status = 200, body = DomainState)))]
pub async fn check_domain(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<DomainState>, ApiError> {
    Ok(Json(publisher_domains::check(&state.market, &caller, &publisher).await?))
}
