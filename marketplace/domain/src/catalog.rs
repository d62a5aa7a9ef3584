//! The catalog tenants browse: one listing per plugin, rebuilt from its newest installable
//! version whenever a version is published or yanked; search with filters, facet counts,
//! sorting and pages; featuring and delisting by operators.
//!
//! Search matches words: each listing's words (`search_words`: the id's parts, summary,
//! description and categories, split at anything not a letter or digit) are indexed by FTS5
//! on SQLite and by a `simple` tsvector with a GIN index on PostgreSQL, and every word of
//! the query must begin one of them, so both backends find the same listings. `relevance`
//! (the default with words) ranks by where the words occur (name, then summary, then
//! elsewhere) and then by popularity (installs and rating, [`POPULARITY`]), in integers
//! both backends compute alike; ARCHITECTURE.md gives the formula.

use nexus_host::Capability;
use nexus_registry::db::now_ms;
use nexus_registry::manifest::{CapabilityRequest, Links, PricingPlan};
use nexus_registry::{Backend, Db, ErrorCode, PluginId, Registry, VersionRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::billing::plans::{self, PlanModel, PriceFrom};
use nexus_registry::text::{MAX_QUERY_CHARS, MAX_REASON_CHARS};

use crate::error::{MarketError, Page};

pub const MAX_PER_PAGE: u32 = 100;
const MAX_TERMS: usize = 8;

/// A listing as search returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Listing {
    pub id: String,
    pub publisher: String,
    pub name: String,
    pub summary: String,
    pub categories: Vec<String>,
    pub capabilities: Vec<String>,
    /// The models of the plans offered now: `free`, `one-time`, `subscription`, `usage`.
    pub pricing_models: Vec<String>,
    /// The lowest paid price offered; `None` when every plan is free.
    pub price_from: Option<PriceFrom>,
    pub latest_version: String,
    pub install_count: i64,
    /// How many visible reviews rate it.
    pub rating_count: i64,
    /// Their mean to one decimal; absent without reviews.
    pub rating_average: Option<f64>,
    pub featured: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub featured_note: Option<String>,
    /// The publisher's verified domain (`publisher_domains`), its badge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_domain: Option<String>,
    /// The badge of the publisher's partner tier (`partner_tiers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier_badge: Option<String>,
    /// The listing's icon on this server, `/media/<sha256 hex>` (`media`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Shown to the publisher and operators only; a delisted plugin is not in search.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delisted: Option<Delisting>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Delisting {
    pub at: i64,
    pub reason: String,
}

/// A listing with everything a tenant needs to decide: the description, each capability
/// and host with its reason, the pricing plans and the installable versions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ListingDetail {
    #[serde(flatten)]
    pub listing: Listing,
    /// Markdown, as published (or as the publisher edited it since).
    pub description: String,
    /// The description rendered to inert HTML (`listing_text::markdown_html`).
    pub description_html: String,
    pub links: Links,
    /// When the publisher last edited the text between versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_edited_at: Option<i64>,
    /// Visible reviews' ratings and how many gave each number of stars.
    pub rating: crate::reviews::RatingSummary,
    pub license: String,
    pub homepage: Option<String>,
    pub repository: Option<String>,
    pub event_types: Vec<String>,
    #[schema(value_type = Object)]
    pub requested_capabilities: std::collections::BTreeMap<Capability, CapabilityRequest>,
    /// The manifest's `[[pricing]]` as published (what seeded the plans).
    #[schema(value_type = Vec<Object>)]
    pub pricing: Vec<PricingPlan>,
    /// The plans a new install may choose now: what the listing sells.
    pub plans: Vec<plans::Plan>,
    pub versions: Vec<VersionSummary>,
    /// The icon with its size, and the screenshots in order with their captions (`media`).
    pub icon: Option<crate::media::Image>,
    pub screenshots: Vec<crate::media::Image>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionSummary {
    pub version: String,
    pub published_at: i64,
    pub contract: String,
    pub signed: bool,
    /// What changed in this version (Markdown), and rendered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changelog: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changelog_html: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Sort {
    /// Most installs first (the default without a query).
    #[default]
    Popular,
    /// Most recently listed first.
    Newest,
    /// Best match first (the default with a query): how well the words match, then
    /// installs and rating; without words, installs and rating.
    Relevance,
    /// Most recently published or updated first.
    Updated,
    /// Highest average rating first.
    TopRated,
    /// By id.
    Name,
}

