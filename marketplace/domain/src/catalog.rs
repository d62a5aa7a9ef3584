//! The catalog tenants browse: one listing per plugin, rebuilt from its newest installable
//! version whenever a version is published or yanked; search with filters, facet counts,
//! sorting and pages; featuring and delisting by operators.
//!
//! Search matches words: each listing's words (`search_words`: the id's parts, summary,
//! description and categories, split at anything not a letter or digit) are indexed by FTS5
//! on SQLite and by a `simple` tsvector with a GIN index on PostgreSQL, and every word of
//! the query must begin one of them, so both backends find the same listings. `relevance`
//! (the default with words) ranks by where the words occur (name, then summary, then
//! elsewhere) and then by popularity (installs and rating, `search::POPULARITY`), in integers
//! both backends compute alike; ARCHITECTURE.md gives the formula.

pub mod listing_text;
mod moderation;
mod refresh;
mod search;

use nexus_host::Capability;
use nexus_registry::manifest::{CapabilityRequest, Links, PricingPlan};
use nexus_registry::{Db, PluginId, Registry, VersionRecord};
use serde::Serialize;

pub use moderation::{delist, delisted, delistings, is_installable};
pub(crate) use refresh::search_words;
pub use refresh::{index_all, refresh, reprice, reprice_all};
pub use search::{Facets, SearchQuery, SearchResults, Sort, facets, search};

use crate::accounts::Caller;
use crate::error::MarketError;
use crate::plans::{self, PriceFrom};

pub const MAX_PER_PAGE: u32 = 100;

/// A listing as search returns it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Listing {
    #[schema(value_type = String)]
    pub id: PluginId,
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

fn set_text(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let joined: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    format!(",{},", joined.join(","))
}

fn set_items(text: &str) -> Vec<String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// The newest version a tenant would get with no requirement: not yanked, not a pre-release.
pub fn newest_installable(versions: &[VersionRecord]) -> Option<&VersionRecord> {
    versions.iter().filter(|v| v.yank.is_none() && v.version.pre.is_empty()).max_by(|a, b| a.version.cmp(&b.version))
}

/// Lowercase runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
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
            id: self.plugin_id.parse().map_err(|e| crate::error::storage(format!("stored plugin id: {e}")))?,
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

async fn row(db: &Db, id: &PluginId) -> Result<ListingRow, MarketError> {
    sqlx::query_as::<_, ListingRow>(&format!("SELECT {COLUMNS} FROM listings WHERE plugin_id = $1"))
        .bind(id.to_string())
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("plugin {id}")))
}

/// One listing as its publisher and operators see it (with a delisting's reason).
pub async fn shown(db: &Db, id: &PluginId) -> Result<Listing, MarketError> {
    row(db, id).await?.into_listing(true)
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
    let text = listing_text::read(db, id).await?;
    Ok(ListingDetail {
        plans: offered,
        description_html: listing_text::markdown_html(&text.description),
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
                changelog_html: v.manifest.changelog.as_deref().map(listing_text::markdown_html),
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
