//! Signing in and out, and who is looking at a page.
//!
//! The session cookie is `HttpOnly`, `SameSite=Lax`, scoped to `/console`, and `Secure`
//! when the server's public URL is https. Every form carries the session's CSRF value; the
//! sign-in form, which has no session yet, carries the value of a `nexus_csrf` cookie set
//! when the form was shown (double submit), so another site cannot sign a browser in.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use nexus_registry::{ErrorCode, RegistryError};
use serde::Deserialize;

use super::{Chrome, Fields, PageError, render};
use crate::ids::PersonId;
use crate::server::AppState;
use crate::sessions::{self, Session};

pub const SESSION_COOKIE: &str = "nexus_session";
pub const CSRF_COOKIE: &str = "nexus_csrf";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/sign-in", get(sign_in_form).post(sign_in))
        .route("/console/sign-in/code", post(second_step))
        .route("/console/sign-out", post(sign_out))
}

/// Names a sign-in whose password was right while it waits for the second factor.
const CHALLENGE_COOKIE: &str = "nexus_second_factor";

#[derive(Template)]
#[template(path = "second_factor.html")]
struct CodePage {
    chrome: Chrome,
    csrf: String,
    problem: Option<String>,
    /// The page to return to once signed in.
    next: String,
}

fn code_page(
    state: &AppState,
    status: axum::http::StatusCode,
    problem: Option<String>,
    next: &str,
) -> Result<Response, PageError> {
    let next = next.to_string();
    signed_out_form(state, status, |csrf| CodePage {
        chrome: Chrome::new("Two-step sign-in", None),
        csrf,
        problem,
        next,
    })
}

/// The `next` field of a sign-in form, if it names a page a sign-in may return to.
fn return_to(fields: &Fields) -> &str {
    fields.get("next").and_then(super::safe_return).unwrap_or_default()
}

