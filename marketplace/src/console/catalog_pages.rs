//! What everyone sees (the catalog and a listing) and the tenant's install flow: the
//! consent screen with every capability and host and why, the plan, config and secrets.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use nexus_registry::ErrorCode;
use serde::Deserialize;

use super::session::Signed;
use super::{Chrome, Fields, PageError, money, render};
use crate::MarketError;
use crate::billing::plans::{self, Plan, PlanModel};
use crate::catalog::{self, Listing, SearchQuery, Sort};
use crate::error::Page;
use crate::installs::{self, Consent, GrantConsent, InstallRequest};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/catalog", get(search))
        .route("/console/catalog/category/{category}", get(category))
        .route("/console/catalog/{publisher}/{name}/install", get(install_form).post(install))
}

/// `publisher/name` from a page's path, refused as the API refuses it.
pub fn plugin_id(publisher: &str, name: &str) -> Result<nexus_registry::PluginId, PageError> {
    Ok(format!("{publisher}/{name}")
        .parse::<nexus_registry::PluginId>()
        .map_err(nexus_registry::RegistryError::from)?)
}

/// A plan in words: `9.00 USD a month, 14-day trial`, `0.10 USD per event beyond 100`.
pub fn plan_terms(plan: &Plan) -> String {
    let currency = plan.currency.as_deref().unwrap_or("");
    let mut terms = match plan.model {
        PlanModel::Free => "no charge".to_string(),
        PlanModel::OneTime => format!("{} once", money(plan.price_minor, currency)),
        PlanModel::Subscription | PlanModel::Usage => {
            let mut parts = Vec::new();
            if plan.price_minor > 0 || plan.model == PlanModel::Subscription {
                let every = plan.interval.map_or("month", |i| i.as_str());
                parts.push(format!("{} a {every}", money(plan.price_minor, currency)));
            }
            if let Some(usage) = &plan.usage {
                let mut usage_terms = format!("{} per {}", money(usage.unit_minor, currency), usage.meter);
                if usage.included_units > 0 {
                    usage_terms.push_str(&format!(" beyond {} included", usage.included_units));
                }
                if let Some(cap) = usage.cap_minor {
                    usage_terms.push_str(&format!(", at most {} a period", money(cap, currency)));
                }
                parts.push(usage_terms);
            }
            parts.join(" plus ")
        }
    };
    if plan.trial_days > 0 {
        terms.push_str(&format!(", {}-day trial", plan.trial_days));
    }
    terms
}

/// A card's price: `Free`, `from 9.00 USD a month`, `from 49.00 EUR once · free plan`.
pub fn price_label(listing: &Listing) -> String {
    let free = listing.pricing_models.iter().any(|m| m == PlanModel::Free.as_str());
    match &listing.price_from {
        None => "Free".to_string(),
        Some(price) if free => format!("Free plan; paid from {}", price.terms()),
        Some(price) => format!("From {}", price.terms()),
    }
}