/// Search parameters; every field is optional.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words to find; each must occur. At most 200 characters.
    #[param(max_length = 200)]
    pub q: Option<String>,
    pub category: Option<String>,
    /// A plan model offered: `free`, `one-time`, `subscription` or `usage` (the manifest's
    /// older names `flat` and `per-unit` are read as `subscription` and `usage`).
    pub pricing: Option<String>,
    /// A requested capability: `log`, `config`, `secrets`, `kv`, `http`, `usage`.
    pub capability: Option<String>,
    pub featured: Option<bool>,
    pub sort: Option<Sort>,
    /// 1-based.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

fn set_text(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let joined: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    format!(",{},", joined.join(","))
}

fn set_items(text: &str) -> Vec<String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// The pricing filter's values: the plan models, and the manifest's older names for two.
const PRICING_FILTER: [(&str, PlanModel); 6] = [
    ("free", PlanModel::Free),
    ("one-time", PlanModel::OneTime),
    ("subscription", PlanModel::Subscription),
    ("usage", PlanModel::Usage),
    ("flat", PlanModel::Subscription),
    ("per-unit", PlanModel::Usage),
];

/// Sets a listing's pricing (the models offered and the lowest paid price) from the plans
/// it offers now. Called in the transaction of every plan change and listing refresh, so a
/// card never shows a price the plans no longer ask.
pub async fn reprice(conn: &mut sqlx::AnyConnection, plugin: &str) -> Result<(), MarketError> {
    // Lock the listing row before reading the plans: two plan changes committing at once
    // then reprice one after the other, the second reading the first's plan (on PostgreSQL
    // a read before the lock would miss it, and the later write would drop its price).
    sqlx::query("UPDATE listings SET pricing_models = pricing_models WHERE plugin_id = $1")
        .bind(plugin)
        .execute(&mut *conn)
        .await?;
    let offered = plans::offered_in(conn, plugin).await?;
    let mut models: Vec<&str> = Vec::new();
    for plan in &offered {
        if !models.contains(&plan.model.as_str()) {
            models.push(plan.model.as_str());
        }
    }
    let price_from = plans::price_from(&offered)
        .map(|p| serde_json::to_string(&p))
        .transpose()
        .map_err(|e| crate::error::storage(format!("price of {plugin}: {e}")))?;
    sqlx::query("UPDATE listings SET pricing_models = $1, price_from = $2 WHERE plugin_id = $3")
        .bind(set_text(models))
        .bind(price_from)
        .bind(plugin)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Reprices every listing: at start, for listings priced before plans set the catalog's
/// prices (a few hundred plugins at most; one transaction).
pub async fn reprice_all(db: &Db) -> Result<(), MarketError> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT plugin_id FROM listings WHERE pricing_models = ''").fetch_all(&db.pool).await?;
    if ids.is_empty() {
        return Ok(());
    }
    let mut tx = db.write_tx().await?;
    for id in ids {
        reprice(&mut tx, &id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The newest version a tenant would get with no requirement: not yanked, not a pre-release.
pub fn newest_installable(versions: &[VersionRecord]) -> Option<&VersionRecord> {
    versions.iter().filter(|v| v.yank.is_none() && v.version.pre.is_empty()).max_by(|a, b| a.version.cmp(&b.version))
}

/// The words search matches: the id's parts, the summary, the description and the
/// categories (`categories` as stored, `,a,b,`), lowercase, split at anything that is not a
/// letter or digit. Both backends index exactly these words.
pub(crate) fn search_words(id: &PluginId, summary: &str, description: &str, categories: &str) -> String {
    let text = format!("{} {} {} {} {}", id.publisher, id.name, summary, description, set_items(categories).join(" "));
    words(&text).join(" ")
}

/// Lowercase runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Indexes listings written before search had its own index (once, at start).
pub async fn index_all(db: &Db) -> Result<(), MarketError> {
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT plugin_id, summary, description, categories FROM listings WHERE search_words = ''")
            .fetch_all(&db.pool)
            .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = db.write_tx().await?;
    for (plugin, summary, description, categories) in rows {
        let id: PluginId = plugin.parse().map_err(|e| crate::error::storage(format!("listing {plugin}: {e}")))?;
        sqlx::query("UPDATE listings SET search_words = $1 WHERE plugin_id = $2")
            .bind(search_words(&id, &summary, &description, &categories))
            .bind(&plugin)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Rebuilds the listing of `id` from the registry. With no installable version left the
/// listing stays (installs and moderation keep their history) but leaves search.
pub async fn refresh(db: &Db, registry: &Registry, id: &PluginId) -> Result<(), MarketError> {
    let versions = registry.versions(id).await?;
    let now = now_ms();
    let Some(newest) = newest_installable(&versions) else {
        sqlx::query("UPDATE listings SET latest_version = '', updated_at = $1 WHERE plugin_id = $2")
            .bind(now)
            .bind(id.to_string())
            .execute(db.writer())
            .await?;
        return Ok(());
    };
    let manifest = &newest.manifest;
    let description = manifest.description.clone().unwrap_or_default();
    let categories = set_text(&manifest.categories);
    let search_words = search_words(id, &manifest.summary, &description, &categories);
    let created_at = versions.iter().map(|v| v.published_at).min().unwrap_or(now);
    // A publisher's edit of the text stays until a newer version brings its own.
    let kept = "listings.text_edited_at IS NOT NULL AND listings.latest_version = excluded.latest_version";
    let mut tx = db.write_tx().await?;
    sqlx::query(&format!(
        "INSERT INTO listings (plugin_id, publisher, name, summary, description, categories, capabilities, \
         pricing_models, latest_version, search_words, created_at, updated_at, links, search_text) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, ',,', $8, $9, $10, $11, $12, '') \
         ON CONFLICT (plugin_id) DO UPDATE SET summary = CASE WHEN {kept} THEN listings.summary ELSE excluded.summary END, \
         description = CASE WHEN {kept} THEN listings.description ELSE excluded.description END, \
         links = CASE WHEN {kept} THEN listings.links ELSE excluded.links END, \
         search_words = CASE WHEN {kept} THEN listings.search_words ELSE excluded.search_words END, \
         text_edited_at = CASE WHEN {kept} THEN listings.text_edited_at ELSE NULL END, \
         categories = excluded.categories, capabilities = excluded.capabilities, \
         latest_version = excluded.latest_version, updated_at = excluded.updated_at"
    ))
    .bind(id.to_string())
    .bind(id.publisher.as_str())
    .bind(id.name.as_str())
    .bind(&manifest.summary)
    .bind(&description)
    .bind(categories)
    .bind(set_text(manifest.capabilities.keys().map(|c| c.as_str())))
    .bind(newest.version.to_string())
    .bind(search_words)
    .bind(created_at)
    .bind(now)
    .bind(crate::listing_text::links_json(&manifest.links)?)
    .execute(&mut *tx)
    .await?;
    reprice(&mut tx, &id.to_string()).await?;
    tx.commit().await?;
    Ok(())
}

const COLUMNS: &str = "plugin_id, publisher, name, summary, categories, capabilities, pricing_models, price_from, \
                       latest_version, install_count, rating_count, rating_total, created_at, updated_at, featured_at, featured_note, \
                       delisted_at, delist_reason, (SELECT d.domain FROM publisher_domains d \
                       WHERE d.publisher = listings.publisher AND d.verified_at IS NOT NULL) AS verified_domain, \
                       (SELECT t.badge FROM partner_tier_assignments a JOIN partner_tiers t ON t.key = a.tier_key \
                       WHERE a.publisher = listings.publisher) AS tier_badge, \
                       (SELECT m.digest FROM listing_media m WHERE m.plugin_id = listings.plugin_id \
                       AND m.slot = 'icon') AS icon_digest";

/// A row of [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct ListingRow {
    plugin_id: String,
    publisher: String,
    name: String,
    summary: String,
    categories: String,
    capabilities: String,
    pricing_models: String,
    price_from: Option<String>,
    latest_version: String,
    install_count: i64,
    rating_count: i64,
    rating_total: i64,
    created_at: i64,
    updated_at: i64,
    featured_at: Option<i64>,
    featured_note: Option<String>,
    delisted_at: Option<i64>,
    delist_reason: Option<String>,
    verified_domain: Option<String>,
    tier_badge: Option<String>,
    icon_digest: Option<String>,
}

impl ListingRow {
    fn into_listing(self, show_delisting: bool) -> Result<Listing, MarketError> {
        let delisted = match (show_delisting, self.delisted_at) {
            (true, Some(at)) => Some(Delisting { at, reason: self.delist_reason.unwrap_or_default() }),
            _ => None,
        };
        Ok(Listing {
            id: self.plugin_id,
            publisher: self.publisher,
            name: self.name,
            summary: self.summary,
            categories: set_items(&self.categories),
            capabilities: set_items(&self.capabilities),
            pricing_models: set_items(&self.pricing_models),
            price_from: self
                .price_from
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|e| crate::error::storage(format!("stored price of a listing: {e}")))?,
            latest_version: self.latest_version,
            install_count: self.install_count,
            rating_count: self.rating_count,
            rating_average: crate::reviews::average(self.rating_total, self.rating_count),
            featured: self.featured_at.is_some(),
            featured_note: self.featured_note,
            verified_domain: self.verified_domain,
            tier_badge: self.tier_badge,
            icon_url: self.icon_digest.as_deref().map(crate::media::url_of),
            created_at: self.created_at,
            updated_at: self.updated_at,
            delisted,
        })
    }
}

/// The words of a query, as listings' words are made (at most [`MAX_TERMS`]).
fn terms(q: &str) -> Vec<String> {
    words(q).into_iter().take(MAX_TERMS).collect()
}

fn filter_value(field: &str, value: Option<&String>, allowed: &[&str]) -> Result<Option<String>, MarketError> {
    match value {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(format!(",{v},"))),
        Some(v) => Err(MarketError::invalid(
            ErrorCode::InvalidQuery,
            format!("unknown {field} `{v}`; expected one of: {}", allowed.join(", ")),
        )),
    }
}

/// How many listed plugins each category and plan model would find with the query's other
/// filters: a category's count keeps the pricing filter and drops the category filter, and
/// the other way round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Facets {
    pub categories: std::collections::BTreeMap<String, i64>,
    pub pricing: std::collections::BTreeMap<String, i64>,
}

/// A page of search results and the facet counts of the whole search.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    #[serde(flatten)]
    pub page: Page<Listing>,
    pub facets: Facets,
}

