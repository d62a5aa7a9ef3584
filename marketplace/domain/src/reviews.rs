//! Ratings and reviews of plugins.
//!
//! - **Who may review**: a member of a tenant organization that has had the plugin installed
//!   for at least a day and has at least one applied (`ok`) invocation of it; one review per
//!   organization per plugin, which its members edit or delete. It records the version the
//!   organization runs.
//! - **Replies**: the plugin's publisher replies once per review and may edit or remove it.
//! - **Moderation**: operators hide a review with a reason (audited); its authors still see it
//!   and why, nobody else does, and it leaves the listing's figures until shown again.
//! - **Helpful marks**: one per tenant organization per review, never on its own review.
//! - **Figures**: the listing's `rating_count` and `rating_total` move in the transaction of
//!   every change, so cards and ranking never read the reviews; the distribution is read
//!   from the reviews of the one listing shown.
//! - **Floods**: each organization writes at most [`REVIEW_LIMIT`] reviews or edits an hour,
//!   each publisher [`REPLY_LIMIT`] replies, each organization [`VOTE_LIMIT`] marks.
//!
//! Text is bounded and stored as typed; every page escapes it (askama), and the API returns
//! it as JSON strings.

mod eligibility;
mod helpful;
mod moderation;
mod read;
mod reply;
mod write;

use std::time::Duration;

use nexus_registry::{Db, ErrorCode};
use serde::{Deserialize, Serialize};

pub use eligibility::why_not;
pub use helpful::mark_helpful;
pub use moderation::hide;
pub use read::{list, mine, summary};
pub use reply::reply;
pub use write::{delete_mine, write};

use crate::error::MarketError;
use crate::write_limits::Limit;

pub const MAX_TITLE_CHARS: usize = 100;
pub const MAX_BODY_CHARS: usize = 4_000;
pub const MAX_REPLY_CHARS: usize = 2_000;
/// How long an organization must have had the plugin installed before reviewing it.
pub const MIN_INSTALLED_MS: i64 = 24 * 60 * 60 * 1000;
pub const REVIEW_LIMIT: Limit = Limit { writes: 20, window: Duration::from_secs(3600) };
pub const REPLY_LIMIT: Limit = Limit { writes: 60, window: Duration::from_secs(3600) };
pub const VOTE_LIMIT: Limit = Limit { writes: 200, window: Duration::from_secs(3600) };

/// A review as shown.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Review {
    #[schema(value_type = String)]
    pub id: crate::ids::ReviewId,
    pub plugin: String,
    /// The reviewing organization's name.
    pub organization: String,
    /// Who wrote it last: the person's name, or the organization's for an API token.
    pub author_name: String,
    /// 1 to 5.
    pub rating: i64,
    pub title: String,
    pub body: String,
    /// The version the organization ran when it wrote or last edited the review.
    pub version: String,
    /// How many organizations marked it helpful.
    pub helpful: i64,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    /// Shown only to the reviewing organization and operators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Hidden>,
}

/// The publisher's reply.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Reply {
    pub body: String,
    pub at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
}

/// Why an operator hid a review.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Hidden {
    pub at: i64,
    pub reason: String,
}

/// A listing's ratings: visible reviews only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RatingSummary {
    pub count: i64,
    /// The mean rating to one decimal; absent without ratings.
    pub average: Option<f64>,
    /// How many reviews gave 1, 2, 3, 4 and 5 stars (index 0 is one star).
    pub by_stars: Vec<i64>,
}

/// The average of `count` ratings summing to `total`, to one decimal.
pub fn average(total: i64, count: i64) -> Option<f64> {
    (count > 0).then(|| ((total as f64 / count as f64) * 10.0).round() / 10.0)
}

/// What a tenant writes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    /// 1 to 5 stars.
    pub rating: i64,
    /// One line, 1 to 100 characters.
    pub title: String,
    /// Up to 4,000 characters; may be empty.
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewSort {
    #[default]
    Newest,
    /// Most marked helpful first.
    Helpful,
    /// Highest rating first.
    RatingHigh,
    /// Lowest rating first.
    RatingLow,
}

impl ReviewSort {
    pub const ALL: [(Self, &'static str); 4] = [
        (Self::Newest, "newest"),
        (Self::Helpful, "helpful"),
        (Self::RatingHigh, "rating-high"),
        (Self::RatingLow, "rating-low"),
    ];

    fn order(self) -> &'static str {
        match self {
            Self::Newest => "r.created_at DESC, r.id",
            Self::Helpful => "r.helpful DESC, r.created_at DESC, r.id",
            Self::RatingHigh => "r.rating DESC, r.created_at DESC, r.id",
            Self::RatingLow => "r.rating ASC, r.created_at DESC, r.id",
        }
    }
}