/// When a plan charges, said on the install form before anyone installs: `9.00 USD is
/// charged now, then every month`, `nothing for 14 days, then 9.00 USD every month`.
pub fn charge_notice(plan: &Plan) -> String {
    let currency = plan.currency.as_deref().unwrap_or("");
    let every = plan.interval.map_or("month", |i| i.as_str());
    let usage = plan.usage.as_ref().map(|u| format!("usage ({}) is charged at the end of each {every}", u.meter));
    let base = match plan.model {
        PlanModel::Free => return "Nothing is charged.".to_string(),
        PlanModel::OneTime => Some(format!("{} is charged now, once", money(plan.price_minor, currency))),
        PlanModel::Subscription | PlanModel::Usage if plan.price_minor > 0 => {
            let price = money(plan.price_minor, currency);
            Some(if plan.trial_days > 0 {
                format!("nothing for {} days, then {price} every {every}, in advance", plan.trial_days)
            } else {
                format!("{price} is charged now, then every {every}, in advance")
            })
        }
        PlanModel::Subscription | PlanModel::Usage => None,
    };
    let mut notice = [base, usage].into_iter().flatten().collect::<Vec<_>>().join("; ");
    if let Some(first) = notice.get(..1) {
        notice = format!("{}{}.", first.to_uppercase(), &notice[1..]);
    }
    notice
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
    let sort = match sort_text.as_deref() {
        None => None,
        Some(name) => match SORTS.iter().find(|(value, _, _)| *value == name) {
            Some((_, sort, _)) => Some(*sort),
            None => {
                return Err(PageError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("sort `{name}` is not relevance, popular, top-rated, newest, updated or name"),
                ));
            }
        },
    };
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
    let shelf = |sort, per_page| SearchQuery { sort: Some(sort), per_page: Some(per_page), ..SearchQuery::default() };
    let (featured, updated, top_rated) = if front {
        let featured = SearchQuery { featured: Some(true), per_page: Some(12), ..SearchQuery::default() };
        let top: Vec<Listing> = catalog::search(db, &shelf(Sort::TopRated, 6))
            .await?
            .items
            .into_iter()
            .filter(|l| l.rating_count > 0)
            .collect();
        (catalog::search(db, &featured).await?.items, catalog::search(db, &shelf(Sort::Updated, 6)).await?.items, top)
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let results = catalog::search(db, &query).await?;
    let facets = catalog::facets(db, &query).await?;
    let mut pairs = Vec::new();
    for (key, value) in
        [("q", &query.q), ("category", &query.category), ("pricing", &query.pricing), ("sort", &sort_text)]
    {
        if let Some(value) = value {
            pairs.push(format!("{key}={}", urlencode(value)));
        }
    }
    let counted = |value: &'static str, count: Option<&i64>| match count {
        Some(count) => format!("{value} ({count})"),
        None => value.to_string(),
    };
    let current_category = query.category.as_deref().unwrap_or_default();
    let current_pricing = query.pricing.as_deref().unwrap_or_default();
    let title = match category {
        Some(category) => format!("Catalog: {category}"),
        None => "Catalog".to_string(),
    };
    let page_view = CatalogPage {
        chrome: Chrome::new(title, signed.map(|s| &s.0)),
        q: query.q.clone().unwrap_or_default(),
        filtered,
        category_choices: std::iter::once(Choice::new("", "any".into(), current_category))
            .chain(
                nexus_registry::manifest::CATEGORIES
                    .iter()
                    .map(|c| Choice::new(c, counted(c, facets.categories.get(*c)), current_category)),
            )
            .collect(),
        pricing_choices: std::iter::once(Choice::new("", "any".into(), current_pricing))
            .chain(
                ["free", "one-time", "subscription", "usage"]
                    .into_iter()
                    .map(|m| Choice::new(m, counted(m, facets.pricing.get(m)), current_pricing)),
            )
            .collect(),
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
        query: pairs.join("&"),
    };
    render(&page_view)
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

#[derive(Template)]
#[template(path = "install.html")]
struct InstallPage {
    chrome: Chrome,
    consent: Consent,
    plans: Vec<(Plan, String)>,
    problem: Option<String>,
    chosen_plan: String,
    config: String,
    /// Declared settings as typed, by name.
    typed: BTreeMap<String, String>,
}

impl InstallPage {
    fn typed_value(&self, name: &str) -> &str {
        self.typed.get(name).map_or("", String::as_str)
    }
}

async fn install_page(
    state: &AppState,
    signed: &Signed,
    publisher: &str,
    name: &str,
    problem: Option<String>,
    fields: &Fields,
) -> Result<Response, PageError> {
    let id = plugin_id(publisher, name)?;
    // The install flow is the tenant's; others are told so before they fill anything in.
    signed.0.caller.tenant(crate::accounts::TenantScope::Installs)?;
    if !catalog::is_installable(&state.market.db, &id).await? {
        return Err(crate::MarketError::NotFound(format!("plugin {id}")).into());
    }
    let consent = installs::preview(&state.market, &id.to_string(), None).await?;
    let plans: Vec<(Plan, String)> = plans::offered(&state.market, &id)
        .await?
        .into_iter()
        .map(|p| {
            let terms = plan_terms(&p);
            (p, terms)
        })
        .collect();
    let chosen_plan =
        fields.text("plan").map(String::from).or_else(|| plans.first().map(|(p, _)| p.key.clone())).unwrap_or_default();
    let page = InstallPage {
        chrome: Chrome::new(format!("Install {id}"), Some(&signed.0)),
        consent,
        plans,
        problem,
        chosen_plan,
        config: fields.get("config").unwrap_or_default().to_string(),
        // What was typed into the declared settings comes back (secrets never do).
        typed: fields
            .0
            .iter()
            .filter_map(|(key, value)| key.strip_prefix("setting:").map(|name| (name.to_string(), value.clone())))
            .collect(),
    };
    let status =
        if page.problem.is_some() { axum::http::StatusCode::UNPROCESSABLE_ENTITY } else { axum::http::StatusCode::OK };
    Ok((status, render(&page)?).into_response())
}