/// A query checked and turned into SQL conditions over `listings`.
struct Filter {
    terms: Vec<String>,
    /// `,category,` and `,model,` set members, as stored.
    category: Option<String>,
    pricing: Option<String>,
    capability: Option<String>,
    featured: Option<bool>,
}

impl Filter {
    fn of(query: &SearchQuery) -> Result<Self, MarketError> {
        let q = query.q.as_deref().unwrap_or_default();
        MarketError::check_text(ErrorCode::InvalidQuery, "q", q, MAX_QUERY_CHARS)?;
        let capabilities: Vec<&str> = Capability::ALL.iter().map(|c| c.as_str()).collect();
        let pricing_names: Vec<&str> = PRICING_FILTER.iter().map(|(name, _)| *name).collect();
        let pricing = filter_value("pricing", query.pricing.as_ref(), &pricing_names)?.map(|_| {
            let model =
                PRICING_FILTER.iter().find(|(name, _)| Some(*name) == query.pricing.as_deref()).map(|(_, m)| *m);
            format!(",{},", model.map_or("", PlanModel::as_str))
        });
        Ok(Self {
            terms: terms(q),
            category: filter_value("category", query.category.as_ref(), &nexus_registry::manifest::CATEGORIES)?,
            pricing,
            capability: filter_value("capability", query.capability.as_ref(), &capabilities)?,
            featured: query.featured,
        })
    }