/// Which reviews of a plugin to list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    pub sort: Option<ReviewSort>,
    /// Only reviews with this many stars (1 to 5).
    pub rating: Option<i64>,
    /// 1-based.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

const COLUMNS: &str = "r.id, r.plugin_id, r.tenant_id, COALESCE(t.display_name, r.tenant_id) AS organization, \
                       r.author_name, r.rating, r.title, r.body, r.version, r.helpful, r.created_at, r.updated_at, \
                       r.reply, r.replied_at, r.reply_edited_at, r.hidden_at, r.hidden_reason";
const FROM: &str = "reviews r LEFT JOIN tenants t ON t.id = r.tenant_id";

/// A row of [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct ReviewRow {
    id: crate::ids::ReviewId,
    plugin_id: String,
    organization: String,
    author_name: String,
    rating: i64,
    title: String,
    body: String,
    version: String,
    helpful: i64,
    created_at: i64,
    updated_at: i64,
    reply: Option<String>,
    replied_at: Option<i64>,
    reply_edited_at: Option<i64>,
    hidden_at: Option<i64>,
    hidden_reason: Option<String>,
}

impl ReviewRow {
    fn into_review(self, show_hidden: bool) -> Review {
        Review {
            id: self.id,
            plugin: self.plugin_id,
            organization: self.organization,
            author_name: self.author_name,
            rating: self.rating,
            title: self.title,
            body: self.body,
            version: self.version,
            helpful: self.helpful,
            created_at: self.created_at,
            updated_at: self.updated_at,
            reply: self.reply.map(|body| Reply {
                body,
                at: self.replied_at.unwrap_or_default(),
                edited_at: self.reply_edited_at,
            }),
            hidden: match self.hidden_at {
                Some(at) if show_hidden => Some(Hidden { at, reason: self.hidden_reason.unwrap_or_default() }),
                _ => None,
            },
        }
    }
}

fn invalid(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::InvalidReview, message)
}

/// Bounds and cleanliness of what a reviewer or replier typed.
fn check_text(field: &str, value: &str, max: usize, required: bool, multiline: bool) -> Result<(), MarketError> {
    nexus_registry::text::check(field, value, max, required).map_err(invalid)?;
    if !multiline && value.contains(['\n', '\r']) {
        return Err(invalid(format!("`{field}` must be a single line")));
    }
    let allowed = |c: char| !c.is_control() || matches!(c, '\n' | '\r' | '\t');
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return Err(invalid(format!("`{field}` may not contain the control character U+{:04X}", u32::from(c))));
    }
    Ok(())
}

fn check_input(input: &ReviewInput) -> Result<(), MarketError> {
    if !(1..=5).contains(&input.rating) {
        return Err(invalid(format!("`rating` must be 1 to 5 stars, got {}", input.rating)));
    }
    check_text("title", input.title.trim(), MAX_TITLE_CHARS, true, false)?;
    check_text("body", &input.body, MAX_BODY_CHARS, false, true)
}

/// Moves the listing's visible figures.
async fn count_rating(conn: &mut sqlx::AnyConnection, plugin: &str, count: i64, total: i64) -> Result<(), MarketError> {
    if count == 0 && total == 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE listings SET rating_count = rating_count + $1, rating_total = rating_total + $2 WHERE plugin_id = $3",
    )
    .bind(count)
    .bind(total)
    .bind(plugin)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn read_review(db: &Db, id: &str, show_hidden: bool) -> Result<Review, MarketError> {
    let row = sqlx::query_as::<_, ReviewRow>(&format!("SELECT {COLUMNS} FROM {FROM} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("review {id}")))?;
    Ok(row.into_review(show_hidden))
}

/// Locks review `id` and reads its plugin, tenant, rating and whether it is hidden.
async fn lock(conn: &mut sqlx::AnyConnection, id: &str) -> Result<(String, String, i64, bool), MarketError> {
    sqlx::query("UPDATE reviews SET updated_at = updated_at WHERE id = $1").bind(id).execute(&mut *conn).await?;
    let row: Option<(String, String, i64, Option<i64>)> =
        sqlx::query_as("SELECT plugin_id, tenant_id, rating, hidden_at FROM reviews WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let (plugin, tenant, rating, hidden_at) = row.ok_or_else(|| MarketError::NotFound(format!("review {id}")))?;
    Ok((plugin, tenant, rating, hidden_at.is_some()))
}
