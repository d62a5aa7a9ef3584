//! Deliveries of queued events, for tenants and operators: the ones in a state (dead by
//! default, the ones that need someone), each with its latest error, and replaying the ones
//! ticked or every dead one. The API's rules decide who sees and replays what
//! (`runner/queue.rs`).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::Signed;
use super::{Chrome, Fields, PageError, render};
use crate::error::CursorPage;
use crate::runner::queue::{self, DeliveryQuery, DeliveryState, QueuedDelivery, ReplayRequest};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/deliveries", get(list)).route("/console/deliveries/replay", post(replay))
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    chrome: Chrome,
    deliveries: CursorPage<QueuedDelivery>,
    state: DeliveryState,
    states: [DeliveryState; 7],
    /// The tenant an operator named, carried into links and the form.
    tenant: Option<String>,
    /// How many deliveries the last replay queued again.
    replayed: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct ListForm {
    state: Option<DeliveryState>,
    tenant: Option<String>,
    after: Option<String>,
    replayed: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<ListForm>,
) -> Result<Response, PageError> {
    let shown = form.state.unwrap_or(DeliveryState::Dead);
    let tenant = form.tenant.filter(|t| !t.trim().is_empty());
    let query = DeliveryQuery { tenant: tenant.clone(), state: Some(shown), after: form.after, per_page: Some(50) };
    let deliveries = queue::list(&state.market, &signed.0.caller, &query).await?;
    render(&DeliveriesPage {
        chrome: Chrome::new(format!("Deliveries: {}", shown.as_str()), Some(&signed.0)),
        deliveries,
        state: shown,
        states: DeliveryState::ALL,
        tenant,
        replayed: form.replayed,
    })
}

/// Replays the ticked deliveries (`delivery`, repeated), or every dead one (`all=dead`).
async fn replay(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let tenant = fields.get("tenant").filter(|t| !t.trim().is_empty()).map(String::from);
    let request = ReplayRequest {
        deliveries: fields.all("delivery").map(String::from).collect(),
        state: (fields.get("all") == Some("dead")).then_some(DeliveryState::Dead),
        tenant: tenant.clone(),
    };
    let replayed = queue::replay(&state.market, &signed.0.caller, request).await?;
    let mut back = format!("/console/deliveries?state=queued&replayed={}", replayed.deliveries.len());
    if let Some(tenant) = tenant {
        back.push_str(&format!("&tenant={tenant}"));
    }
    Ok(Redirect::to(&back).into_response())
}
