//! A tenant's webhook endpoints: create (the signing secret is in this answer only), list,
//! show, change, delete, rotate the secret, each endpoint's delivery log and its recovery.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::extract::{JsonBody, QueryParams};
use super::{ApiError, AppState};
use crate::accounts::TenantId;
use crate::error::CursorPage;
use crate::webhooks::{
    self, Endpoint, EndpointUpdate, LogQuery, NewEndpoint, Recovered, Recovery, Rotation, WebhookDelivery, WithSecret,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(show_webhook, update_webhook, delete_webhook))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(list_webhook_deliveries))
        .routes(routes!(recover_webhook))
}

/// A new endpoint for the calling tenant. The answer holds the signing secret, shown this
/// once (a replay of the request under its `Idempotency-Key` leaves it out).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = NewEndpoint,
    responses((status = 201, body = WithSecret)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<NewEndpoint>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<WithSecret>), ApiError> {
    let created = webhooks::create(&state.market, &caller, body).await?;
    let location = format!("/v1/webhooks/{}", created.endpoint.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(created)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WebhookListQuery {
    /// Operators name the tenant; tenants see their own.
    tenant: Option<String>,
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(WebhookListQuery),
    responses((status = 200, body = Vec<Endpoint>)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<WebhookListQuery>,
) -> Result<Json<Vec<Endpoint>>, ApiError> {
    let tenant = query.tenant.as_deref().map(str::parse::<TenantId>).transpose()?;
    Ok(Json(webhooks::list(&state.market, &caller, tenant.as_ref()).await?))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = Endpoint)))]
pub async fn show_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(webhooks::get(&state.market, &caller, &id.parse()?).await?))
}

/// Changes the URL, the kinds, the description, or enables or disables the endpoint.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    request_body = EndpointUpdate, responses((status = 200, body = Endpoint)))]
pub async fn update_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EndpointUpdate>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(webhooks::update(&state.market, &caller, &id.parse()?, body).await?))
}

/// Deletes the endpoint; messages still waiting for it are not sent.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204, description = "deleted")))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    webhooks::delete(&state.market, &caller, &id.parse()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, in this answer only; the current one keeps signing beside it for
/// `overlap_hours` (default 24), so receivers can switch without missing a message.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = String, Path)),
    request_body = Rotation, responses((status = 200, body = WithSecret)))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Rotation>,
) -> Result<Json<WithSecret>, ApiError> {
    Ok(Json(webhooks::rotate(&state.market, &caller, &id.parse()?, body).await?))
}

/// What was posted to the endpoint, newest first: each message's state, attempts, and the
/// latest attempt's status, error and latency.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path), LogQuery),
    responses((status = 200, body = CursorPage<WebhookDelivery>)))]
pub async fn list_webhook_deliveries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<LogQuery>,
) -> Result<Json<CursorPage<WebhookDelivery>>, ApiError> {
    Ok(Json(webhooks::log(&state.market, &caller, &id.parse()?, &query).await?))
}

/// Sends the endpoint's messages that wait for a retry or ended dead again now (those
/// created since `since`, if given), for a receiver that is back. Each keeps its
/// `webhook-id`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/recover", tag = "webhooks", params(("id" = String, Path)),
    request_body = Recovery, responses((status = 200, body = Recovered)))]
pub async fn recover_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Recovery>,
) -> Result<Json<Recovered>, ApiError> {
    Ok(Json(webhooks::recover(&state.market, &caller, &id.parse()?, body).await?))
}
