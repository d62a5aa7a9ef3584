//! Charges with their attempts, refunds and ledger transactions; the invocations a usage
//! line counted; refunds (operators).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::idempotency_key;
use crate::billing::charges::{self, Charge, ChargeQuery, UsageSource};
use crate::billing::collect::{self, Attempt};
use crate::billing::ledger::{self, LedgerTransaction};
use crate::billing::refunds::{self, Refund, RefundRequest};
use crate::error::{Page, PageQuery};
use crate::server::auth::Auth;
use crate::server::extract::{JsonBody, QueryParams};
use crate::server::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_charges))
        .routes(routes!(show_charge))
        .routes(routes!(list_charge_invocations))
        .routes(routes!(refund_charge))
}

#[utoipa::path(get, path = "/v1/charges", tag = "billing", params(ChargeQuery),
    responses((status = 200, body = Page<Charge>)))]
pub async fn list_charges(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<ChargeQuery>,
) -> Result<Json<Page<Charge>>, ApiError> {
    Ok(Json(charges::list(&state.market, &caller, &query).await?))
}

/// A charge with its collection attempts, refunds and ledger transactions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChargeDetails {
    pub charge: Charge,
    pub attempts: Vec<Attempt>,
    pub refunds: Vec<Refund>,
    pub ledger: Vec<LedgerTransaction>,
}

#[utoipa::path(get, path = "/v1/charges/{id}", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = ChargeDetails)))]
pub async fn show_charge(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<ChargeDetails>, ApiError> {
    let id = id.parse()?;
    let charge = charges::get(&state.market, &caller, &id).await?;
    Ok(Json(ChargeDetails {
        charge,
        attempts: collect::attempts(&state.market, &id).await?,
        refunds: refunds::of_charge(&state.market, &id).await?,
        ledger: ledger::of_charge(&state.market, &id).await?,
    }))
}

/// The applied invocations a usage line counted.
#[utoipa::path(get, path = "/v1/charges/{id}/invocations", tag = "billing", params(("id" = String, Path), PageQuery),
    responses((status = 200, body = Page<UsageSource>)))]
pub async fn list_charge_invocations(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<UsageSource>>, ApiError> {
    Ok(Json(charges::usage_sources(&state.market, &caller, &id.parse()?, &query).await?))
}

/// Refunds part of a collected charge (operators); needs an `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/charges/{id}/refunds", tag = "billing", params(("id" = String, Path),
    ("Idempotency-Key" = String, Header, description = "required: a refund moves money")),
    request_body = RefundRequest, responses((status = 201, body = Refund)))]
pub async fn refund_charge(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RefundRequest>,
) -> Result<(StatusCode, Json<Refund>), ApiError> {
    let refund = refunds::refund(&state.market, &caller, &id.parse()?, body, idempotency_key(&headers)).await?;
    Ok((StatusCode::CREATED, Json(refund)))
}
