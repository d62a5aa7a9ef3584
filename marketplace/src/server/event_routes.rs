//! Events: `POST /v1/events` delivers a tenant's event to every install of the tenant that
//! handles its type, at once (200 with what each did) or, with `Prefer: respond-async`,
//! through the queue (202 once it is durably queued); an asynchronous event's deliveries,
//! and replaying the dead ones.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_registry::ErrorCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, EventAuth};
use super::extract::{JsonBody, QueryParams};
use super::{ApiError, AppState};
use crate::accounts::TenantId;
use crate::error::{CursorPage, MarketError};
use crate::runner::queue::{self, DeliveryQuery, QueuedDelivery, QueuedEvent, ReplayRequest, Replayed};
use crate::runner::{self, EventReceipt, EventRequest};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_event))
        .routes(routes!(show_event))
        .routes(routes!(list_deliveries))
        .routes(routes!(replay_deliveries))
}

/// The one preference `POST /v1/events` takes.
const RESPOND_ASYNC: &str = "respond-async";

/// Whether the request asks for an asynchronous answer; any other preference is refused,
/// so a client that asked for something else (`wait=`, `return=`) is not silently served
/// another way.
fn wants_async(headers: &HeaderMap) -> Result<bool, MarketError> {
    let mut wants = false;
    for value in headers.get_all("prefer") {
        let text = value.to_str().unwrap_or("\u{fffd}");
        for preference in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !preference.eq_ignore_ascii_case(RESPOND_ASYNC) {
                return Err(MarketError::invalid(
                    ErrorCode::InvalidPrefer,
                    format!("Prefer: {preference:?} is not supported; the only preference is `{RESPOND_ASYNC}`"),
                ));
            }
            wants = true;
        }
    }
    Ok(wants)
}

/// Delivers the event to every install of the calling tenant that handles its type: now,
/// answering what each did, or with `Prefer: respond-async` through the queue, answering
/// 202 once the event and its deliveries are durably queued (`GET /v1/events/{id}` follows
/// them). The same event `id` again applies nothing twice: a synchronous resend answers the
/// applied deliveries from their records, an asynchronous one answers the queued event.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EventRequest,
    params(("Prefer" = Option<String>, Header, description = "`respond-async` to queue the event and answer 202")),
    responses((status = 200, body = EventReceipt), (status = 202, body = QueuedEvent),
        (status = 429, description = "rate_limited or concurrency_limited"),
        (status = 503, description = "host_busy: no plugin-host slot for this tenant; retry after Retry-After")))]
pub async fn send_event(
    State(state): State<AppState>,
    EventAuth(caller): EventAuth,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EventRequest>,
) -> Result<Response, ApiError> {
    if wants_async(&headers)? {
        let queued = queue::accept(&state.market, &caller, body).await?;
        let applied = [(header::HeaderName::from_static("preference-applied"), RESPOND_ASYNC)];
        return Ok((StatusCode::ACCEPTED, applied, Json(queued)).into_response());
    }
    let receipt = runner::send_event_as(&state.market, &caller, body).await?;
    crate::pause::at("events.before_answer").await;
    Ok(Json(receipt).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    /// Operators name the tenant; tenants see their own.
    tenant: Option<String>,
}

/// An asynchronous event and where each of its deliveries stands.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(("id" = String, Path), TenantQuery),
    responses((status = 200, body = QueuedEvent)))]
pub async fn show_event(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<TenantQuery>,
) -> Result<Json<QueuedEvent>, ApiError> {
    let tenant = query.tenant.as_deref().map(str::parse::<TenantId>).transpose()?;
    Ok(Json(queue::status(&state.market, &caller, tenant.as_ref(), &id).await?))
}

/// Deliveries of asynchronous events, newest first: `?state=dead` lists what needs a replay.
#[utoipa::path(get, path = "/v1/deliveries", tag = "events", params(DeliveryQuery),
    responses((status = 200, body = CursorPage<QueuedDelivery>)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<DeliveryQuery>,
) -> Result<Json<CursorPage<QueuedDelivery>>, ApiError> {
    Ok(Json(queue::list(&state.market, &caller, &query).await?))
}

/// Queues dead or failed deliveries again, each from attempt 0: the ones named, or every
/// one in a state. All or nothing: an id not found or not replayable refuses the request.
#[utoipa::path(post, path = "/v1/deliveries/replay", tag = "events", request_body = ReplayRequest,
    responses((status = 200, body = Replayed)))]
pub async fn replay_deliveries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<ReplayRequest>,
) -> Result<Json<Replayed>, ApiError> {
    Ok(Json(queue::replay(&state.market, &caller, body).await?))
}
