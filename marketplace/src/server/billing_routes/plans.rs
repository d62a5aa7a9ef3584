//! Plans (publishers) and moving an install between them (tenants).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::idempotency_key;
use crate::billing::plans::{self, Plan, PlanRequest};
use crate::billing::settle::{self, PlanChange, PlanChangePreview, PreviewQuery};
use crate::installs::Install;
use crate::server::auth::{Auth, MaybeAuth};
use crate::server::extract::{JsonBody, QueryParams};
use crate::server::registry_routes::plugin_id;
use crate::server::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans, put_plan))
        .routes(routes!(retire_plan))
        .routes(routes!(change_plan))
        .routes(routes!(preview_plan_change))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PlansQuery {
    /// Every revision, retired ones included (the publisher and operators).
    #[serde(default)]
    all: bool,
}

/// The plans a plugin offers (public), or all revisions (its publisher, operators).
#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/plans", tag = "billing",
    params(("publisher" = String, Path), ("name" = String, Path), PlansQuery), responses((status = 200, body = Vec<Plan>)))]
pub async fn list_plans(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    Path((publisher, name)): Path<(String, String)>,
    QueryParams(query): QueryParams<PlansQuery>,
) -> Result<Json<Vec<Plan>>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    if query.all {
        let caller = caller.ok_or(nexus_registry::RegistryError::Unauthenticated)?;
        caller.may_act_for_publisher(id.publisher.as_str())?;
        return Ok(Json(plans::all(&state.market, &id).await?));
    }
    Ok(Json(plans::offered(&state.market, &id).await?))
}

/// Adds a plan or a new revision of one (the plugin's publisher).
#[utoipa::path(post, path = "/v1/plugins/{publisher}/{name}/plans", tag = "billing",
    params(("publisher" = String, Path), ("name" = String, Path)), request_body = PlanRequest,
    responses((status = 201, body = Plan)))]
pub async fn put_plan(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<PlanRequest>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok((StatusCode::CREATED, Json(plans::put(&state.market, &caller, &id, body).await?)))
}

/// Stops offering a plan to new installs; installs on it keep it.
#[utoipa::path(delete, path = "/v1/plugins/{publisher}/{name}/plans/{key}", tag = "billing",
    params(("publisher" = String, Path), ("name" = String, Path), ("key" = String, Path)),
    responses((status = 204, description = "retired")))]
pub async fn retire_plan(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    plans::retire(&state.market, &caller, &id, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves an install to another plan, prorated; needs an `Idempotency-Key`.
#[utoipa::path(put, path = "/v1/installs/{id}/plan", tag = "billing", params(("id" = String, Path),
    ("Idempotency-Key" = String, Header, description = "required: the change moves money")),
    request_body = PlanChange, responses((status = 200, body = Install)))]
pub async fn change_plan(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PlanChange>,
) -> Result<Json<Install>, ApiError> {
    Ok(Json(settle::change_plan(&state.market, &caller, &id, body, idempotency_key(&headers)).await?))
}

/// What moving an install to `plan` would credit and charge now (the same rules as the
/// change itself); nothing is written.
#[utoipa::path(get, path = "/v1/installs/{id}/plan/preview", tag = "billing", params(("id" = String, Path), PreviewQuery),
    responses((status = 200, body = PlanChangePreview)))]
pub async fn preview_plan_change(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PreviewQuery>,
) -> Result<Json<PlanChangePreview>, ApiError> {
    Ok(Json(settle::preview_change(&state.market, &caller, &id, query).await?))
}
