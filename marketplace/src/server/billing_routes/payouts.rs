//! A partner's statements and payouts; holds, adjustments, payout runs and minimums
//! (operators).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{csv, idempotency_key, wants_csv};
use crate::billing::payouts::{
    self, Adjustment, AdjustmentRequest, HoldRequest, MinimumRequest, NextPayout, Payout, PayoutDetail,
    PayoutRunReport, PayoutRunRequest,
};
use crate::billing::statements::{self, Statement, StatementSummary};
use crate::server::auth::Auth;
use crate::server::extract::{JsonBody, QueryParams};
use crate::server::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_statements))
        .routes(routes!(show_statement))
        .routes(routes!(list_payouts))
        .routes(routes!(next_payouts))
        .routes(routes!(show_payout))
        .routes(routes!(hold_payouts, release_payouts))
        .routes(routes!(adjust_balance))
        .routes(routes!(run_payouts))
        .routes(routes!(set_minimum))
}

/// A partner's months with statements, per currency, newest first.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/statements", tag = "payouts",
    params(("publisher" = String, Path)), responses((status = 200, body = Vec<StatementSummary>)))]
pub async fn list_statements(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<Vec<StatementSummary>>, ApiError> {
    Ok(Json(statements::list(&state.market, &caller, &publisher).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    /// One currency; default every currency the partner has entries in.
    currency: Option<String>,
    /// `csv` or `json` (default: by `Accept`, or a `.csv` period).
    format: Option<String>,
}

/// A partner's statements for a month (`YYYY-MM`, or `YYYY-MM.csv`), one per currency.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/statements/{period}", tag = "payouts",
    params(("publisher" = String, Path), ("period" = String, Path), StatementQuery),
    responses((status = 200, description = "the statements", content((Vec<Statement> = "application/json"), (String = "text/csv")))))]
pub async fn show_statement(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, period)): Path<(String, String)>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<StatementQuery>,
) -> Result<Response, ApiError> {
    let (period, suffix_csv) = match period.strip_suffix(".csv") {
        Some(period) => (period.to_string(), true),
        None => (period, false),
    };
    let csv_wanted = suffix_csv || wants_csv(&headers, query.format.as_deref())?;
    let found = statements::statements(&state.market, &caller, &publisher, &period, query.currency.as_deref()).await?;
    if csv_wanted {
        return Ok(csv(&format!("statement-{publisher}-{period}"), statements::csv(&found)));
    }
    Ok(Json(found).into_response())
}

#[utoipa::path(get, path = "/v1/publishers/{publisher}/payouts", tag = "payouts",
    params(("publisher" = String, Path)), responses((status = 200, body = Vec<Payout>)))]
pub async fn list_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<Vec<Payout>>, ApiError> {
    Ok(Json(payouts::list(&state.market, &caller, &publisher).await?))
}

/// The partner's next payout per currency: balance, minimum and what is missing, when, and
/// why a balance waits.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/payouts/next", tag = "payouts",
    params(("publisher" = String, Path)), responses((status = 200, body = Vec<NextPayout>)))]
pub async fn next_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<Json<Vec<NextPayout>>, ApiError> {
    Ok(Json(payouts::outlook(&state.market, &caller, &publisher).await?))
}

/// A payout with the statement lines it settles and how they add up to it.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/payouts/{id}", tag = "payouts",
    params(("publisher" = String, Path), ("id" = String, Path)), responses((status = 200, body = PayoutDetail)))]
pub async fn show_payout(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, id)): Path<(String, String)>,
) -> Result<Json<PayoutDetail>, ApiError> {
    Ok(Json(payouts::detail(&state.market, &caller, &publisher, &id).await?))
}

/// Holds a partner's payouts (operators).
#[utoipa::path(post, path = "/v1/publishers/{publisher}/payout-hold", tag = "payouts",
    params(("publisher" = String, Path)), request_body = HoldRequest, responses((status = 204, description = "held")))]
pub async fn hold_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    JsonBody(body): JsonBody<HoldRequest>,
) -> Result<StatusCode, ApiError> {
    payouts::hold(&state.market, &caller, &publisher, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Releases a partner's payout hold (operators).
#[utoipa::path(delete, path = "/v1/publishers/{publisher}/payout-hold", tag = "payouts",
    params(("publisher" = String, Path)), responses((status = 204, description = "released")))]
pub async fn release_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
) -> Result<StatusCode, ApiError> {
    payouts::release(&state.market, &caller, &publisher).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adjusts a partner's balance (operators); needs an `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/publishers/{publisher}/adjustments", tag = "payouts", params(("publisher" = String, Path),
    ("Idempotency-Key" = String, Header, description = "required: an adjustment moves money")),
    request_body = AdjustmentRequest, responses((status = 201, body = Adjustment)))]
pub async fn adjust_balance(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AdjustmentRequest>,
) -> Result<(StatusCode, Json<Adjustment>), ApiError> {
    let adjustment = payouts::adjust(&state.market, &caller, &publisher, body, idempotency_key(&headers)).await?;
    Ok((StatusCode::CREATED, Json(adjustment)))
}

/// Pays every partner due in this payout period (operators); a second run pays nothing.
#[utoipa::path(post, path = "/v1/payouts/runs", tag = "payouts", request_body = PayoutRunRequest,
    responses((status = 200, body = PayoutRunReport)))]
pub async fn run_payouts(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(_body): JsonBody<PayoutRunRequest>,
) -> Result<Json<PayoutRunReport>, ApiError> {
    Ok(Json(payouts::run_for(&state.market, &caller).await?))
}

/// Sets a currency's minimum payout (operators).
#[utoipa::path(put, path = "/v1/payouts/minimums/{currency}", tag = "payouts", params(("currency" = String, Path)),
    request_body = MinimumRequest, responses((status = 204, description = "set")))]
pub async fn set_minimum(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(currency): Path<String>,
    JsonBody(body): JsonBody<MinimumRequest>,
) -> Result<StatusCode, ApiError> {
    payouts::set_minimum(&state.market, &caller, &currency, body).await?;
    Ok(StatusCode::NO_CONTENT)
}
