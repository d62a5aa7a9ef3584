//! What everyone sees (the catalog and a listing) and the tenant's install flow: the
//! consent screen with every capability and host and why, the plan, config and secrets
//! (`install_flow`). Plans in words are `plan_words`.

mod install_flow;
mod plan_words;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use nexus_registry::ErrorCode;
use serde::Deserialize;

pub use self::install_flow::config_lines;
pub use self::plan_words::{charge_notice, plan_terms, price_label, with_terms};
use super::session::Signed;
use super::{Chrome, PageError, render};
use crate::MarketError;
use crate::catalog::{self, Facets, Listing, SearchQuery, Sort};
use crate::error::Page;
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/catalog", get(search))
        .route("/console/catalog/category/{category}", get(category))
        .merge(install_flow::routes())
}

/// `publisher/name` from a page's path, refused as the API refuses it.
pub fn plugin_id(publisher: &str, name: &str) -> Result<nexus_registry::PluginId, PageError> {
    Ok(format!("{publisher}/{name}")
        .parse::<nexus_registry::PluginId>()
        .map_err(nexus_registry::RegistryError::from)?)
}

#[derive(Debug, Deserialize)]
struct SearchForm {
    q: Option<String>,
    category: Option<String>,
    pricing: Option<String>,
    sort: Option<String>,
    page: Option<u32>,
}

/// One option of a `<select>`.
#[derive(Debug)]
pub struct Choice {
    pub value: &'static str,
    pub label: String,
    pub selected: bool,
}

impl Choice {
    pub fn new(value: &'static str, label: String, current: &str) -> Self {
        Self { value, label, selected: value == current }
    }

    pub fn of(options: &[(&'static str, &'static str)], current: &str) -> Vec<Self> {
        options.iter().map(|(value, label)| Self::new(value, label.to_string(), current)).collect()
    }
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    chrome: Chrome,
    q: String,
    filtered: bool,
    category_choices: Vec<Choice>,
    pricing_choices: Vec<Choice>,
    sort_choices: Vec<Choice>,
    /// Categories with listings under the query's other filters, and how many.
    categories: Vec<(&'static str, i64)>,
    featured: Vec<Listing>,
    /// New and updated listings, and the best rated (the unfiltered first page only).
    updated: Vec<Listing>,
    top_rated: Vec<Listing>,
    results: Page<Listing>,
    page: u32,
    /// The query string without `page`, for the next and previous links.
    query: String,
}

async fn search(
    State(state): State<AppState>,
    signed: Option<Signed>,
    Query(form): Query<SearchForm>,
) -> Result<Response, PageError> {
    catalog_page(&state, signed.as_ref(), form, None).await
}

/// A category's page: the catalog filtered to it, with its name as the title.
async fn category(
    State(state): State<AppState>,
    signed: Option<Signed>,
    Path(category): Path<String>,
    Query(mut form): Query<SearchForm>,
) -> Result<Response, PageError> {
    let Some(known) = nexus_registry::manifest::CATEGORIES.iter().find(|c| **c == category) else {
        return Err(MarketError::NotFound(format!("category {category}")).into());
    };
    form.category = Some(known.to_string());
    catalog_page(&state, signed.as_ref(), form, Some(known)).await
}

/// The catalog's sorts: the query value, the sort, the label.
const SORTS: [(&str, Sort, &str); 6] = [
    ("relevance", Sort::Relevance, "relevance"),
    ("popular", Sort::Popular, "most installed"),
    ("top-rated", Sort::TopRated, "top rated"),
    ("newest", Sort::Newest, "newest"),
    ("updated", Sort::Updated, "recently updated"),
    ("name", Sort::Name, "name"),
];

async fn catalog_page(
    state: &AppState,
    signed: Option<&Signed>,
    form: SearchForm,
    category: Option<&'static str>,
) -> Result<Response, PageError> {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from);
    let sort_text = text(&form.sort);
    let sort = sort_named(sort_text.as_deref())?;
    let page = form.page.unwrap_or(1).max(1);
    let query = SearchQuery {
        q: text(&form.q),
        category: text(&form.category),
        pricing: text(&form.pricing),
        sort,
        page: Some(page),
        per_page: Some(24),
        ..SearchQuery::default()
    };
    let db = &state.market.db;
    let filtered = query.q.is_some() || query.category.is_some() || query.pricing.is_some();
    // The catalog's front: featured listings, the newest and updated ones, the best rated.
    let front = !filtered && page == 1;
    let Shelves { featured, updated, top_rated } = if front { shelves(db).await? } else { Shelves::default() };
    let results = catalog::search(db, &query).await?;
    let facets = catalog::facets(db, &query).await?;
    let title = match category {
        Some(category) => format!("Catalog: {category}"),
        None => "Catalog".to_string(),
    };
    let page_view = CatalogPage {
        chrome: Chrome::new(title, signed.map(|s| &s.0)),
        q: query.q.clone().unwrap_or_default(),
        filtered,
        category_choices: category_choices(&facets, query.category.as_deref().unwrap_or_default()),
        pricing_choices: pricing_choices(&facets, query.pricing.as_deref().unwrap_or_default()),
        sort_choices: SORTS
            .iter()
            .map(|(value, _, label)| Choice::new(value, label.to_string(), sort_text.as_deref().unwrap_or("relevance")))
            .collect(),
        categories: nexus_registry::manifest::CATEGORIES
            .iter()
            .map(|c| (*c, facets.categories.get(*c).copied().unwrap_or(0)))
            .filter(|(_, count)| *count > 0)
            .collect(),
        featured,
        updated,
        top_rated,
        results,
        page,
        query: query_string(&query, sort_text.as_ref()),
    };
    render(&page_view)
}

