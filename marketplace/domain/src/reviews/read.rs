//! Reading reviews: a tenant's own, a plugin's page of them, and its rating figures.

use nexus_registry::{Db, ErrorCode, PluginId};

use super::{COLUMNS, FROM, RatingSummary, Review, ReviewQuery, ReviewRow, average};
use crate::accounts::{Caller, TenantScope};
use crate::error::{MarketError, Page};

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
