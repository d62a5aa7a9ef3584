//! A publisher's public page: its name, verified domain and partner tier (the badges its
//! listings carry), the website and support contact it gives, a Markdown "about", its
//! listed plugins, their installs and their average rating. Anyone may read it; the
//! publisher (or an operator) edits it, audited.

use nexus_registry::db::now_ms;
use nexus_registry::manifest::Manifest;
use nexus_registry::{Db, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::catalog::{self, Listing};
use crate::error::MarketError;

/// "About" texts are a few paragraphs.
pub const MAX_ABOUT_CHARS: usize = 4_000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublisherProfile {
    pub publisher: String,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier_badge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// An http(s) URL or a `mailto:` address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support: Option<String>,
    /// Markdown, and rendered to inert HTML.
    pub about: String,
    pub about_html: String,
    /// Its plugins in the catalog now, most installed first.
    pub listings: Vec<Listing>,
    /// Live installs over those listings.
    pub install_count: i64,
    /// Visible ratings over those listings.
    pub rating_count: i64,
    pub rating_average: Option<f64>,
    pub member_since: i64,
}

/// A publisher's edit of its profile; every field is replaced (absent or null clears it).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileEdit {
    pub website: Option<String>,
    pub support: Option<String>,
    #[serde(default)]
    pub about: String,
}

/// The profile of `publisher`; not found for a publisher that does not exist.
pub async fn get(db: &Db, publisher: &str) -> Result<PublisherProfile, MarketError> {
    let row: Option<(String, i64)> = sqlx::query_as("SELECT display_name, created_at FROM publishers WHERE name = $1")
        .bind(publisher)
        .fetch_optional(&db.pool)
        .await?;
    let (display_name, member_since) = row.ok_or_else(|| MarketError::NotFound(format!("publisher {publisher}")))?;
    let profile: Option<(Option<String>, Option<String>, String)> =
        sqlx::query_as("SELECT website, support, about FROM publisher_profiles WHERE publisher = $1")
            .bind(publisher)
            .fetch_optional(&db.pool)
            .await?;
    let (website, support, about) = profile.unwrap_or_default();
    let verified_domain: Option<String> =
        sqlx::query_scalar("SELECT domain FROM publisher_domains WHERE publisher = $1 AND verified_at IS NOT NULL")
            .bind(publisher)
            .fetch_optional(&db.pool)
            .await?;
    let tier_badge: Option<String> = sqlx::query_scalar(
        "SELECT t.badge FROM partner_tier_assignments a JOIN partner_tiers t ON t.key = a.tier_key \
         WHERE a.publisher = $1",
    )
    .bind(publisher)
    .fetch_optional(&db.pool)
    .await?;
    let mut listings: Vec<Listing> = catalog::of_publisher(db, publisher)
        .await?
        .into_iter()
        .filter(|listing| listing.delisted.is_none() && !listing.latest_version.is_empty())
        .collect();
    listings.sort_by(|a, b| b.install_count.cmp(&a.install_count).then_with(|| a.id.cmp(&b.id)));
    let install_count = listings.iter().map(|l| l.install_count).sum();
    let (rating_count, rating_total): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(rating_count), 0) AS BIGINT), CAST(COALESCE(SUM(rating_total), 0) AS BIGINT) \
         FROM listings \
         WHERE publisher = $1 AND delisted_at IS NULL AND latest_version <> ''",
    )
    .bind(publisher)
    .fetch_one(&db.pool)
    .await?;
    Ok(PublisherProfile {
        publisher: publisher.to_string(),
        display_name,
        verified_domain,
        tier_badge,
        website,
        support,
        about_html: crate::catalog::listing_text::markdown_html(&about),
        about,
        listings,
        install_count,
        rating_count,
        rating_average: crate::reviews::average(rating_total, rating_count),
        member_since,
    })
}

/// Replaces `publisher`'s profile, audited with the fields set.
pub async fn set(
    db: &Db,
    caller: &Caller,
    publisher: &str,
    edit: &ProfileEdit,
) -> Result<PublisherProfile, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    let blank = |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from);
    let (website, support) = (blank(&edit.website), blank(&edit.support));
    let refuse =
        |e: nexus_registry::manifest::ManifestError| MarketError::invalid(ErrorCode::InvalidRequest, e.to_string());
    Manifest::check_link("website", website.as_deref(), false).map_err(refuse)?;
    Manifest::check_link("support", support.as_deref(), true).map_err(refuse)?;
    MarketError::check_text(ErrorCode::InvalidRequest, "about", &edit.about, MAX_ABOUT_CHARS)?;
    let mut tx = db.write_tx().await?;
    let exists: Option<String> = sqlx::query_scalar("SELECT name FROM publishers WHERE name = $1")
        .bind(publisher)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(MarketError::NotFound(format!("publisher {publisher}")));
    }
    sqlx::query(
        "INSERT INTO publisher_profiles (publisher, website, support, about, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (publisher) DO UPDATE SET website = excluded.website, support = excluded.support, \
         about = excluded.about, updated_at = excluded.updated_at",
    )
    .bind(publisher)
    .bind(&website)
    .bind(&support)
    .bind(&edit.about)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let detail = json!({ "website": website, "support": support, "about_chars": edit.about.chars().count() });
    audit::record(&mut *tx, &caller.actor(), "publisher.profile_edited", publisher, detail).await?;
    tx.commit().await?;
    get(db, publisher).await
}