async fn install_form(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    install_page(&state, &signed, &publisher, &name, None, &Fields::default()).await
}

/// `name = value` lines; blank lines and `#` comments are skipped.
pub fn config_lines(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut config = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("config line {} is not `name = value`", number + 1));
        };
        config.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(config)
}

async fn install(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let id = plugin_id(&publisher, &name)?;
    let mut config = match config_lines(fields.get("config").unwrap_or_default()) {
        Ok(config) => config,
        Err(problem) => return install_page(&state, &signed, &publisher, &name, Some(problem), &fields).await,
    };
    let mut secrets = BTreeMap::new();
    // The settings and secrets the plugin declares, each in a field of its own name.
    for (key, value) in &fields.0 {
        if value.trim().is_empty() {
            continue;
        }
        if let Some(setting) = key.strip_prefix("setting:") {
            config.insert(setting.to_string(), value.trim().to_string());
        } else if let Some(secret) = key.strip_prefix("secret:") {
            secrets.insert(secret.to_string(), value.clone());
        }
    }
    for index in 1..=3 {
        if let Some(secret) = fields.text(&format!("secret_name_{index}")) {
            secrets.insert(
                secret.to_string(),
                fields.get(&format!("secret_value_{index}")).unwrap_or_default().to_string(),
            );
        }
    }
    let consent = GrantConsent {
        capabilities: fields.all("capability").filter_map(|c| c.parse().ok()).collect::<BTreeSet<_>>(),
        hosts: fields.all("host").map(String::from).collect(),
    };
    let request = InstallRequest {
        plugin: id.to_string(),
        requirement: None,
        consent: Some(consent),
        plan: fields.text("plan").map(String::from),
        config,
        secrets,
    };
    match installs::create(&state.market, &signed.0.caller, request).await {
        Ok(created) => {
            state.market.warm_in_background(&created.plugin, &created.version);
            Ok(Redirect::to(&format!("/console/installs/{}?installed=1", created.id)).into_response())
        }
        Err(
            error @ (crate::MarketError::ConsentRequired { .. }
            | crate::MarketError::Invalid { .. }
            | crate::MarketError::Conflict { .. }),
        ) => install_page(&state, &signed, &publisher, &name, Some(error.to_string()), &fields).await,
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_are_name_equals_value() {
        let config = config_lines("# comment\n channel = #ops \n\nlevel=warn").unwrap();
        assert_eq!(config.get("channel").map(String::as_str), Some("#ops"));
        assert_eq!(config.get("level").map(String::as_str), Some("warn"));
        assert_eq!(config_lines("a = 1\nnonsense").unwrap_err(), "config line 2 is not `name = value`");
    }

    #[test]
    fn the_install_form_says_what_is_charged_and_when() {
        let plan = |model, price_minor, trial_days, usage: Option<&str>| Plan {
            id: "pln_1".into(),
            plugin: "acme/a".into(),
            key: "k".into(),
            revision: 1,
            name: "K".into(),
            model,
            currency: Some("USD".into()),
            price_minor,
            interval: None,
            trial_days,
            usage: usage.map(|meter| plans::UsageTerms {
                meter: meter.into(),
                unit_minor: 2,
                included_units: 0,
                cap_minor: None,
            }),
            created_at: 0,
            retired_at: None,
        };
        assert_eq!(charge_notice(&plan(PlanModel::Free, 0, 0, None)), "Nothing is charged.");
        assert_eq!(charge_notice(&plan(PlanModel::OneTime, 4900, 0, None)), "49.00 USD is charged now, once.");
        assert_eq!(
            charge_notice(&plan(PlanModel::Subscription, 900, 0, None)),
            "9.00 USD is charged now, then every month, in advance."
        );
        assert_eq!(
            charge_notice(&plan(PlanModel::Subscription, 900, 14, Some("emails"))),
            "Nothing for 14 days, then 9.00 USD every month, in advance; usage (emails) is charged at the end of each month."
        );
        assert_eq!(
            charge_notice(&plan(PlanModel::Usage, 0, 0, Some("emails"))),
            "Usage (emails) is charged at the end of each month."
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("crm & sales/é"), "crm%20%26%20sales%2F%C3%A9");
    }
}
