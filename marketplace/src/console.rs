//! The web console: server-rendered HTML over the same domain functions as the JSON API
//! (`server/`), with the same role and ownership rules because it calls the same functions
//! with the same [`Caller`]. It has no SQL of its own and needs no JavaScript: every page is
//! one GET, every change one form POST carrying the session's CSRF value.
//!
//! One file per audience: `catalog_pages` (everyone, and the tenant's install flow),
//! `tenant_pages`, `partner_pages`, `operator_pages`; `session` signs in and out, `chart`
//! turns figures into SVG.

mod account_pages;
mod catalog_pages;
pub mod chart;
mod delivery_pages;
mod install_actions;
mod listing_pages;
mod money_pages;
mod operator_pages;
mod organization_pages;
mod partner_pages;
mod partner_program_pages;
mod security_pages;
mod session;
mod tenant_pages;
mod token_pages;

use askama::Template;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use nexus_registry::ErrorCode;

use crate::accounts::Caller;
use crate::error::MarketError;
use crate::server::{ApiError, AppState};
use crate::sessions::Session;

/// CSV answers are the API's own (same headers, same file names).
pub(crate) use crate::server::csv;
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

/// A link of the header's navigation.
#[derive(Debug, Clone)]
pub struct NavLink {
    pub href: String,
    pub label: &'static str,
    /// The page shown is this link's (or under it, when no longer link matches).
    pub current: bool,
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

/// What every page shows around its content: who is signed in, the links for that role,
/// and the CSRF value its forms carry.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    pub title: String,
    /// `operator`, `publisher` or `tenant`; empty when signed out.
    pub role: &'static str,
    /// How the caller is named: the tenant, the publisher, or "operator".
    pub who: String,
    pub csrf: String,
    /// The partner pages of a publisher (its own name).
    pub publisher: String,
    /// Signed in as a person (rather than with an API token).
    pub person: bool,
    /// A person's organizations, to switch between (the current one marked).
    pub orgs: Vec<OrgChoice>,
    /// The role's navigation, the current page's link marked.
    pub nav: Vec<NavLink>,
}

/// One organization in the header's switcher.
#[derive(Debug, Default, Clone)]
pub struct OrgChoice {
    pub kind: String,
    pub id: String,
    pub current: bool,
}

impl Chrome {
    pub fn new(title: impl Into<String>, session: Option<&Session>) -> Self {
        let mut chrome = Self { title: title.into(), ..Self::default() };
        if let Some(session) = session {
            chrome.role = session.caller.role();
            chrome.csrf = session.csrf.clone();
            chrome.person = session.person.is_some();
            let (kind, id) = match &session.caller {
                Caller::Tenant { tenant, .. } => ("tenant", tenant.to_string()),
                Caller::Publisher(credential) => ("publisher", credential.publisher.to_string()),
                Caller::Operator { .. } => ("operator", String::new()),
            };
            chrome.orgs = session
                .memberships
                .iter()
                .map(|m| OrgChoice {
                    kind: m.org_kind.clone(),
                    id: m.org_id.clone(),
                    current: m.org_kind == kind && m.org_id == id,
                })
                .collect();
            chrome.who = match &session.caller {
                Caller::Operator { .. } => "operator".to_string(),
                Caller::Publisher(credential) => credential.publisher.to_string(),
                Caller::Tenant { tenant, .. } => tenant.to_string(),
            };
            if let Caller::Publisher(credential) = &session.caller {
                chrome.publisher = credential.publisher.to_string();
            }
        }
        chrome.nav = navigation(&chrome);
        chrome
    }
}

/// The links of the header for the signed-in role, with the page shown marked: the
/// longest link the path starts with.
fn navigation(chrome: &Chrome) -> Vec<NavLink> {
    let mut links: Vec<(String, &'static str)> = vec![("/console/catalog".into(), "Catalog")];
    match chrome.role {
        "tenant" => links.extend([
            ("/console/installs".into(), "Installs"),
            ("/console/deliveries".into(), "Deliveries"),
            ("/console/bills".into(), "Bills"),
        ]),
        "publisher" => links.push((format!("/console/partners/{}", chrome.publisher), "Earnings and payouts")),
        _ => {}
    }
    if chrome.person {
        links.extend([
            ("/console/organization".into(), "Members"),
            ("/console/organization/tokens".into(), "API tokens"),
            ("/console/partner-program".into(), "Partner program"),
            ("/console/security".into(), "Security"),
        ]);
    }
    if chrome.role == "operator" {
        links.extend([
            ("/console/operator".into(), "Operator"),
            ("/console/operator/tenants".into(), "Tenants"),
            ("/console/operator/partners".into(), "Partners"),
            ("/console/operator/applications".into(), "Applications"),
            ("/console/operator/audit".into(), "Audit log"),
            ("/console/deliveries".into(), "Deliveries"),
            ("/console/operator/ledger".into(), "Ledger check"),
        ]);
    }
    let path = ASKED.try_with(|asked| asked.path.clone()).unwrap_or_default();
    let under = |href: &str| path == href || path.starts_with(&format!("{href}/"));
    let best = links.iter().filter(|(href, _)| under(href)).map(|(href, _)| href.len()).max();
    links
        .into_iter()
        .map(|(href, label)| NavLink { current: Some(href.len()) == best && under(&href), href, label })
        .collect()
}

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

/// An integer however many references deep templates hand it over.
pub trait Minor {
    fn minor(&self) -> i64;
}

impl Minor for i64 {
    fn minor(&self) -> i64 {
        *self
    }
}

impl<T: Minor + ?Sized> Minor for &T {
    fn minor(&self) -> i64 {
        (**self).minor()
    }
}

/// `12.50 EUR`: minor units in the currency's own decimals.
pub fn money(minor: impl Minor, currency: impl AsRef<str>) -> String {
    let (minor, currency) = (minor.minor(), currency.as_ref());
    nexus_money::Currency::from_code(currency)
        .map_or_else(|_| format!("{minor} {currency}"), |c| nexus_money::Money::new(minor, c).to_string())
}

/// `2026-12-02 14:05 UTC` for milliseconds since the epoch.
pub fn when(ms: impl Minor) -> String {
    let ms = ms.minor();
    let days = ms.div_euclid(86_400_000);
    let minutes = ms.rem_euclid(86_400_000) / 60_000;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", minutes / 60, minutes % 60)
}

/// The calendar date of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_calendar_days_of_the_epoch_count() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(when(1_796_220_300_000), "2026-12-02 14:05 UTC");
        assert_eq!(when(-86_400_000), "1969-12-31 00:00 UTC");
    }

    #[test]
    fn amounts_use_the_currency_decimals() {
        assert_eq!(money(1250, "EUR"), "12.50 EUR");
        assert_eq!(money(-3, "JPY"), "-3 JPY");
        assert_eq!(money(5, "XXQ"), "5 XXQ");
    }
}
