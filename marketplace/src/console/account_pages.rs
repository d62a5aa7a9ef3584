//! A person's account in the console: sign up (with the organization they will own),
//! confirm the address from the mailed link, ask for and use a reset link, sign out
//! everywhere. Forms shown signed out carry the double-submit CSRF value of `session.rs`.
//! Answers never say whether an address is registered.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::{Signed, clear_cookie, double_submitted, signed_out_form};
use super::{Chrome, Fields, PageError, render};
use crate::people::{self, SignUp};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/sign-up", get(sign_up_form).post(sign_up))
        .route("/console/verify", get(verify))
        .route("/console/reset", get(reset_form).post(ask_for_reset))
        .route("/console/reset/{link}", get(new_password_form).post(set_new_password))
        .route("/console/sign-out-everywhere", post(sign_out_everywhere))
}

const STALE_FORM: &str = "The form expired or came from another site: fill it in again.";

#[derive(Template, Default)]
#[template(path = "sign_up.html")]
struct SignUpPage {
    chrome: Chrome,
    csrf: String,
    problem: Option<String>,
    name: String,
    email: String,
    organization: String,
    organization_name: String,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage {
    chrome: Chrome,
    problem: Option<String>,
    message: String,
    next_href: &'static str,
    next_label: &'static str,
}

fn notice(title: &str, status: StatusCode, problem: Option<String>, message: String) -> Result<Response, PageError> {
    let page = NoticePage {
        chrome: Chrome::new(title, None),
        problem,
        message,
        next_href: "/console/sign-in",
        next_label: "Sign in",
    };
    Ok((status, render(&page)?).into_response())
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    chrome: Chrome,
    csrf: String,
    problem: Option<String>,
    /// The reset link's secret when choosing the new password; empty when asking for one.
    link: String,
}

async fn sign_up_form(State(state): State<AppState>) -> Result<Response, PageError> {
    signed_out_form(&state, StatusCode::OK, |csrf| SignUpPage {
        chrome: Chrome::new("Create an account", None),
        csrf,
        ..SignUpPage::default()
    })
}

async fn sign_up(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    let field = |name: &str| fields.get(name).unwrap_or_default().to_string();
    let again = |status: StatusCode, problem: String| {
        signed_out_form(&state, status, |csrf| SignUpPage {
            chrome: Chrome::new("Create an account", None),
            csrf,
            problem: Some(problem),
            name: field("name"),
            email: field("email"),
            organization: field("organization"),
            organization_name: field("organization_name"),
        })
    };
    if !double_submitted(&headers, &fields) {
        return again(StatusCode::FORBIDDEN, STALE_FORM.into());
    }
    let request = SignUp {
        email: field("email"),
        password: field("password"),
        display_name: field("name"),
        tenant: field("organization"),
        tenant_name: field("organization_name"),
    };
    let email = request.email.trim().to_lowercase();
    match people::sign_up(&state.market, &state.public_url, request).await {
        Ok(()) => notice(
            "Check your mail",
            StatusCode::OK,
            None,
            format!("We mailed a link to {email}: open it to confirm your address, then sign in."),
        ),
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            again(refused.status, refused.message)
        }
    }
}

#[derive(Debug, Deserialize)]
struct LinkQuery {
    link: Option<String>,
}

async fn verify(State(state): State<AppState>, Query(query): Query<LinkQuery>) -> Result<Response, PageError> {
    let link = query.link.unwrap_or_default();
    match people::verify_email(&state.market, &link).await {
        Ok(()) => notice("Address confirmed", StatusCode::OK, None, "Your address is confirmed: sign in.".into()),
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            let more = "Signing in with your password mails a new confirmation link.";
            notice("Link not valid", refused.status, Some(refused.message), more.into())
        }
    }
}

fn reset_page(
    state: &AppState,
    status: StatusCode,
    problem: Option<String>,
    link: String,
) -> Result<Response, PageError> {
    let title = if link.is_empty() { "Reset your password" } else { "Choose a new password" };
    signed_out_form(state, status, |csrf| ResetPage { chrome: Chrome::new(title, None), csrf, problem, link })
}

async fn reset_form(State(state): State<AppState>) -> Result<Response, PageError> {
    reset_page(&state, StatusCode::OK, None, String::new())
}

async fn ask_for_reset(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    if !double_submitted(&headers, &fields) {
        return reset_page(&state, StatusCode::FORBIDDEN, Some(STALE_FORM.into()), String::new());
    }
    let email = fields.get("email").unwrap_or_default();
    match people::request_reset(&state.market, &state.public_url, email).await {
        Ok(()) => notice(
            "Check your mail",
            StatusCode::OK,
            None,
            "If an account uses that address, we mailed it a link to choose a new password. It works once, for an \
             hour."
                .into(),
        ),
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            reset_page(&state, refused.status, Some(refused.message), String::new())
        }
    }
}

async fn new_password_form(State(state): State<AppState>, Path(link): Path<String>) -> Result<Response, PageError> {
    reset_page(&state, StatusCode::OK, None, link)
}

async fn set_new_password(
    State(state): State<AppState>,
    Path(link): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    if !double_submitted(&headers, &fields) {
        return reset_page(&state, StatusCode::FORBIDDEN, Some(STALE_FORM.into()), link);
    }
    let password = fields.get("password").unwrap_or_default();
    match people::reset_password(&state.market, &link, password).await {
        Ok(()) => notice(
            "Password changed",
            StatusCode::OK,
            None,
            "Your new password is saved and every session you had is signed out: sign in again.".into(),
        ),
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            reset_page(&state, refused.status, Some(refused.message), link)
        }
    }
}

async fn sign_out_everywhere(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    signed.check(&Fields(fields))?;
    let Some(person) = &signed.0.person else {
        return Err(PageError::bad_request(
            nexus_registry::ErrorCode::InvalidRequest,
            "this session was opened with an API token: sign out, or revoke the token",
        ));
    };
    people::sign_out_everywhere(&state.market, person).await?;
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(response)
}