    /// The WHERE clause and its binds (numbered from `$1`); `facet` leaves out the category
    /// and pricing filters, which facet counts apply themselves.
    fn sql(&self, backend: Backend, facet: bool) -> (String, Vec<String>) {
        let mut binds: Vec<String> = Vec::new();
        let mut sql = String::from("delisted_at IS NULL AND latest_version <> ''");
        if !self.terms.is_empty() {
            // Every word must begin a word of the listing.
            match backend {
                Backend::Sqlite => {
                    let words: Vec<String> = self.terms.iter().map(|w| format!("\"{w}\"*")).collect();
                    binds.push(words.join(" AND "));
                    sql.push_str(&format!(
                        " AND listings.rowid IN (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ${})",
                        binds.len()
                    ));
                }
                Backend::Postgres => {
                    let words: Vec<String> = self.terms.iter().map(|w| format!("{w}:*")).collect();
                    binds.push(words.join(" & "));
                    sql.push_str(&format!(" AND search_vector @@ to_tsquery('simple', ${})", binds.len()));
                }
            }
        }
        let sets = [
            ("categories", if facet { None } else { self.category.as_ref() }),
            ("pricing_models", if facet { None } else { self.pricing.as_ref() }),
            ("capabilities", self.capability.as_ref()),
        ];
        for (column, member) in sets {
            if let Some(member) = member {
                binds.push(format!("%{member}%"));
                sql.push_str(&format!(" AND {column} LIKE ${}", binds.len()));
            }
        }
        match self.featured {
            Some(true) => sql.push_str(" AND featured_at IS NOT NULL"),
            Some(false) => sql.push_str(" AND featured_at IS NULL"),
            None => {}
        }
        (sql, binds)
    }
}

