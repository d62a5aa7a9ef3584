//! The operator's directories of tenants and partners, searched by name.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use crate::console::session::Signed;
use crate::console::{Chrome, PageError, render};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/operator/tenants", get(tenant_directory))
        .route("/console/operator/partners", get(partner_directory))
}

#[derive(Template)]
#[template(path = "directory.html")]
struct DirectoryPage {
    chrome: Chrome,
    /// `tenants` or `partners`: the page's own path.
    kind: &'static str,
    q: String,
    tenants: Option<crate::error::Page<crate::directory::TenantEntry>>,
    partners: Option<crate::error::Page<crate::directory::PartnerEntry>>,
    /// The query string without `page`, for the next page's link.
    query: String,
}

#[derive(Debug, Deserialize)]
struct DirectoryForm {
    q: Option<String>,
    page: Option<u32>,
}

impl DirectoryForm {
    fn query(&self) -> (String, crate::error::PageQuery, String) {
        let q = self.q.as_deref().map(str::trim).unwrap_or_default().to_string();
        let link =
            if q.is_empty() { String::new() } else { format!("q={}&", crate::console::catalog_pages::urlencode(&q)) };
        (q, crate::error::PageQuery { page: self.page, per_page: Some(50) }, link)
    }
}

async fn tenant_directory(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<DirectoryForm>,
) -> Result<Response, PageError> {
    let (q, page, query) = form.query();
    let found = crate::directory::tenants(&state.market, &signed.0.caller, Some(&q), &page).await?;
    render(&DirectoryPage {
        chrome: Chrome::new("Tenants", Some(&signed.0)),
        kind: "tenants",
        q,
        tenants: Some(found),
        partners: None,
        query,
    })
}

async fn partner_directory(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<DirectoryForm>,
) -> Result<Response, PageError> {
    let (q, page, query) = form.query();
    let found = crate::directory::partners(&state.market, &signed.0.caller, Some(&q), &page).await?;
    render(&DirectoryPage {
        chrome: Chrome::new("Partners", Some(&signed.0)),
        kind: "partners",
        q,
        tenants: None,
        partners: Some(found),
        query,
    })
}
