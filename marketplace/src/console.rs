//! The web console: server-rendered HTML over the same domain functions as the JSON API
//! (`server/`), with the same role and ownership rules because it calls the same functions
//! with the same [`Caller`](crate::accounts::Caller). It has no SQL of its own and needs no
//! JavaScript: every page is one GET, every change one form POST carrying the session's
//! CSRF value.
//!
//! One file per audience: `catalog_pages` (everyone, and the tenant's install flow),
//! `tenant_pages`, `partner_pages`, `operator_pages`; `session` signs in and out, `chart`
//! turns figures into SVG. Around every page: `chrome` (the header and navigation),
//! `page_error` (a page that could not be shown), `format` (amounts and dates).

mod account_pages;
mod catalog_pages;
pub mod chart;
mod chrome;
mod delivery_pages;
mod format;
mod install_actions;
mod listing_pages;
mod money_pages;
mod operator_pages;
mod organization_pages;
mod page_error;
mod partner_pages;
mod partner_program_pages;
mod security_pages;
mod session;
mod tenant_pages;
mod token_pages;

use axum::Router;
use axum::http::header;
use axum::response::{Redirect, Response};
use axum::routing::get;

use crate::server::AppState;

/// CSV answers are the API's own (same headers, same file names).
pub(crate) use crate::server::csv;
pub use chrome::{Chrome, NavLink, OrgChoice};
pub use format::{Minor, money, when};
pub use page_error::{PageError, render};
pub use session::{CSRF_COOKIE, SESSION_COOKIE};

const STYLE: &str = include_str!("console/style.css");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/catalog") }))
        .route("/console", get(|| async { Redirect::to("/console/catalog") }))
        .route(
            "/console/style.css",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], STYLE)
            }),
        )
        .merge(session::routes())
        .merge(account_pages::routes())
        .merge(partner_program_pages::routes())
        .merge(organization_pages::routes())
        .merge(security_pages::routes())
        .merge(token_pages::routes())
        .merge(catalog_pages::routes())
        .merge(listing_pages::routes())
        .merge(tenant_pages::routes())
        .merge(delivery_pages::routes())
        .merge(partner_pages::routes())
        .merge(operator_pages::routes())
        .merge(money_pages::routes())
        .layer(axum::middleware::map_response(guarded))
        .layer(axum::middleware::from_fn(remember_page))
}

/// The page a request asked for, while it is answered: the header marks it in the
/// navigation, and a page that needs a sign-in sends the reader back to it afterwards.
#[derive(Debug, Clone, Default)]
struct Asked {
    path: String,
    /// Path and query of a GET, where a sign-in may return to.
    return_to: Option<String>,
}

tokio::task_local! {
    static ASKED: Asked;
}

async fn remember_page(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = request.uri();
    let asked = Asked {
        path: uri.path().to_string(),
        return_to: (request.method() == axum::http::Method::GET)
            .then(|| uri.path_and_query().map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string())),
    };
    ASKED.scope(asked, next.run(request)).await
}

/// Where a sign-in may send its reader back to: a console page of this site, never the
/// sign-in itself, another host (`//evil.example`), a dot segment or a backslash trick.
pub fn safe_return(target: &str) -> Option<&str> {
    let ok = target.starts_with("/console/")
        && !target.starts_with("/console/sign-in")
        && !target.starts_with("/console/sign-out")
        && !target.contains("//")
        && !target.split(['/', '?']).any(|segment| segment == ".." || segment == ".")
        && !target.contains('\\')
        && target.len() <= 512
        && !target.chars().any(char::is_control);
    ok.then_some(target)
}

/// What every console answer carries: no framing by other sites, no inline or foreign
/// scripts or styles, no referrer leaving the site, and pages (which show private figures)
/// kept out of shared caches.
async fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    }
    response
}

/// A submitted form's fields in order (checkbox groups repeat a name).
#[derive(Debug, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The field, trimmed; empty counts as absent.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|value| !value.is_empty())
    }
}