/// Popularity as ranking weighs it (integers, so both backends order alike): installs in
/// steps of ten times (0, 1-9, 10-99, 100-999, 1000+ give 0 to 8), plus the average rating's
/// distance from 3 stars (-4 to +4) once three reviews rate it.
const POPULARITY: &str = "(CASE WHEN install_count >= 1000 THEN 8 WHEN install_count >= 100 THEN 6 \
                          WHEN install_count >= 10 THEN 4 WHEN install_count >= 1 THEN 2 ELSE 0 END \
                          + CASE WHEN rating_count >= 3 THEN rating_total * 2 / rating_count - 6 ELSE 0 END)";

/// Searches listed plugins.
pub async fn search(db: &Db, query: &SearchQuery) -> Result<Page<Listing>, MarketError> {
    let per_page = crate::error::per_page(query.per_page, 20)?;
    let page = query.page.unwrap_or(1).max(1);
    let filter = Filter::of(query)?;
    let (where_sql, mut binds) = filter.sql(db.backend, false);
    let total = {
        let count_sql = format!("SELECT COUNT(*) FROM listings WHERE {where_sql}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for value in &binds {
            count = count.bind(value.as_str());
        }
        count.fetch_one(&db.pool).await?
    };
    let terms = &filter.terms;
    let sort = query.sort.unwrap_or(if terms.is_empty() { Sort::Popular } else { Sort::Relevance });
    let order = match sort {
        Sort::Popular => "install_count DESC, plugin_id".to_string(),
        Sort::Newest => "created_at DESC, plugin_id".to_string(),
        Sort::Updated => "updated_at DESC, plugin_id".to_string(),
        Sort::TopRated => "CASE WHEN rating_count > 0 THEN rating_total * 1000 / rating_count ELSE 0 END DESC, \
                           rating_count DESC, install_count DESC, plugin_id"
            .to_string(),
        Sort::Name => "plugin_id".to_string(),
        Sort::Relevance if terms.is_empty() => format!("{POPULARITY} DESC, install_count DESC, plugin_id"),
        Sort::Relevance => {
            // Each word scores 40 in the name, 20 in the summary, 10 elsewhere; popularity
            // then moves a listing by less than one such step.
            let mut score = Vec::new();
            for term in terms {
                binds.push(format!("%{term}%"));
                let like = format!("${}", binds.len());
                score.push(format!(
                    "(CASE WHEN name LIKE {like} THEN 40 WHEN LOWER(summary) LIKE {like} THEN 20 ELSE 10 END)"
                ));
            }
            format!("({} + {POPULARITY}) DESC, install_count DESC, plugin_id", score.join(" + "))
        }
    };
    let limit = binds.len() + 1;
    let sql = format!(
        "SELECT {COLUMNS} FROM listings WHERE {where_sql} ORDER BY {order} LIMIT ${limit} OFFSET ${}",
        limit + 1
    );
    let mut select = sqlx::query_as::<_, ListingRow>(&sql);
    for value in &binds {
        select = select.bind(value.as_str());
    }
    let rows =
        select.bind(i64::from(per_page)).bind(i64::from(page - 1) * i64::from(per_page)).fetch_all(&db.pool).await?;
    let items = rows.into_iter().map(|row| row.into_listing(false)).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(items, page, per_page, total))
}

