//! An install's usage so far and settling what it owes (tenants); a plugin's usage across
//! its installs (publishers).

use axum::Json;
use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::billing::estimate::PluginUsage;
use crate::billing::estimate::UsageSoFar;
use crate::billing::settle::{self, SettleReport};
use crate::server::auth::Auth;
use crate::server::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show_usage)).routes(routes!(show_plugin_usage)).routes(routes!(settle_install))
}

/// An install's usage so far this period, rated as the billing run will rate it, and when
/// it is next charged.
#[utoipa::path(get, path = "/v1/installs/{id}/usage", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = UsageSoFar)))]
pub async fn show_usage(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<UsageSoFar>, ApiError> {
    Ok(Json(crate::billing::estimate::usage_so_far(&state.market, &caller, &id.parse()?).await?))
}

/// Every live install of a plugin with its usage so far this period and what it would be
/// charged if the period ended now, with totals per currency: the publisher's view of
/// `GET /v1/installs/{id}/usage`.
#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/usage", tag = "billing",
    params(("publisher" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = PluginUsage)))]
pub async fn show_plugin_usage(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Json<PluginUsage>, ApiError> {
    Ok(Json(crate::billing::estimate::plugin_usage(&state.market, &caller, &publisher, &name).await?))
}

/// Pays an install's failed charges now; an install paused for payment resumes once none is
/// outstanding.
#[utoipa::path(post, path = "/v1/installs/{id}/settle", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = SettleReport)))]
pub async fn settle_install(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<SettleReport>, ApiError> {
    Ok(Json(settle::settle(&state.market, &caller, &id).await?))
}
