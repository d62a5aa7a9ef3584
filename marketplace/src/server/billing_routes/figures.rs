//! GMV and ecosystem figures (operators; a partner its own).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{csv, wants_csv};
use crate::billing::gmv::{self, EcosystemPeriod, EcosystemQuery, Gmv, GmvQuery};
use crate::server::auth::Auth;
use crate::server::extract::QueryParams;
use crate::server::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show_gmv)).routes(routes!(show_ecosystem))
}

/// GMV, refunds, net revenue and take rate by period and currency, by plugin, partner or
/// category (operators; a partner its own).
#[utoipa::path(get, path = "/v1/metrics/gmv", tag = "payouts", params(GmvQuery),
    responses((status = 200, description = "the figures", content((Gmv = "application/json"), (String = "text/csv")))))]
pub async fn show_gmv(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    QueryParams(query): QueryParams<GmvQuery>,
) -> Result<Response, ApiError> {
    let csv_wanted = wants_csv(&headers, query.format.as_deref())?;
    let figures = gmv::gmv(&state.market, &caller, &query).await?;
    if csv_wanted {
        return Ok(csv("gmv", gmv::gmv_csv(&figures)));
    }
    Ok(Json(figures).into_response())
}

/// Partners, listings, installs, paying tenants, invocations, top plugins and partners and
/// GMV growth, period by period (operators).
#[utoipa::path(get, path = "/v1/metrics/ecosystem", tag = "payouts", params(EcosystemQuery),
    responses((status = 200, body = Vec<EcosystemPeriod>)))]
pub async fn show_ecosystem(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<EcosystemQuery>,
) -> Result<Json<Vec<EcosystemPeriod>>, ApiError> {
    Ok(Json(gmv::ecosystem(&state.market, &caller, &query).await?))
}
