//! A tenant's own review: written, edited and deleted.

use nexus_registry::{ErrorCode, PluginId};
use serde_json::json;

use super::eligibility::reviewable_version;
use super::{REVIEW_LIMIT, Review, ReviewInput, check_input, count_rating, read_review};
use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::error::MarketError;
use crate::ids::ReviewId;
use crate::market::Market;
use crate::write_limits;

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
    let written = Written {
        plugin: &plugin_text,
        tenant: &tenant,
        author: caller.token_id(),
        author_name: &author,
        input,
        version: &version,
        now,
    };
    let id = if create { insert(&mut tx, &written).await? } else { update(&mut tx, &written).await? };
    let action = if create { "review.written" } else { "review.edited" };
    audit::record(&mut *tx, &caller.actor(), action, &id, json!({ "plugin": plugin_text, "rating": input.rating }))
        .await?;
    tx.commit().await?;
    read_review(db, &id, true).await
}

/// A review as its writer sends it, with who and when.
struct Written<'a> {
    plugin: &'a str,
    tenant: &'a TenantId,
    /// The writing token's id.
    author: &'a str,
    author_name: &'a str,
    input: &'a ReviewInput,
    version: &'a str,
    now: i64,
}

/// Inserts the tenant's first review of the plugin, counted in the listing's figures: its
/// id, or a conflict when the tenant already reviewed it.
async fn insert(tx: &mut sqlx::AnyConnection, written: &Written<'_>) -> Result<String, MarketError> {
    let Written { plugin, tenant, input, .. } = *written;
    let id = String::from(ReviewId::random()?);
    let inserted = sqlx::query(
        "INSERT INTO reviews (id, plugin_id, tenant_id, author, author_name, rating, title, body, version, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         ON CONFLICT (plugin_id, tenant_id) DO NOTHING",
    )
    .bind(&id)
    .bind(plugin)
    .bind(tenant.as_str())
    .bind(written.author)
    .bind(written.author_name)
    .bind(input.rating)
    .bind(input.title.trim())
    .bind(&input.body)
    .bind(written.version)
    .bind(written.now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(MarketError::conflict(
            ErrorCode::ReviewExists,
            format!("{tenant} already reviewed {plugin}; edit that review (PUT .../reviews/mine) instead"),
        ));
    }
    count_rating(tx, plugin, 1, input.rating).await?;
    Ok(id)
}

/// Replaces the tenant's review of the plugin, moving the listing's figures by the change
/// of rating unless it is hidden: its id.
async fn update(tx: &mut sqlx::AnyConnection, written: &Written<'_>) -> Result<String, MarketError> {
    let Written { plugin, tenant, input, .. } = *written;
    let (id, old_rating, hidden) = lock_own(tx, tenant, plugin).await?;
    sqlx::query(
        "UPDATE reviews SET author = $1, author_name = $2, rating = $3, title = $4, body = $5, version = $6, \
         updated_at = $7 WHERE id = $8",
    )
    .bind(written.author)
    .bind(written.author_name)
    .bind(input.rating)
    .bind(input.title.trim())
    .bind(&input.body)
    .bind(written.version)
    .bind(written.now)
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    if !hidden {
        count_rating(tx, plugin, 0, input.rating - old_rating).await?;
    }
    Ok(id)
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
