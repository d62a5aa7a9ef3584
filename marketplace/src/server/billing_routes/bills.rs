//! A tenant's bill and a partner's sales, as JSON or CSV.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{csv, wants_csv};
use crate::billing::views::{self, Bill, Sales};
use crate::server::auth::Auth;
use crate::server::extract::QueryParams;
use crate::server::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show_bill)).routes(routes!(show_sales))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BillQuery {
    /// Operators name the tenant.
    tenant: Option<String>,
    /// `csv` or `json` (default: by `Accept`).
    format: Option<String>,
}

/// A tenant's bill for a month (`YYYY-MM`, UTC), JSON or CSV.
#[utoipa::path(get, path = "/v1/bills/{period}", tag = "billing", params(("period" = String, Path), BillQuery),
    responses((status = 200, description = "the bill", content((Bill = "application/json"), (String = "text/csv")))))]
pub async fn show_bill(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(period): Path<String>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<BillQuery>,
) -> Result<Response, ApiError> {
    let csv_wanted = wants_csv(&headers, query.format.as_deref())?;
    let bill = views::bill(&state.market, &caller, query.tenant.as_deref(), &period).await?;
    if csv_wanted {
        return Ok(csv(&format!("bill-{}-{}", bill.tenant, bill.period), views::bill_csv(&bill)));
    }
    Ok(Json(bill).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SalesQuery {
    /// `YYYY-MM`; default all time.
    period: Option<String>,
    format: Option<String>,
}

/// A partner's sales per plugin, plan and currency, and its balance (the partner, operators).
#[utoipa::path(get, path = "/v1/publishers/{publisher}/sales", tag = "billing",
    params(("publisher" = String, Path), SalesQuery),
    responses((status = 200, description = "the sales", content((Sales = "application/json"), (String = "text/csv")))))]
pub async fn show_sales(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<SalesQuery>,
) -> Result<Response, ApiError> {
    let csv_wanted = wants_csv(&headers, query.format.as_deref())?;
    let sales = views::sales(&state.market, &caller, &publisher, query.period.as_deref()).await?;
    if csv_wanted {
        let name = format!("sales-{publisher}-{}", sales.period.as_deref().unwrap_or("all"));
        return Ok(csv(&name, views::sales_csv(&sales)));
    }
    Ok(Json(sales).into_response())
}
