//! A page that could not be shown: the API's status and code for the same failure, as an
//! HTML page saying what to do next (or, signed out, the sign-in and back).

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use nexus_registry::ErrorCode;

use super::{ASKED, Chrome, catalog_pages, safe_return, session};
use crate::error::MarketError;
use crate::server::ApiError;

/// A page that could not be shown: the API's status and code for the same failure, as HTML.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl PageError {
    /// A refusal to show on the form that caused it, or (a server failure) the error page.
    pub fn refusal(error: MarketError) -> Result<Self, Self> {
        let error = Self::from(error);
        if error.status.is_server_error() { Err(error) } else { Ok(error) }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self { status: error.status, code: error.code, message: error.message }
    }
}

impl From<MarketError> for PageError {
    fn from(error: MarketError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<nexus_registry::RegistryError> for PageError {
    fn from(error: nexus_registry::RegistryError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        tracing::error!(%error, "console template failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "the page could not be rendered")
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    status: u16,
    code: &'a str,
    message: &'a str,
    /// What to do instead, in words.
    hint: &'static str,
}

/// An error page's title and what its reader can do next, by status (and a few codes).
fn error_words(status: StatusCode, code: ErrorCode) -> (&'static str, &'static str) {
    match (status.as_u16(), code) {
        (_, ErrorCode::CsrfMismatch) => {
            ("The form expired", "Go back, reload the page and send the form again: nothing was changed.")
        }
        (403, _) => (
            "Not yours to see or do",
            "Sign in as a member of the organization this belongs to, or ask one of its owners or admins.",
        ),
        (404, _) => ("Not found", "It may have been removed, or the link is mistyped: start again from the menu."),
        (409, _) => {
            ("Not possible right now", "Something changed it meanwhile: reload the page to see where it stands.")
        }
        (429, _) => ("Too many attempts", "Wait a little and try again."),
        (400..=499, _) => ("That was not accepted", "Go back and correct what the message names: nothing was changed."),
        _ => ("Something went wrong on our side", "Try again in a moment; if it keeps failing, tell the operators."),
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.code == ErrorCode::SecondFactorRequired {
            return Redirect::to("/console/security?required=1").into_response();
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // Signed out, expired, or the token behind the session was revoked: sign in,
            // then back to the page asked for.
            let back = ASKED.try_with(|asked| asked.return_to.clone()).ok().flatten();
            let to = match back.as_deref().and_then(safe_return) {
                Some(page) => format!("/console/sign-in?next={}", catalog_pages::urlencode(page)),
                None => "/console/sign-in".to_string(),
            };
            let mut response = Redirect::to(&to).into_response();
            response.headers_mut().insert(header::SET_COOKIE, session::clear_cookie());
            return response;
        }
        if self.status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.message, "console page failed");
        }
        let (title, hint) = error_words(self.status, self.code);
        let page = ErrorPage {
            chrome: Chrome::new(title, None),
            status: self.status.as_u16(),
            code: self.code.as_str(),
            message: &self.message,
            hint,
        };
        let body = page.render().unwrap_or_else(|_| self.message.clone());
        (self.status, Html(body)).into_response()
    }
}

/// Renders a page template.
pub fn render(page: &impl Template) -> Result<Response, PageError> {
    Ok(Html(page.render()?).into_response())
}
