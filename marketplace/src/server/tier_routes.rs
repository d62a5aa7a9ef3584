//! Partner tiers: their definitions (public to read, operators' to define), the daily
//! recomputation run now, and a partner's tier (the partner's to read, operators' to set by
//! hand or give back to the figures).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::extract::JsonBody;
use super::{ApiError, AppState};
use crate::MarketError;
use crate::partner_tiers::{self, Assignment, Tier, TierChange, TierRequest};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tiers))
        .routes(routes!(put_tier))
        .routes(routes!(recompute_tiers))
        .routes(routes!(show_partner_tier, assign_partner_tier, unassign_partner_tier))
}

/// The partner program's tiers, best first.
#[utoipa::path(get, path = "/v1/partner-tiers", tag = "partners", security(()), responses((status = 200, body = Vec<Tier>)))]
pub async fn list_tiers(State(state): State<AppState>) -> Result<Json<Vec<Tier>>, ApiError> {
    Ok(Json(partner_tiers::list(&state.market).await?))
}

/// Defines or redefines a tier (operators); partners move at the next run.
#[utoipa::path(put, path = "/v1/partner-tiers/{key}", tag = "partners", request_body = TierRequest,
    params(("key" = String, Path)), responses((status = 200, body = Tier)))]
pub async fn put_tier(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(key): Path<String>,
    JsonBody(body): JsonBody<TierRequest>,
) -> Result<Json<Tier>, ApiError> {
    Ok(Json(partner_tiers::put(&state.market, &caller, &key, body).await?))
}

/// Recomputes every partner's tier now (operators): the partners that moved.
#[utoipa::path(post, path = "/v1/partner-tiers/recompute", tag = "partners",
    responses((status = 200, body = Vec<TierChange>)))]
pub async fn recompute_tiers(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<Vec<TierChange>>, ApiError> {
    Ok(Json(partner_tiers::recompute_now(&state.market, &caller).await?))
}

/// A partner's tier (the partner itself and operators).
#[utoipa::path(get, path = "/v1/publishers/{publisher}/tier", tag = "partners",
    params(("publisher" = String, Path)), responses((status = 200, body = Assignment)))]
pub async fn show_partner_tier(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<Assignment>, ApiError> {
    let assigned = partner_tiers::of(&state.market, &caller, &publisher).await?;
    Ok(Json(assigned.ok_or_else(|| MarketError::NotFound(format!("a partner tier of {publisher}")))?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTier {
    /// The tier's key.
    tier: String,
}

/// Sets a partner's tier by hand (operators); the daily run leaves it until lifted.
#[utoipa::path(put, path = "/v1/publishers/{publisher}/tier", tag = "partners", request_body = AssignTier,
    params(("publisher" = String, Path)), responses((status = 200, body = Assignment)))]
pub async fn assign_partner_tier(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    JsonBody(body): JsonBody<AssignTier>,
) -> Result<Json<Assignment>, ApiError> {
    Ok(Json(partner_tiers::assign(&state.market, &caller, &publisher, &body.tier).await?))
}

/// Gives a partner's tier back to its figures (operators), recomputed now.
#[utoipa::path(delete, path = "/v1/publishers/{publisher}/tier", tag = "partners",
    params(("publisher" = String, Path)), responses((status = 204)))]
pub async fn unassign_partner_tier(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<StatusCode, ApiError> {
    partner_tiers::unassign(&state.market, &caller, &publisher).await?;
    Ok(StatusCode::NO_CONTENT)
}
