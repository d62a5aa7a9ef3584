//! The operators' directories: every tenant and every partner, searchable by id or name,
//! with what an operator looks for first (live installs; listings, tier, badge and holds),
//! each leading to that account's pages.

use nexus_registry::ErrorCode;
use nexus_registry::id::PublisherName;
use nexus_registry::text::MAX_QUERY_CHARS;

use crate::accounts::{Caller, TenantId};
use crate::error::{MarketError, Page, PageQuery};
use crate::market::Market;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantEntry {
    pub id: TenantId,
    pub display_name: String,
    pub created_at: i64,
    /// Installs not uninstalled.
    #[sqlx(rename = "live")]
    pub live_installs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerEntry {
    pub id: PublisherName,
    pub display_name: String,
    pub created_at: i64,
    /// Listings in the catalog (delisted ones included).
    pub listings: i64,
    pub tier_badge: Option<String>,
    pub verified_domain: Option<String>,
    /// Whether its payouts are held.
    pub held: bool,
}

#[derive(sqlx::FromRow)]
struct PartnerRow {
    name: String,
    display_name: String,
    created_at: i64,
    listings: i64,
    tier_badge: Option<String>,
    verified_domain: Option<String>,
    holds: i64,
}

/// `%text%` for a case-insensitive search in id or name, its wildcards taken literally.
fn pattern(q: Option<&str>) -> Result<Option<String>, MarketError> {
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    MarketError::check_text(ErrorCode::InvalidQuery, "q", q.unwrap_or_default(), MAX_QUERY_CHARS)?;
    Ok(q.map(|q| format!("%{}%", crate::audit::like_literal(&q.to_lowercase()))))
}

/// Tenants whose id or name contains `q`, by id.
pub async fn tenants(
    market: &Market,
    caller: &Caller,
    q: Option<&str>,
    query: &PageQuery,
) -> Result<Page<TenantEntry>, MarketError> {
    caller.require_operator()?;
    let (page, per_page) = query.checked()?;
    let like = pattern(q)?;
    let filter = "WHERE ($1 IS NULL OR LOWER(t.id) LIKE $1 ESCAPE '\\' OR LOWER(t.display_name) LIKE $1 ESCAPE '\\')";
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM tenants t {filter}"))
        .bind(like.as_deref())
        .fetch_one(&market.db.pool)
        .await?;
    let items = sqlx::query_as::<_, TenantEntry>(&format!(
        "SELECT t.id, t.display_name, t.created_at, (SELECT COUNT(*) FROM installs i WHERE i.tenant_id = t.id \
         AND i.status <> 'uninstalled') AS live FROM tenants t {filter} ORDER BY t.id LIMIT $2 OFFSET $3"
    ))
    .bind(like.as_deref())
    .bind(i64::from(per_page))
    .bind(i64::from(page - 1) * i64::from(per_page))
    .fetch_all(&market.db.pool)
    .await?;
    Ok(Page::new(items, page, per_page, total))
}

/// Partners (publishers) whose id or name contains `q`, by id.
pub async fn partners(
    market: &Market,
    caller: &Caller,
    q: Option<&str>,
    query: &PageQuery,
) -> Result<Page<PartnerEntry>, MarketError> {
    caller.require_operator()?;
    let (page, per_page) = query.checked()?;
    let like = pattern(q)?;
    let filter = "WHERE ($1 IS NULL OR LOWER(p.name) LIKE $1 ESCAPE '\\' OR LOWER(p.display_name) LIKE $1 ESCAPE '\\')";
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM publishers p {filter}"))
        .bind(like.as_deref())
        .fetch_one(&market.db.pool)
        .await?;
    let rows = sqlx::query_as::<_, PartnerRow>(&format!(
        "SELECT p.name, p.display_name, p.created_at, \
         (SELECT COUNT(*) FROM listings l WHERE l.publisher = p.name) AS listings, \
         (SELECT t.badge FROM partner_tier_assignments a JOIN partner_tiers t ON t.key = a.tier_key \
          WHERE a.publisher = p.name) AS tier_badge, \
         (SELECT d.domain FROM publisher_domains d WHERE d.publisher = p.name AND d.verified_at IS NOT NULL) \
          AS verified_domain, \
         (SELECT COUNT(*) FROM payout_holds h WHERE h.publisher = p.name AND h.released_at IS NULL) AS holds \
         FROM publishers p {filter} ORDER BY p.name LIMIT $2 OFFSET $3"
    ))
    .bind(like.as_deref())
    .bind(i64::from(per_page))
    .bind(i64::from(page - 1) * i64::from(per_page))
    .fetch_all(&market.db.pool)
    .await?;
    let items = rows
        .into_iter()
        .map(|row| {
            Ok(PartnerEntry {
                id: row.name.parse().map_err(|e| crate::error::storage(format!("stored publisher: {e}")))?,
                display_name: row.display_name,
                created_at: row.created_at,
                listings: row.listings,
                tier_badge: row.tier_badge,
                verified_domain: row.verified_domain,
                held: row.holds > 0,
            })
        })
        .collect::<Result<_, MarketError>>()?;
    Ok(Page::new(items, page, per_page, total))
}
