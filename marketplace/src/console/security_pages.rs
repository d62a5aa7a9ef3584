//! A person's sign-in security: setting up two-step sign-in (the key and its `otpauth://`
//! link, confirmed by a code; the recovery codes shown once), and turning it off with a
//! current code.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nexus_registry::ErrorCode;

use super::session::Signed;
use super::{Chrome, Fields, PageError, render};
use crate::people::second_factor::{self, Enrolment};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/security", get(page)).route("/console/security/{step}", post(step))
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    chrome: Chrome,
    problem: Option<String>,
    enabled: bool,
    enrolment: Option<Enrolment>,
    recovery_codes: Vec<String>,
    /// The session may do nothing else until the second factor is set up.
    must_set_up: bool,
    /// A second factor is required of this person, so it cannot be turned off.
    kept: bool,
    operator: bool,
    /// The marketplace requires a second factor of everyone.
    everyone: bool,
}

async fn show(
    state: &AppState,
    signed: &Signed,
    status: StatusCode,
    problem: Option<String>,
    enrolment: Option<Enrolment>,
    recovery_codes: Vec<String>,
) -> Result<Response, PageError> {
    let enabled = second_factor::enabled(&state.market, signed.person("two-step sign-in")?).await?;
    let page = SecurityPage {
        chrome: Chrome::new("Sign-in security", Some(&signed.0)),
        problem,
        enabled,
        enrolment,
        recovery_codes,
        must_set_up: signed.0.needs_second_factor && !enabled,
        kept: crate::people::second_factor_required(&state.market, &signed.0.memberships).await?,
        operator: matches!(signed.0.caller, crate::accounts::Caller::Operator { .. }),
        everyone: crate::settings::require_second_factor(&state.market).await?,
    };
    Ok((status, render(&page)?).into_response())
}

async fn page(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    show(&state, &signed, StatusCode::OK, None, None, Vec::new()).await
}

async fn step(
    State(state): State<AppState>,
    signed: Signed,
    axum::extract::Path(step): axum::extract::Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let me = signed.person("two-step sign-in")?;
    let code = fields.get("code").unwrap_or_default();
    let outcome = match step.as_str() {
        "start" => second_factor::start(&state.market, me).await.map(|enrolment| (Some(enrolment), Vec::new())),
        "confirm" => second_factor::confirm(&state.market, me, code).await.map(|codes| (None, codes)),
        "disable" => second_factor::disable(&state.market, me, code).await.map(|()| (None, Vec::new())),
        "everyone" => {
            let on = fields.get("value") == Some("on");
            crate::settings::set_require_second_factor(&state.market, &signed.0.caller, on)
                .await
                .map(|()| (None, Vec::new()))
        }
        other => return Err(PageError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no step {other}"))),
    };
    match outcome {
        Ok((enrolment, codes)) => show(&state, &signed, StatusCode::OK, None, enrolment, codes).await,
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            show(&state, &signed, refused.status, Some(refused.message), None, Vec::new()).await
        }
    }
}
