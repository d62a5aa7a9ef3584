//! Co-marketing: featured placements (public to read, operators' to make and end) and the
//! featuring rules (slots, the lowest partner tier featured).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::extract::JsonBody;
use super::{ApiError, AppState};
use crate::co_marketing::{self, Placement, PlacementRequest, Rules};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_placements, create_placement))
        .routes(routes!(end_placement))
        .routes(routes!(show_rules, set_rules))
}

/// The featured placements in force and to come, soonest first.
#[utoipa::path(get, path = "/v1/featured-placements", tag = "catalog", security(()),
    responses((status = 200, body = Vec<Placement>)))]
pub async fn list_placements(State(state): State<AppState>) -> Result<Json<Vec<Placement>>, ApiError> {
    Ok(Json(co_marketing::list(&state.market).await?))
}

/// Features a listing for a time (operators), within the slots and the tier rule.
#[utoipa::path(post, path = "/v1/featured-placements", tag = "catalog", request_body = PlacementRequest,
    responses((status = 201, body = Placement)))]
pub async fn create_placement(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<PlacementRequest>,
) -> Result<(StatusCode, Json<Placement>), ApiError> {
    Ok((StatusCode::CREATED, Json(co_marketing::create(&state.market, &caller, body).await?)))
}

/// Ends a placement now, or withdraws one to come (operators).
#[utoipa::path(delete, path = "/v1/featured-placements/{id}", tag = "catalog", params(("id" = String, Path)),
    responses((status = 204)))]
pub async fn end_placement(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    co_marketing::end(&state.market, &caller, &id.parse()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The featuring rules: how many placements run at once, and the lowest partner tier featured.
#[utoipa::path(get, path = "/v1/featured-placements/rules", tag = "catalog", security(()),
    responses((status = 200, body = Rules)))]
pub async fn show_rules(State(state): State<AppState>) -> Result<Json<Rules>, ApiError> {
    Ok(Json(co_marketing::rules(&state.market).await?))
}

/// Sets the featuring rules (operators); placements already made stand.
#[utoipa::path(put, path = "/v1/featured-placements/rules", tag = "catalog", request_body = Rules,
    responses((status = 200, body = Rules)))]
pub async fn set_rules(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<Rules>,
) -> Result<Json<Rules>, ApiError> {
    Ok(Json(co_marketing::set_rules(&state.market, &caller, body).await?))
}
