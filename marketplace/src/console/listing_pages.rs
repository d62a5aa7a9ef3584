//! A listing's page and what people do on it: read the description, links, versions with
//! their changelogs, plans and ratings; tenants review what they use, other tenants mark
//! reviews helpful, the publisher replies and edits the listing's text, operators hide
//! reviews. And each publisher's profile page, which its publisher edits.
//!
//! A refused form comes back on the listing (or profile) page with the reason and what was
//! typed; a done one redirects back with a notice. The forms are `review_forms`; the
//! profile page is `profile_pages`.

mod profile_pages;
mod review_forms;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use nexus_registry::{ErrorCode, PluginId};
use serde::Deserialize;

use super::catalog_pages::{Choice, plugin_id, urlencode, with_terms};
use super::session::Signed;
use super::{Chrome, PageError, render};
use crate::MarketError;
use crate::accounts::Caller;
use crate::billing::plans::{self, Plan};
use crate::catalog::{self, ListingDetail};
use crate::error::Page;
use crate::installs::{self, Consent};
use crate::reviews::{self, Review, ReviewQuery, ReviewSort};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/catalog/{publisher}/{name}", get(listing))
        .merge(review_forms::routes())
        .merge(profile_pages::routes())
}

/// One bar of the rating distribution.
pub struct StarBar {
    pub stars: usize,
    pub count: i64,
    /// Of the largest bar, for its width.
    pub percent: i64,
}

/// What a refused review form had typed.
#[derive(Debug, Default)]
pub struct Typed {
    pub rating: String,
    pub title: String,
    pub body: String,
}

#[derive(Template)]
#[template(path = "listing.html")]
struct ListingPage {
    chrome: Chrome,
    detail: ListingDetail,
    plans: Vec<(Plan, String)>,
    consent: Option<Consent>,
    is_tenant: bool,
    /// The plugin's own publisher is reading.
    is_owner: bool,
    is_operator: bool,
    bars: Vec<StarBar>,
    reviews: Page<Review>,
    sort_choices: Vec<Choice>,
    sort: String,
    page: u32,
    /// The tenant's own review, hidden or not.
    mine: Option<Review>,
    /// Why the tenant may not review yet.
    why_not: Option<String>,
    notice: Option<String>,
    problem: Option<String>,
    typed: Typed,
}

impl ListingPage {
    fn stars(rating: &i64) -> String {
        let full = usize::try_from(*rating).unwrap_or(0).min(5);
        format!("{}{}", "★".repeat(full), "☆".repeat(5 - full))
    }

    fn average(&self) -> String {
        self.detail.rating.average.map_or_else(|| "no ratings yet".into(), |a| format!("{a:.1} out of 5"))
    }

    fn typed_rating(&self, value: &usize) -> bool {
        let current = if self.typed.rating.is_empty() {
            self.mine.as_ref().map(|m| m.rating.to_string()).unwrap_or_default()
        } else {
            self.typed.rating.clone()
        };
        current == value.to_string()
    }

    fn typed_title(&self) -> &str {
        if self.problem.is_some() || self.mine.is_none() {
            &self.typed.title
        } else {
            self.mine.as_ref().map_or("", |m| m.title.as_str())
        }
    }

    fn typed_body(&self) -> &str {
        if self.problem.is_some() || self.mine.is_none() {
            &self.typed.body
        } else {
            self.mine.as_ref().map_or("", |m| m.body.as_str())
        }
    }

    /// Whether the reader's organization may mark `review` helpful (not its own).
    fn may_mark(&self, review: &Review) -> bool {
        self.is_tenant && self.mine.as_ref().is_none_or(|m| m.id != review.id)
    }

    fn link_label(kind: &str) -> &'static str {
        match kind {
            "documentation" => "Documentation",
            "support" => "Support",
            "privacy" => "Privacy policy",
            _ => "Terms of service",
        }
    }

    fn links(&self) -> Vec<(&'static str, &str)> {
        let links = &self.detail.links;
        [
            ("documentation", &links.documentation),
            ("support", &links.support),
            ("privacy", &links.privacy),
            ("terms", &links.terms),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.as_deref().map(|v| (Self::link_label(kind), v)))
        .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListingQuery {
    sort: Option<String>,
    page: Option<u32>,
    notice: Option<String>,
}

fn review_sort(text: Option<&str>) -> Result<ReviewSort, PageError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(ReviewSort::default()),
        Some(text) => ReviewSort::ALL.iter().find(|(_, name)| *name == text).map(|(sort, _)| *sort).ok_or_else(|| {
            PageError::bad_request(
                ErrorCode::InvalidQuery,
                format!("sort `{text}` is not newest, helpful, rating-high or rating-low"),
            )
        }),
    }
}

