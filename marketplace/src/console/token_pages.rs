//! The API tokens of the organization a session acts as: the list (who made each, whom it
//! was issued to, scopes, state), a new token from the scopes the member holds (its secret
//! shown once, on the answer to the form), and revoking one. Owners and admins.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::session::Signed;
use super::{Chrome, Fields, PageError, render};
use crate::org_tokens::{self, Made, OrgToken};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/organization/tokens", get(page).post(create))
        .route("/console/organization/tokens/{id}/revoke", post(revoke))
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Chrome,
    problem: Option<String>,
    made: Option<Made>,
    tokens: Vec<OrgToken>,
    scopes: Vec<&'static str>,
}

async fn show(
    state: &AppState,
    signed: &Signed,
    status: StatusCode,
    problem: Option<String>,
    made: Option<Made>,
) -> Result<Response, PageError> {
    let page = TokensPage {
        chrome: Chrome::new("API tokens", Some(&signed.0)),
        problem,
        made,
        tokens: org_tokens::list(&state.market, &signed.0.caller).await?,
        scopes: org_tokens::grantable(&signed.0.caller),
    };
    Ok((status, render(&page)?).into_response())
}

async fn page(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    show(&state, &signed, StatusCode::OK, None, None).await
}

async fn create(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let label = fields.get("label").unwrap_or_default().trim().to_string();
    let scopes: Vec<String> = fields.0.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
    let days = match fields.text("expires_in_days") {
        None => None,
        Some(days) => Some(days.parse::<u32>().map_err(|_| {
            PageError::bad_request(nexus_registry::ErrorCode::InvalidRequest, "days to live is a whole number")
        })?),
    };
    match org_tokens::create(&state.market, &signed.0.caller, &label, &scopes, days).await {
        Ok(made) => show(&state, &signed, StatusCode::CREATED, None, Some(made)).await,
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            show(&state, &signed, refused.status, Some(refused.message), None).await
        }
    }
}

async fn revoke(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    // Only those who manage the tokens learn whether one exists, a malformed id included.
    org_tokens::require_manager(&signed.0.caller)?;
    org_tokens::revoke(&state.market, &signed.0.caller, &id.parse()?).await?;
    Ok(Redirect::to("/console/organization/tokens").into_response())
}