/// The second step of a sign-in: the code answers the challenge the password step set.
async fn second_step(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    if !double_submitted(&headers, &fields) {
        return sign_in_page(
            &state,
            Some("The form expired or came from another site: sign in again.".into()),
            axum::http::StatusCode::FORBIDDEN,
            return_to(&fields),
        );
    }
    let challenge = cookie(&headers, CHALLENGE_COOKIE).unwrap_or_default();
    let code = fields.get("code").unwrap_or_default();
    match crate::people::second_factor::answer(&state.market, challenge, code).await {
        Ok(person) => {
            let opened = sessions::open_for_person(&state.market, &person).await?;
            let mut response = signed_in(&state, &opened, return_to(&fields));
            response.headers_mut().append(header::SET_COOKIE, set_cookie(&state, CHALLENGE_COOKIE, "", 0));
            Ok(response)
        }
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            code_page(&state, refused.status, Some(refused.message), return_to(&fields))
        }
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("nexus_session=; Path=/console; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The signed-in session of a request that needs one: without it, the page is the sign-in
/// form (the 401 of the API).
pub struct Signed(pub Session);

impl FromRequestParts<AppState> for Signed {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cookie = cookie(&parts.headers, SESSION_COOKIE).ok_or(RegistryError::Unauthenticated)?;
        let session = sessions::resolve(&state.market, cookie).await?;
        // Until a required second factor is set up, the console is its Security page.
        let setting_up =
            ["/console/security", "/console/sign-out"].iter().any(|page| parts.uri.path().starts_with(page));
        if session.needs_second_factor && !setting_up {
            return Err(PageError::new(
                axum::http::StatusCode::FORBIDDEN,
                ErrorCode::SecondFactorRequired,
                "set up a second factor first",
            ));
        }
        Ok(Self(session))
    }
}

/// Public pages show more to a signed-in caller; a stale cookie counts as signed out.
impl OptionalFromRequestParts<AppState> for Signed {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        let Some(cookie) = cookie(&parts.headers, SESSION_COOKIE) else { return Ok(None) };
        match sessions::resolve(&state.market, cookie).await {
            Ok(session) => Ok(Some(Self(session))),
            Err(crate::MarketError::Registry(_)) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }
}

impl Signed {
    /// The person behind the session, or `403` naming what `page` is (a session opened with
    /// an API token has nobody behind it).
    pub fn person(&self, page: &str) -> Result<&PersonId, PageError> {
        self.0.person.as_ref().ok_or_else(|| {
            PageError::new(
                axum::http::StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!("{page} is for people: sign in with your email address, not an API token"),
            )
        })
    }

    /// Refuses a form whose CSRF field is not this session's.
    pub fn check(&self, fields: &Fields) -> Result<(), PageError> {
        if fields.get("csrf").is_some_and(|sent| constant_time_eq(sent, &self.0.csrf)) {
            Ok(())
        } else {
            Err(PageError::new(
                axum::http::StatusCode::FORBIDDEN,
                ErrorCode::CsrfMismatch,
                "this form is stale or came from another site; reload the page and submit it again",
            ))
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    csrf: String,
    problem: Option<String>,
    notice: Option<String>,
    email: String,
    /// The page that asked for the sign-in, returned to afterwards.
    next: String,
}

#[derive(Debug, Deserialize)]
struct SignInQuery {
    next: Option<String>,
}

async fn sign_in_form(State(state): State<AppState>, Query(query): Query<SignInQuery>) -> Result<Response, PageError> {
    let next = query.next.as_deref().and_then(super::safe_return).unwrap_or_default();
    sign_in_page(&state, None, axum::http::StatusCode::OK, next)
}

fn sign_in_page(
    state: &AppState,
    problem: Option<String>,
    status: axum::http::StatusCode,
    next: &str,
) -> Result<Response, PageError> {
    let next = next.to_string();
    signed_out_form(state, status, |csrf| SignInPage {
        chrome: Chrome::new("Sign in", None),
        csrf,
        problem,
        notice: None,
        email: String::new(),
        next,
    })
}

/// A form shown to someone not signed in, with a fresh CSRF value in the page and in the
/// `nexus_csrf` cookie (checked by [`double_submitted`] when the form comes back).
pub fn signed_out_form<T: Template>(
    state: &AppState,
    status: axum::http::StatusCode,
    page: impl FnOnce(String) -> T,
) -> Result<Response, PageError> {
    let csrf = nexus_registry::publishers::random_hex(16)?;
    let mut response = (status, render(&page(csrf.clone()))?).into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(state, CSRF_COOKIE, &csrf, 3600));
    Ok(response)
}

/// Whether a signed-out form carries the CSRF value of its cookie.
pub fn double_submitted(headers: &HeaderMap, fields: &Fields) -> bool {
    let expected = cookie(headers, CSRF_COOKIE);
    fields.get("csrf").zip(expected).is_some_and(|(sent, expected)| constant_time_eq(sent, expected))
}

async fn sign_in(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    if !double_submitted(&headers, &fields) {
        return sign_in_page(
            &state,
            Some("The form expired or came from another site: sign in again.".into()),
            axum::http::StatusCode::FORBIDDEN,
            return_to(&fields),
        );
    }
    if let Some(email) = fields.text("email") {
        return with_password(&state, &extensions, &fields, email).await;
    }
    with_token(&state, &fields).await
}

/// A person's sign-in with email and password: signed in, or on to the second step when
/// they have a second factor; a refusal comes back on the form with the address typed.
async fn with_password(
    state: &AppState,
    extensions: &axum::http::Extensions,
    fields: &Fields,
    email: &str,
) -> Result<Response, PageError> {
    let password = fields.get("password").unwrap_or_default();
    let client = crate::server::extract::client_address(extensions);
    match crate::people::sign_in(&state.market, &state.public_url, email, password, &client).await {
        Ok(signed) => {
            if crate::people::second_factor::enabled(&state.market, &signed.person).await? {
                let challenge = crate::people::second_factor::challenge(&state.market, &signed.person).await?;
                let lifetime = crate::people::second_factor::CHALLENGE_MS / 1000;
                let mut response = code_page(state, axum::http::StatusCode::OK, None, return_to(fields))?;
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, set_cookie(state, CHALLENGE_COOKIE, &challenge, lifetime));
                return Ok(response);
            }
            let opened = sessions::open_for_person(&state.market, &signed.person).await?;
            Ok(signed_in(state, &opened, return_to(fields)))
        }
        Err(refused) => {
            let refused = PageError::refusal(refused)?;
            let (email, next) = (email.to_string(), return_to(fields).to_string());
            signed_out_form(state, refused.status, |csrf| SignInPage {
                chrome: Chrome::new("Sign in", None),
                csrf,
                problem: Some(refused.message),
                notice: None,
                email,
                next,
            })
        }
    }
}

/// A sign-in with an API token pasted into the form.
async fn with_token(state: &AppState, fields: &Fields) -> Result<Response, PageError> {
    let Some(token) = fields.text("token") else {
        return sign_in_page(
            state,
            Some("Enter your email address and password, or paste an API token.".into()),
            axum::http::StatusCode::BAD_REQUEST,
            return_to(fields),
        );
    };
    let opened = match sessions::open(&state.market, token).await {
        Ok(opened) => opened,
        Err(crate::MarketError::Registry(error)) => {
            let message = match error {
                RegistryError::TokenRevoked => "That token was revoked.",
                RegistryError::TokenExpired => "That token has expired.",
                _ => "That token is not known here.",
            };
            return sign_in_page(state, Some(message.into()), axum::http::StatusCode::UNAUTHORIZED, return_to(fields));
        }
        Err(other) => return Err(other.into()),
    };
    Ok(signed_in(state, &opened, return_to(fields)))
}

/// To the page that asked for the sign-in (`next`), or the caller's home page, with the
/// session's cookie.
fn signed_in(state: &AppState, opened: &sessions::Opened, next: &str) -> Response {
    let home = match &opened.session.caller {
        _ if !next.is_empty() => next.to_string(),
        crate::accounts::Caller::Operator { .. } => "/console/operator".to_string(),
        crate::accounts::Caller::Publisher(credential) => format!("/console/partners/{}", credential.publisher),
        crate::accounts::Caller::Tenant { .. } => "/console/installs".to_string(),
    };
    let lifetime = sessions::SESSION_LIFETIME_MS / 1000;
    let mut response = Redirect::to(&home).into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(state, SESSION_COOKIE, &opened.cookie, lifetime));
    response.headers_mut().append(header::SET_COOKIE, set_cookie(state, CSRF_COOKIE, "", 0));
    response
}

async fn sign_out(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    signed.check(&Fields(fields))?;
    if let Some(cookie) = cookie(&headers, SESSION_COOKIE) {
        sessions::close(&state.market, cookie).await?;
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(response)
}
