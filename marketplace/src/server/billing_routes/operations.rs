//! The operators' side of billing: revenue-share policies, billing runs, the ledger check.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::billing::ledger::{self, LedgerReport};
use crate::billing::run::{self, RunReport, RunRequest};
use crate::billing::share::{self, PolicyRequest, SharePolicy};
use crate::server::auth::Auth;
use crate::server::extract::{JsonBody, QueryParams};
use crate::server::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_policies, put_policy))
        .routes(routes!(run_billing))
        .routes(routes!(verify_ledger))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    /// The policies that apply to one partner (the partner may ask for its own).
    publisher: Option<String>,
}

#[utoipa::path(get, path = "/v1/revenue-share/policies", tag = "billing", params(PolicyQuery),
    responses((status = 200, body = Vec<SharePolicy>)))]
pub async fn list_policies(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<PolicyQuery>,
) -> Result<Json<Vec<SharePolicy>>, ApiError> {
    Ok(Json(share::list(&state.market, &caller, query.publisher.as_deref()).await?))
}

/// Sets a revenue-share policy from a date on (operators).
#[utoipa::path(post, path = "/v1/revenue-share/policies", tag = "billing", request_body = PolicyRequest,
    responses((status = 201, body = SharePolicy)))]
pub async fn put_policy(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<PolicyRequest>,
) -> Result<(StatusCode, Json<SharePolicy>), ApiError> {
    Ok((StatusCode::CREATED, Json(share::put(&state.market, &caller, body).await?)))
}

/// Bills and collects everything due up to now (operators).
#[utoipa::path(post, path = "/v1/billing/runs", tag = "billing", request_body = RunRequest,
    responses((status = 200, body = RunReport)))]
pub async fn run_billing(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(request): JsonBody<RunRequest>,
) -> Result<Json<RunReport>, ApiError> {
    Ok(Json(run::run_for(&state.market, &caller, request).await?))
}

/// Recomputes every ledger invariant (operators).
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "billing", responses((status = 200, body = LedgerReport)))]
pub async fn verify_ledger(State(state): State<AppState>, Auth(caller): Auth) -> Result<Json<LedgerReport>, ApiError> {
    caller.require_operator()?;
    Ok(Json(ledger::verify(&state.market).await?))
}
