//! `POST /v1/events`: a tenant's event, delivered to every install of the tenant that handles
//! its type.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::EventAuth;
use super::extract::JsonBody;
use super::{ApiError, AppState};
use crate::runner::{self, EventReceipt, EventRequest};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(send_event))
}

/// Delivers the event to every install of the calling tenant that handles its type.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EventRequest,
    responses((status = 200, body = EventReceipt), (status = 429, description = "rate_limited or concurrency_limited"),
        (status = 503, description = "host_busy: no plugin-host slot for this tenant; retry after Retry-After")))]
pub async fn send_event(
    State(state): State<AppState>,
    EventAuth(caller): EventAuth,
    JsonBody(body): JsonBody<EventRequest>,
) -> Result<Json<EventReceipt>, ApiError> {
    let receipt = runner::send_event_as(&state.market, &caller, body).await?;
    crate::pause::at("events.before_answer").await;
    Ok(Json(receipt))
}