/// The sort a query names (relevance when it names none), refused when it is not one.
fn sort_named(name: Option<&str>) -> Result<Option<Sort>, PageError> {
    let Some(name) = name else { return Ok(None) };
    match SORTS.iter().find(|(value, _, _)| *value == name) {
        Some((_, sort, _)) => Ok(Some(*sort)),
        None => Err(PageError::bad_request(
            ErrorCode::InvalidQuery,
            format!("sort `{name}` is not relevance, popular, top-rated, newest, updated or name"),
        )),
    }
}

/// The shelves of the catalog's front page.
#[derive(Default)]
struct Shelves {
    featured: Vec<Listing>,
    updated: Vec<Listing>,
    top_rated: Vec<Listing>,
}

async fn shelves(db: &nexus_registry::Db) -> Result<Shelves, PageError> {
    let shelf = |sort, per_page| SearchQuery { sort: Some(sort), per_page: Some(per_page), ..SearchQuery::default() };
    let featured = SearchQuery { featured: Some(true), per_page: Some(12), ..SearchQuery::default() };
    let top_rated: Vec<Listing> = catalog::search(db, &shelf(Sort::TopRated, 6))
        .await?
        .items
        .into_iter()
        .filter(|l| l.rating_count > 0)
        .collect();
    Ok(Shelves {
        featured: catalog::search(db, &featured).await?.items,
        updated: catalog::search(db, &shelf(Sort::Updated, 6)).await?.items,
        top_rated,
    })
}

/// A filter's value with its count of listings: `crm (3)`.
fn counted(value: &'static str, count: Option<&i64>) -> String {
    match count {
        Some(count) => format!("{value} ({count})"),
        None => value.to_string(),
    }
}

fn category_choices(facets: &Facets, current: &str) -> Vec<Choice> {
    std::iter::once(Choice::new("", "any".into(), current))
        .chain(
            nexus_registry::manifest::CATEGORIES
                .iter()
                .map(|c| Choice::new(c, counted(c, facets.categories.get(*c)), current)),
        )
        .collect()
}

fn pricing_choices(facets: &Facets, current: &str) -> Vec<Choice> {
    std::iter::once(Choice::new("", "any".into(), current))
        .chain(
            ["free", "one-time", "subscription", "usage"]
                .into_iter()
                .map(|m| Choice::new(m, counted(m, facets.pricing.get(m)), current)),
        )
        .collect()
}

/// The search's query string without `page`, for the next and previous links.
fn query_string(query: &SearchQuery, sort_text: Option<&String>) -> String {
    let mut pairs = Vec::new();
    for (key, value) in [
        ("q", query.q.as_ref()),
        ("category", query.category.as_ref()),
        ("pricing", query.pricing.as_ref()),
        ("sort", sort_text),
    ] {
        if let Some(value) = value {
            pairs.push(format!("{key}={}", urlencode(value)));
        }
    }
    pairs.join("&")
}

/// Percent-encodes a query value.
pub fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("crm & sales/é"), "crm%20%26%20sales%2F%C3%A9");
    }
}
