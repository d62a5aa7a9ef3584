//! Writing listings: rebuilt from the registry's newest installable version, priced from
//! the plans offered, and indexed for search.

use nexus_registry::db::now_ms;
use nexus_registry::{Db, PluginId, Registry};

use super::{newest_installable, set_items, set_text, words};
use crate::error::MarketError;
use crate::plans;

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

/// The words search matches: the id's parts, the summary, the description and the
/// categories (`categories` as stored, `,a,b,`), lowercase, split at anything that is not a
/// letter or digit. Both backends index exactly these words.
pub(crate) fn search_words(id: &PluginId, summary: &str, description: &str, categories: &str) -> String {
    let text = format!("{} {} {} {} {}", id.publisher, id.name, summary, description, set_items(categories).join(" "));
    words(&text).join(" ")
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
    .bind(super::listing_text::links_json(&manifest.links)?)
    .execute(&mut *tx)
    .await?;
    reprice(&mut tx, &id.to_string()).await?;
    tx.commit().await?;
    Ok(())
}
