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

use std::time::Duration;

use nexus_registry::publishers::random_hex;
use nexus_registry::text::MAX_REASON_CHARS;
use nexus_registry::{Db, ErrorCode, PluginId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::error::{MarketError, Page};
use crate::market::Market;
use crate::write_limits::{self, Limit};

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
    pub id: String,
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
    id: String,
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

/// An install of the plugin by the tenant, as [`reviewable_version`] reads it (its `ran`
/// column is read by [`truthy`]: a boolean on PostgreSQL, an integer on SQLite).
#[derive(sqlx::FromRow)]
struct InstallSpan {
    version: String,
    created_at: i64,
    uninstalled_at: Option<i64>,
    status: String,
}

/// The version a tenant may review `plugin` at, or why it may not review it yet.
async fn reviewable_version(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    plugin: &str,
    now: i64,
) -> Result<String, MarketError> {
    let rows = sqlx::query(
        "SELECT i.version, i.created_at, i.uninstalled_at, i.status, \
         EXISTS (SELECT 1 FROM invocations v WHERE v.install_id = i.id AND v.outcome = 'ok') AS ran \
         FROM installs i WHERE i.tenant_id = $1 AND i.plugin_id = $2 ORDER BY i.created_at DESC",
    )
    .bind(tenant.as_str())
    .bind(plugin)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Err(MarketError::invalid(
            ErrorCode::ReviewNotAllowed,
            format!("{tenant} has never installed {plugin}; only organizations that use a plugin may review it"),
        ));
    }
    let mut first_eligible_at = None;
    let mut ran_any = false;
    for row in &rows {
        let InstallSpan { version, created_at, uninstalled_at, status } = InstallSpan::from_row(row)?;
        let until = uninstalled_at.unwrap_or(now);
        let ran = truthy(row, "ran")?;
        ran_any |= ran;
        if ran && until - created_at >= MIN_INSTALLED_MS {
            return Ok(version);
        }
        if status != "uninstalled" {
            first_eligible_at = Some(created_at + MIN_INSTALLED_MS);
        }
    }
    let why = match (ran_any, first_eligible_at) {
        (false, _) => format!("{plugin} has not yet run an event for {tenant}; review it once it has done its work"),
        (true, Some(at)) => format!(
            "{tenant} installed {plugin} less than a day ago; reviews open a day after installing, at {}",
            crate::billing::views::iso(at)
        ),
        (true, None) => format!("{tenant} had {plugin} installed for less than a day"),
    };
    Err(MarketError::invalid(ErrorCode::ReviewNotAllowed, why))
}

/// Why `tenant` may not review `plugin` now, if it may not (for the listing page, which
/// shows it in place of the form).
pub async fn why_not(market: &Market, tenant: &TenantId, plugin: &str) -> Result<Option<String>, MarketError> {
    let db = &market.db;
    let mut conn = db.pool.acquire().await?;
    match reviewable_version(&mut conn, tenant, plugin, market.billing.clock.now_ms()).await {
        Ok(_) => Ok(None),
        Err(MarketError::Invalid { code: ErrorCode::ReviewNotAllowed, message }) => Ok(Some(message)),
        Err(other) => Err(other),
    }
}

/// A boolean column as either backend returns it (SQLite: an integer).
fn truthy(row: &AnyRow, column: &str) -> Result<bool, MarketError> {
    Ok(match row.try_get::<bool, _>(column) {
        Ok(value) => value,
        Err(_) => row.try_get::<i64, _>(column)? != 0,
    })
}