/// The listing page, with a notice, or with a refused form's reason and what it had typed.
async fn listing_page(
    state: &AppState,
    signed: Option<&Signed>,
    id: &PluginId,
    query: ListingQuery,
    problem: Option<String>,
    typed: Typed,
) -> Result<Response, PageError> {
    let session = signed.map(|s| &s.0);
    let caller = session.map(|s| &s.caller);
    let db = &state.market.db;
    let detail = catalog::detail(db, &state.market.registry, id, caller).await?;
    let plans = with_terms(plans::offered(&state.market, id).await?);
    let consent = if catalog::is_installable(db, id).await? {
        Some(installs::preview(&state.market, &id.to_string(), None).await?)
    } else {
        None
    };
    let sort = review_sort(query.sort.as_deref())?;
    let page = query.page.unwrap_or(1).max(1);
    let review_query = ReviewQuery { sort: Some(sort), page: Some(page), per_page: Some(10), rating: None };
    let reviews = reviews::list(db, caller, id, &review_query).await?;
    let (mine, why_not) = own_review(state, caller, id).await?;
    let sort_name = ReviewSort::ALL.iter().find(|(s, _)| *s == sort).map_or("newest", |(_, name)| name);
    let page_view = ListingPage {
        chrome: Chrome::new(detail.listing.id.clone(), session),
        is_tenant: caller.is_some_and(|c| c.role() == "tenant"),
        is_owner: matches!(caller, Some(Caller::Publisher(c)) if c.publisher.as_str() == id.publisher.as_str()),
        is_operator: caller.is_some_and(|c| c.role() == "operator"),
        plans,
        consent,
        bars: star_bars(&detail.rating.by_stars),
        reviews,
        sort_choices: Choice::of(
            &[
                ("newest", "newest"),
                ("helpful", "most helpful"),
                ("rating-high", "highest rating"),
                ("rating-low", "lowest rating"),
            ],
            sort_name,
        ),
        sort: sort_name.to_string(),
        page,
        mine,
        why_not,
        notice: query.notice,
        problem,
        typed,
        detail,
    };
    render(&page_view)
}

/// A tenant's own review of the plugin, or why it may not review it yet; nothing for others.
async fn own_review(
    state: &AppState,
    caller: Option<&Caller>,
    id: &PluginId,
) -> Result<(Option<Review>, Option<String>), PageError> {
    match caller {
        Some(caller @ Caller::Tenant { tenant, .. }) => match reviews::mine(&state.market.db, caller, id).await {
            Ok(review) => Ok((Some(review), None)),
            Err(MarketError::NotFound(_)) => {
                Ok((None, reviews::why_not(&state.market, tenant, &id.to_string()).await?))
            }
            Err(other) => Err(other.into()),
        },
        _ => Ok((None, None)),
    }
}

/// The rating distribution, five stars first, each bar against the largest.
fn star_bars(by_stars: &[i64]) -> Vec<StarBar> {
    let largest = by_stars.iter().copied().max().unwrap_or(0).max(1);
    (1..=5)
        .rev()
        .map(|stars| {
            let count = by_stars.get(stars - 1).copied().unwrap_or(0);
            StarBar { stars, count, percent: count * 100 / largest }
        })
        .collect()
}

async fn listing(
    State(state): State<AppState>,
    signed: Option<Signed>,
    Path((publisher, name)): Path<(String, String)>,
    Query(query): Query<ListingQuery>,
) -> Result<Response, PageError> {
    let id = plugin_id(&publisher, &name)?;
    listing_page(&state, signed.as_ref(), &id, query, None, Typed::default()).await
}

/// Back to the listing with a notice.
fn back(id: &PluginId, notice: &str) -> Response {
    Redirect::to(&format!("/console/catalog/{id}?notice={}#reviews", urlencode(notice))).into_response()
}

/// A refusal the reader can act on comes back on the listing; a failure is an error page.
async fn refused(
    state: &AppState,
    signed: &Signed,
    id: &PluginId,
    error: MarketError,
    typed: Typed,
) -> Result<Response, PageError> {
    let problem = PageError::refusal(error)?.message;
    listing_page(state, Some(signed), id, ListingQuery::default(), Some(problem), typed).await
}