/// The facet counts of a search (its page and sort do not matter): the matching rows
/// grouped by their (categories, plan models) sets, a few hundred groups at most, then
/// counted here, each facet applying the other facet's filter.
pub async fn facets(db: &Db, query: &SearchQuery) -> Result<Facets, MarketError> {
    let filter = Filter::of(query)?;
    let (where_sql, binds) = filter.sql(db.backend, true);
    let sql = format!(
        "SELECT categories, pricing_models, COUNT(*) FROM listings WHERE {where_sql} \
         GROUP BY categories, pricing_models"
    );
    let mut select = sqlx::query_as::<_, (String, String, i64)>(&sql);
    for value in &binds {
        select = select.bind(value.as_str());
    }
    let groups = select.fetch_all(&db.pool).await?;
    let mut facets = Facets::default();
    for category in nexus_registry::manifest::CATEGORIES {
        facets.categories.insert(category.to_string(), 0);
    }
    for model in [PlanModel::Free, PlanModel::OneTime, PlanModel::Subscription, PlanModel::Usage] {
        facets.pricing.insert(model.as_str().to_string(), 0);
    }
    let has = |set: &str, member: &Option<String>| member.as_deref().is_none_or(|m| set.contains(m));
    for (categories, pricing, count) in &groups {
        if has(pricing, &filter.pricing) {
            for category in set_items(categories) {
                *facets.categories.entry(category).or_default() += count;
            }
        }
        if has(categories, &filter.category) {
            for model in set_items(pricing) {
                *facets.pricing.entry(model).or_default() += count;
            }
        }
    }
    Ok(facets)
}

async fn row(db: &Db, id: &PluginId) -> Result<ListingRow, MarketError> {
    sqlx::query_as::<_, ListingRow>(&format!("SELECT {COLUMNS} FROM listings WHERE plugin_id = $1"))
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("plugin {id}")))
}

/// One listing with its detail. A delisted listing is visible only to its publisher and
/// operators (who also see the reason); to everyone else it does not exist.
pub async fn detail(
    db: &Db,
    registry: &Registry,
    id: &PluginId,
    caller: Option<&Caller>,
) -> Result<ListingDetail, MarketError> {
    let row = row(db, id).await?;
    let privileged = caller.is_some_and(|c| c.may_act_for_publisher(id.publisher.as_str()).is_ok());
    let delisted = row.delisted_at.is_some();
    let listing = row.into_listing(privileged)?;
    if delisted && !privileged {
        return Err(MarketError::NotFound(format!("plugin {id}")));
    }
    let versions = registry.versions(id).await?;
    let media = crate::media::of_listing(db, id).await?;
    let newest = newest_installable(&versions)
        .or(versions.first())
        .ok_or_else(|| MarketError::NotFound(format!("an installable version of {id}")))?;
    let manifest = &newest.manifest;
    let offered = plans::offered_in(&mut *db.pool.acquire().await?, &id.to_string()).await?;
    let text = crate::listing_text::read(db, id).await?;
    Ok(ListingDetail {
        plans: offered,
        description_html: crate::listing_text::markdown_html(&text.description),
        description: text.description,
        links: text.links,
        text_edited_at: text.edited_at,
        rating: crate::reviews::summary(db, &id.to_string()).await?,
        license: manifest.license.clone(),
        homepage: manifest.homepage.clone(),
        repository: manifest.repository.clone(),
        event_types: manifest.event_types.clone(),
        requested_capabilities: manifest.capabilities.clone(),
        pricing: manifest.pricing.clone(),
        icon: media.icon,
        screenshots: media.screenshots,
        versions: versions
            .iter()
            .filter(|v| v.yank.is_none())
            .map(|v| VersionSummary {
                version: v.version.to_string(),
                published_at: v.published_at,
                contract: v.contract.clone(),
                signed: v.signature.is_some(),
                changelog: v.manifest.changelog.clone(),
                changelog_html: v.manifest.changelog.as_deref().map(crate::listing_text::markdown_html),
            })
            .collect(),
        listing,
    })
}

/// Every listing of `publisher`, delisted ones with their reasons.
pub async fn of_publisher(db: &Db, publisher: &str) -> Result<Vec<Listing>, MarketError> {
    let rows = sqlx::query_as::<_, ListingRow>(&format!(
        "SELECT {COLUMNS} FROM listings WHERE publisher = $1 ORDER BY plugin_id"
    ))
    .bind(publisher)
    .fetch_all(&db.pool)
    .await?;
    rows.into_iter().map(|row| row.into_listing(true)).collect()
}