/// How a review is signed: the person's name, or the organization's for an API token.
async fn author_name(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    tenant: &TenantId,
) -> Result<String, MarketError> {
    let id = caller.token_id();
    let person: Option<String> = if id.starts_with("usr_") {
        Some(id.to_string())
    } else {
        sqlx::query_scalar("SELECT person_id FROM account_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten()
    };
    let name: Option<String> = match person {
        Some(person) => {
            sqlx::query_scalar("SELECT display_name FROM people WHERE id = $1")
                .bind(person)
                .fetch_optional(&mut *conn)
                .await?
        }
        None => None,
    };
    match name {
        Some(name) => Ok(name),
        None => Ok(sqlx::query_scalar::<_, String>("SELECT display_name FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or_else(|| tenant.to_string())),
    }
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

/// The tenant's own review of `plugin`, hidden or not.
pub async fn mine(db: &Db, caller: &Caller, plugin: &PluginId) -> Result<Review, MarketError> {
    let tenant = caller.tenant(TenantScope::Read)?;
    let row = sqlx::query_as::<_, ReviewRow>(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE r.plugin_id = $1 AND r.tenant_id = $2"
    ))
    .bind(plugin.to_string())
    .bind(tenant.as_str())
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| MarketError::NotFound(format!("a review of {plugin} by {tenant}")))?;
    Ok(row.into_review(true))
}

/// Writes the tenant's review of `plugin`: a new one (`create`), or an edit of its own.
pub async fn write(
    market: &Market,
    caller: &Caller,
    plugin: &PluginId,
    input: &ReviewInput,
    create: bool,
) -> Result<Review, MarketError> {
    let db = &market.db;
    let tenant = caller.tenant(TenantScope::Installs)?.clone();
    check_input(input)?;
    let plugin_text = plugin.to_string();
    let now = market.billing.clock.now_ms();
    let mut tx = db.write_tx().await?;
    let version = reviewable_version(&mut tx, &tenant, &plugin_text, now).await?;
    write_limits::take(&mut tx, &format!("review:{tenant}"), REVIEW_LIMIT, now).await?;
    let author = author_name(&mut tx, caller, &tenant).await?;
    let title = input.title.trim();
    let id = if create {
        let id = format!("rev_{}", random_hex(8)?);
        let inserted = sqlx::query(
            "INSERT INTO reviews (id, plugin_id, tenant_id, author, author_name, rating, title, body, version, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (plugin_id, tenant_id) DO NOTHING",
        )
        .bind(&id)
        .bind(&plugin_text)
        .bind(tenant.as_str())
        .bind(caller.token_id())
        .bind(&author)
        .bind(input.rating)
        .bind(title)
        .bind(&input.body)
        .bind(&version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(MarketError::conflict(
                ErrorCode::ReviewExists,
                format!("{tenant} already reviewed {plugin}; edit that review (PUT .../reviews/mine) instead"),
            ));
        }
        count_rating(&mut tx, &plugin_text, 1, input.rating).await?;
        id
    } else {
        let (id, old_rating, hidden) = lock_own(&mut tx, &tenant, &plugin_text).await?;
        sqlx::query(
            "UPDATE reviews SET author = $1, author_name = $2, rating = $3, title = $4, body = $5, version = $6, \
             updated_at = $7 WHERE id = $8",
        )
        .bind(caller.token_id())
        .bind(&author)
        .bind(input.rating)
        .bind(title)
        .bind(&input.body)
        .bind(&version)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        if !hidden {
            count_rating(&mut tx, &plugin_text, 0, input.rating - old_rating).await?;
        }
        id
    };
    let action = if create { "review.written" } else { "review.edited" };
    audit::record(&mut *tx, &caller.actor(), action, &id, json!({ "plugin": plugin_text, "rating": input.rating }))
        .await?;
    tx.commit().await?;
    read_review(db, &id, true).await
}

/// Locks the tenant's review of `plugin` (a no-op write, so concurrent changes queue on it)
/// and reads its id, rating and whether it is hidden.
async fn lock_own(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    plugin: &str,
) -> Result<(String, i64, bool), MarketError> {
    sqlx::query("UPDATE reviews SET updated_at = updated_at WHERE plugin_id = $1 AND tenant_id = $2")
        .bind(plugin)
        .bind(tenant.as_str())
        .execute(&mut *conn)
        .await?;
    let row: Option<(String, i64, Option<i64>)> =
        sqlx::query_as("SELECT id, rating, hidden_at FROM reviews WHERE plugin_id = $1 AND tenant_id = $2")
            .bind(plugin)
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let (id, rating, hidden_at) =
        row.ok_or_else(|| MarketError::NotFound(format!("a review of {plugin} by {tenant}")))?;
    Ok((id, rating, hidden_at.is_some()))
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

/// Deletes the tenant's own review of `plugin`, with its helpful marks.
pub async fn delete_mine(market: &Market, caller: &Caller, plugin: &PluginId) -> Result<(), MarketError> {
    let db = &market.db;
    let tenant = caller.tenant(TenantScope::Installs)?.clone();
    let plugin_text = plugin.to_string();
    let mut tx = db.write_tx().await?;
    let (id, rating, hidden) = lock_own(&mut tx, &tenant, &plugin_text).await?;
    sqlx::query("DELETE FROM review_votes WHERE review_id = $1").bind(&id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM reviews WHERE id = $1").bind(&id).execute(&mut *tx).await?;
    if !hidden {
        count_rating(&mut tx, &plugin_text, -1, -rating).await?;
    }
    audit::record(&mut *tx, &caller.actor(), "review.deleted", &id, json!({ "plugin": plugin_text })).await?;
    tx.commit().await?;
    Ok(())
}

/// The publisher's reply to review `id`: written, replaced, or removed (`body` None).
pub async fn reply(market: &Market, caller: &Caller, id: &str, body: Option<&str>) -> Result<Review, MarketError> {
    let db = &market.db;
    if let Some(body) = body {
        check_text("body", body.trim(), MAX_REPLY_CHARS, true, true)?;
    }
    let now = market.billing.clock.now_ms();
    let mut tx = db.write_tx().await?;
    let (plugin, _, _, hidden) = lock(&mut tx, id).await?;
    let publisher = plugin.split_once('/').map_or(plugin.as_str(), |(publisher, _)| publisher);
    match caller {
        Caller::Publisher(credential) if credential.publisher.as_str() == publisher => {}
        Caller::Publisher(_) | Caller::Operator { .. } => {
            return Err(MarketError::Forbidden(format!("only {publisher} replies to reviews of {plugin}")));
        }
        Caller::Tenant { .. } => return Err(MarketError::Forbidden("this needs a publisher token".into())),
    }
    if hidden {
        return Err(MarketError::NotFound(format!("review {id}")));
    }
    match body {
        Some(body) => {
            write_limits::take(&mut tx, &format!("reply:{publisher}"), REPLY_LIMIT, now).await?;
            sqlx::query(
                "UPDATE reviews SET reply = $1, \
                 reply_edited_at = CASE WHEN reply IS NULL THEN NULL ELSE $2 END, \
                 replied_at = CASE WHEN reply IS NULL THEN $2 ELSE replied_at END WHERE id = $3",
            )
            .bind(body.trim())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("UPDATE reviews SET reply = NULL, replied_at = NULL, reply_edited_at = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    }
    let action = if body.is_some() { "review.replied" } else { "review.reply_removed" };
    audit::record(&mut *tx, &caller.actor(), action, id, json!({ "plugin": plugin })).await?;
    tx.commit().await?;
    read_review(db, id, false).await
}

/// Hides review `id` with a reason its authors see (`reason` Some), or shows it again.
pub async fn hide(market: &Market, caller: &Caller, id: &str, reason: Option<&str>) -> Result<Review, MarketError> {
    let db = &market.db;
    caller.require_operator()?;
    if let Some(reason) = reason {
        MarketError::check_text(ErrorCode::InvalidRequest, "reason", reason, MAX_REASON_CHARS)?;
        if reason.trim().is_empty() {
            return Err(MarketError::invalid(
                ErrorCode::InvalidRequest,
                "hiding a review needs a reason its author sees",
            ));
        }
    }
    let now = market.billing.clock.now_ms();
    let mut tx = db.write_tx().await?;
    let (plugin, _, rating, hidden) = lock(&mut tx, id).await?;
    sqlx::query("UPDATE reviews SET hidden_at = $1, hidden_reason = $2 WHERE id = $3")
        .bind(reason.map(|_| now))
        .bind(reason.map(str::trim))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    match (hidden, reason.is_some()) {
        (false, true) => count_rating(&mut tx, &plugin, -1, -rating).await?,
        (true, false) => count_rating(&mut tx, &plugin, 1, rating).await?,
        _ => {}
    }
    let action = if reason.is_some() { "review.hidden" } else { "review.shown" };
    audit::record(&mut *tx, &caller.actor(), action, id, json!({ "plugin": plugin, "reason": reason })).await?;
    tx.commit().await?;
    read_review(db, id, true).await
}

/// Marks review `id` helpful for the caller's organization (`helpful`), or takes the mark
/// back. Marking twice counts once.
pub async fn mark_helpful(market: &Market, caller: &Caller, id: &str, helpful: bool) -> Result<Review, MarketError> {
    let db = &market.db;
    let tenant = caller.tenant(TenantScope::Installs)?.clone();
    let now = market.billing.clock.now_ms();
    let mut tx = db.write_tx().await?;
    let (_, author_tenant, _, hidden) = lock(&mut tx, id).await?;
    if hidden {
        return Err(MarketError::NotFound(format!("review {id}")));
    }
    if author_tenant == tenant.as_str() {
        return Err(MarketError::Forbidden("an organization cannot mark its own review helpful".into()));
    }
    let changed = if helpful {
        write_limits::take(&mut tx, &format!("vote:{tenant}"), VOTE_LIMIT, now).await?;
        sqlx::query("INSERT INTO review_votes (review_id, voter, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(tenant.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    } else {
        sqlx::query("DELETE FROM review_votes WHERE review_id = $1 AND voter = $2")
            .bind(id)
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
    };
    if changed > 0 {
        let delta: i64 = if helpful { 1 } else { -1 };
        sqlx::query("UPDATE reviews SET helpful = helpful + $1 WHERE id = $2")
            .bind(delta)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    read_review(db, id, false).await
}

/// A page of `plugin`'s visible reviews (operators also see hidden ones, marked).
pub async fn list(
    db: &Db,
    caller: Option<&Caller>,
    plugin: &PluginId,
    query: &ReviewQuery,
) -> Result<Page<Review>, MarketError> {
    let per_page = crate::error::per_page(query.per_page, 20)?;
    let page = query.page.unwrap_or(1).max(1);
    if let Some(rating) = query.rating.filter(|r| !(1..=5).contains(r)) {
        return Err(MarketError::invalid(ErrorCode::InvalidQuery, format!("rating must be 1 to 5, got {rating}")));
    }
    let operator = caller.is_some_and(|c| c.role() == "operator");
    // `$2` is the rating, 0 for any.
    let mut filter = String::from("r.plugin_id = $1 AND ($2 = 0 OR r.rating = $2)");
    if !operator {
        filter.push_str(" AND r.hidden_at IS NULL");
    }
    let rating = query.rating.unwrap_or_default();
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM reviews r WHERE {filter}"))
        .bind(plugin.to_string())
        .bind(rating)
        .fetch_one(&db.pool)
        .await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE {filter} ORDER BY {} LIMIT $3 OFFSET $4",
        query.sort.unwrap_or_default().order()
    );
    let rows = sqlx::query_as::<_, ReviewRow>(&sql)
        .bind(plugin.to_string())
        .bind(rating)
        .bind(i64::from(per_page))
        .bind(i64::from(page - 1) * i64::from(per_page))
        .fetch_all(&db.pool)
        .await?;
    let items = rows.into_iter().map(|row| row.into_review(operator)).collect();
    Ok(Page::new(items, page, per_page, total))
}

/// The ratings of `plugin`'s visible reviews, with how many gave each number of stars.
pub async fn summary(db: &Db, plugin: &str) -> Result<RatingSummary, MarketError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT rating, COUNT(*) FROM reviews WHERE plugin_id = $1 AND hidden_at IS NULL GROUP BY rating",
    )
    .bind(plugin)
    .fetch_all(&db.pool)
    .await?;
    let mut by_stars = vec![0; 5];
    let (mut count, mut total) = (0, 0);
    for (rating, n) in rows {
        if let Some(slot) = usize::try_from(rating - 1).ok().and_then(|i| by_stars.get_mut(i)) {
            *slot += n;
            count += n;
            total += rating * n;
        }
    }
    Ok(RatingSummary { count, average: average(total, count), by_stars })
}
