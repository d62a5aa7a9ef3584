//! A listing's page and what people do on it: read the description, links, versions with
//! their changelogs, plans and ratings; tenants review what they use, other tenants mark
//! reviews helpful, the publisher replies and edits the listing's text, operators hide
//! reviews. And each publisher's profile page, which its publisher edits.
//!
//! A refused form comes back on the listing (or profile) page with the reason and what was
//! typed; a done one redirects back with a notice.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use nexus_registry::{ErrorCode, PluginId};
use serde::Deserialize;

use super::catalog_pages::{Choice, plan_terms, plugin_id, urlencode};
use super::session::Signed;
use super::{Chrome, Fields, PageError, render};
use crate::MarketError;
use crate::accounts::{Caller, TenantScope};
use crate::billing::plans::{self, Plan};
use crate::catalog::{self, ListingDetail};
use crate::error::Page;
use crate::installs::{self, Consent};
use crate::listing_text::{self, TextEdit};
use crate::publisher_profiles::{self, ProfileEdit, PublisherProfile};
use crate::reviews::{self, Review, ReviewInput, ReviewQuery, ReviewSort};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/catalog/{publisher}/{name}", get(listing))
        .route("/console/catalog/{publisher}/{name}/review", post(write_review))
        .route("/console/catalog/{publisher}/{name}/text", post(edit_text))
        .route("/console/reviews/{id}/{action}", post(act_on_review))
        .route("/console/publishers/{publisher}", get(profile).post(edit_profile))
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
    let plans = plans::offered(&state.market, id).await?.into_iter().map(|p| {
        let terms = plan_terms(&p);
        (p, terms)
    });
    let consent = if catalog::is_installable(db, id).await? {
        Some(installs::preview(&state.market, &id.to_string(), None).await?)
    } else {
        None
    };
    let sort = review_sort(query.sort.as_deref())?;
    let page = query.page.unwrap_or(1).max(1);
    let review_query = ReviewQuery { sort: Some(sort), page: Some(page), per_page: Some(10), rating: None };
    let reviews = reviews::list(db, caller, id, &review_query).await?;
    let is_tenant = caller.is_some_and(|c| c.role() == "tenant");
    let (mine, why_not) = match caller {
        Some(caller @ Caller::Tenant { tenant, .. }) => match reviews::mine(db, caller, id).await {
            Ok(review) => (Some(review), None),
            Err(MarketError::NotFound(_)) => (None, reviews::why_not(&state.market, tenant, &id.to_string()).await?),
            Err(other) => return Err(other.into()),
        },
        _ => (None, None),
    };
    let largest = detail.rating.by_stars.iter().copied().max().unwrap_or(0).max(1);
    let bars = (1..=5)
        .rev()
        .map(|stars| {
            let count = detail.rating.by_stars.get(stars - 1).copied().unwrap_or(0);
            StarBar { stars, count, percent: count * 100 / largest }
        })
        .collect();
    let sort_name = ReviewSort::ALL.iter().find(|(s, _)| *s == sort).map_or("newest", |(_, name)| name);
    let page_view = ListingPage {
        chrome: Chrome::new(detail.listing.id.clone(), session),
        is_tenant,
        is_owner: matches!(caller, Some(Caller::Publisher(c)) if c.publisher.as_str() == id.publisher.as_str()),
        is_operator: caller.is_some_and(|c| c.role() == "operator"),
        plans: plans.collect(),
        consent,
        bars,
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

async fn write_review(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let id = plugin_id(&publisher, &name)?;
    let db = &state.market.db;
    let caller = &signed.0.caller;
    if fields.get("delete").is_some() {
        return match reviews::delete_mine(&state.market, caller, &id).await {
            Ok(()) => Ok(back(&id, "Your review was deleted.")),
            Err(error) => refused(&state, &signed, &id, error, Typed::default()).await,
        };
    }
    let typed = Typed {
        rating: fields.get("rating").unwrap_or_default().to_string(),
        title: fields.get("title").unwrap_or_default().to_string(),
        body: fields.get("body").unwrap_or_default().replace("\r\n", "\n"),
    };
    let Ok(rating) = typed.rating.trim().parse::<i64>() else {
        let error = MarketError::invalid(ErrorCode::InvalidReview, "choose a rating from 1 to 5 stars");
        return refused(&state, &signed, &id, error, typed).await;
    };
    let input = ReviewInput { rating, title: typed.title.clone(), body: typed.body.clone() };
    let existing = match caller.tenant(TenantScope::Read) {
        Ok(_) => reviews::mine(db, caller, &id).await.is_ok(),
        Err(_) => false,
    };
    match reviews::write(&state.market, caller, &id, &input, !existing).await {
        Ok(_) if existing => Ok(back(&id, "Your review was updated.")),
        Ok(_) => Ok(back(&id, "Thank you: your review is published.")),
        Err(error) => refused(&state, &signed, &id, error, typed).await,
    }
}

/// `reply`, `unreply`, `hide`, `show`, `helpful`, `unhelpful` on review `id`.
async fn act_on_review(
    State(state): State<AppState>,
    signed: Signed,
    Path((review_id, action)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let db = &state.market.db;
    let caller = &signed.0.caller;
    let plugin: Option<String> = sqlx::query_scalar("SELECT plugin_id FROM reviews WHERE id = $1")
        .bind(&review_id)
        .fetch_optional(&db.pool)
        .await
        .map_err(MarketError::from)?;
    let plugin = plugin.ok_or_else(|| MarketError::NotFound(format!("review {review_id}")))?;
    let id: PluginId = plugin.parse().map_err(nexus_registry::RegistryError::from)?;
    let text = fields.get("text").unwrap_or_default().replace("\r\n", "\n");
    let (outcome, notice) = match action.as_str() {
        "reply" => (reviews::reply(&state.market, caller, &review_id, Some(&text)).await, "Your reply is published."),
        "unreply" => (reviews::reply(&state.market, caller, &review_id, None).await, "Your reply was removed."),
        "hide" => (
            reviews::hide(&state.market, caller, &review_id, Some(&text)).await,
            "The review is hidden; its author sees why.",
        ),
        "show" => (reviews::hide(&state.market, caller, &review_id, None).await, "The review is shown again."),
        "helpful" => (reviews::mark_helpful(&state.market, caller, &review_id, true).await, "Marked helpful."),
        "unhelpful" => {
            (reviews::mark_helpful(&state.market, caller, &review_id, false).await, "Helpful mark taken back.")
        }
        other => return Err(MarketError::NotFound(format!("review action {other}")).into()),
    };
    match outcome {
        Ok(_) => Ok(back(&id, notice)),
        Err(error) => refused(&state, &signed, &id, error, Typed::default()).await,
    }
}

/// The publisher edits the listing's summary, description and links.
async fn edit_text(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let id = plugin_id(&publisher, &name)?;
    let link = |name: &str| fields.text(name).map(String::from);
    let edit = TextEdit {
        summary: Some(fields.get("summary").unwrap_or_default().trim().to_string()),
        description: Some(fields.get("description").unwrap_or_default().replace("\r\n", "\n")),
        links: Some(nexus_registry::manifest::Links {
            documentation: link("documentation"),
            support: link("support"),
            privacy: link("privacy"),
            terms: link("terms"),
        }),
    };
    match listing_text::edit(&state.market.db, &signed.0.caller, &id, &edit).await {
        Ok(_) => Ok(Redirect::to(&format!(
            "/console/catalog/{id}?notice={}",
            urlencode("The listing's text is updated; the next version you publish brings its own.")
        ))
        .into_response()),
        Err(error) => refused(&state, &signed, &id, error, Typed::default()).await,
    }
}

#[derive(Template)]
#[template(path = "publisher_profile.html")]
struct ProfilePage {
    chrome: Chrome,
    profile: PublisherProfile,
    /// The publisher itself (or an operator) is reading: the edit form is shown.
    may_edit: bool,
    notice: Option<String>,
    problem: Option<String>,
}

impl ProfilePage {
    fn average(&self) -> String {
        self.profile.rating_average.map_or_else(|| "no ratings yet".into(), |a| format!("{a:.1} out of 5"))
    }

    fn support_href(&self) -> &str {
        self.profile.support.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Default, Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn profile_page(
    state: &AppState,
    signed: Option<&Signed>,
    publisher: &str,
    notice: Option<String>,
    problem: Option<String>,
) -> Result<Response, PageError> {
    let session = signed.map(|s| &s.0);
    let profile = publisher_profiles::get(&state.market.db, publisher).await?;
    let page = ProfilePage {
        chrome: Chrome::new(profile.display_name.clone(), session),
        may_edit: session.is_some_and(|s| {
            matches!(&s.caller, Caller::Publisher(c) if c.publisher.as_str() == publisher)
                || s.caller.role() == "operator"
        }),
        profile,
        notice,
        problem,
    };
    render(&page)
}

async fn profile(
    State(state): State<AppState>,
    signed: Option<Signed>,
    Path(publisher): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    profile_page(&state, signed.as_ref(), &publisher, query.notice, None).await
}

async fn edit_profile(
    State(state): State<AppState>,
    signed: Signed,
    Path(publisher): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let edit = ProfileEdit {
        website: fields.text("website").map(String::from),
        support: fields.text("support").map(String::from),
        about: fields.get("about").unwrap_or_default().replace("\r\n", "\n"),
    };
    match publisher_profiles::set(&state.market.db, &signed.0.caller, &publisher, &edit).await {
        Ok(_) => Ok(Redirect::to(&format!(
            "/console/publishers/{publisher}?notice={}",
            urlencode("Your profile is updated.")
        ))
        .into_response()),
        Err(error) => {
            let problem = PageError::refusal(error)?.message;
            profile_page(&state, Some(&signed), &publisher, None, Some(problem)).await
        }
    }
}