/// Delisted listings, newest delisting first, for operators to review or relist.
pub async fn delisted(db: &Db, caller: &Caller) -> Result<Vec<Listing>, MarketError> {
    caller.require_operator()?;
    let rows = sqlx::query_as::<_, ListingRow>(&format!(
        "SELECT {COLUMNS} FROM listings WHERE delisted_at IS NOT NULL ORDER BY delisted_at DESC, plugin_id LIMIT 200"
    ))
    .fetch_all(&db.pool)
    .await?;
    rows.into_iter().map(|row| row.into_listing(true)).collect()
}

/// An operator's mark on a listing: its columns and its audit actions (set, cleared).
/// (Featuring is `co_marketing`'s placements.)
struct Mark {
    at_column: &'static str,
    text_column: &'static str,
    actions: (&'static str, &'static str),
    detail: &'static str,
}

const DELISTED: Mark = Mark {
    at_column: "delisted_at",
    text_column: "delist_reason",
    actions: ("listing.delisted", "listing.relisted"),
    detail: "reason",
};

/// One listing as its publisher and operators see it (with a delisting's reason).
pub async fn shown(db: &Db, id: &PluginId) -> Result<Listing, MarketError> {
    row(db, id).await?.into_listing(true)
}

/// Delists a listing with a reason its publisher sees, or lists it again (`reason` None).
/// Existing installs keep running; new installs are refused while delisted.
pub async fn delist(db: &Db, caller: &Caller, id: &PluginId, reason: Option<&str>) -> Result<Listing, MarketError> {
    caller.require_operator()?;
    if reason.is_some_and(|r| r.trim().is_empty()) {
        return Err(MarketError::invalid(
            ErrorCode::InvalidRequest,
            "a delisting needs a reason the publisher can act on",
        ));
    }
    set_mark(db, caller, id, &DELISTED, reason).await
}

/// Sets (`text` Some) or clears a mark, audited in the same transaction.
async fn set_mark(
    db: &Db,
    caller: &Caller,
    id: &PluginId,
    mark: &Mark,
    text: Option<&str>,
) -> Result<Listing, MarketError> {
    caller.require_operator()?;
    if let Some(text) = text {
        MarketError::check_text(ErrorCode::InvalidRequest, "reason", text, MAX_REASON_CHARS)?;
    }
    let mut tx = db.write_tx().await?;
    let update = format!("UPDATE listings SET {} = $1, {} = $2 WHERE plugin_id = $3", mark.at_column, mark.text_column);
    let updated =
        sqlx::query(&update).bind(text.map(|_| now_ms())).bind(text).bind(id.to_string()).execute(&mut *tx).await?;
    if updated.rows_affected() == 0 {
        return Err(MarketError::NotFound(format!("plugin {id}")));
    }
    let action = if text.is_some() { mark.actions.0 } else { mark.actions.1 };
    audit::record(&mut *tx, &caller.actor(), action, &id.to_string(), json!({ mark.detail: text })).await?;
    if let Some(reason) = text.filter(|_| mark.at_column == DELISTED.at_column) {
        crate::webhooks::plugin_delisted(&mut tx, now_ms(), &id.to_string(), reason).await?;
    }
    tx.commit().await?;
    row(db, id).await?.into_listing(true)
}

/// Whether new installs of `id` are allowed: not delisted. A plugin without a listing row
/// (its refresh failed) is installable; the registry still decides whether it exists.
/// Every delisted plugin with when and why, for telling the tenants who have one installed
/// (their install pages); not a listing of the catalog, so no role is needed.
pub async fn delistings(db: &Db) -> Result<std::collections::BTreeMap<String, Delisting>, MarketError> {
    let rows = sqlx::query_as::<_, (String, i64, Option<String>)>(
        "SELECT plugin_id, delisted_at, delist_reason FROM listings WHERE delisted_at IS NOT NULL",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows.into_iter().map(|(id, at, reason)| (id, Delisting { at, reason: reason.unwrap_or_default() })).collect())
}

pub async fn is_installable(db: &Db, id: &PluginId) -> Result<bool, MarketError> {
    let delisted: Option<Option<i64>> = sqlx::query_scalar("SELECT delisted_at FROM listings WHERE plugin_id = $1")
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?;
    Ok(delisted.flatten().is_none())
}

/// Moves a listing's install count by `delta` inside the install's own transaction.
pub async fn count_install<'e, E>(executor: E, id: &str, delta: i64) -> Result<(), MarketError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("UPDATE listings SET install_count = install_count + $1 WHERE plugin_id = $2")
        .bind(delta)
        .bind(id)
        .execute(executor)
        .await?;
    Ok(())
}
