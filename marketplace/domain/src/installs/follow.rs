//! Following new versions of a plugin: after a publish or a yank, each live install moves to
//! the best version within its requirement or waits for its tenant's consent; and what a
//! publisher is told about where its installs stand.

use std::collections::HashMap;

use nexus_registry::db::now_ms;
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{PluginId, RegistryError, VersionRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::changes::set_version;
use super::consent::{Consent, grants_cover};
use super::{COLUMNS, Install, InstallRow, write_tx};
use crate::audit;
use crate::error::MarketError;
use crate::market::Market;

/// Where a plugin's live installs stand after a version was published: what a publisher is
/// told (counts only, no tenant is named).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstallMoves {
    /// Now running the new version.
    pub moved: u64,
    /// Offered the new version, which asks for more than they granted: each tenant decides.
    pub waiting_for_consent: u64,
    /// On an older version whose requirement excludes the new one (a new major).
    pub left_behind: u64,
}

/// [`InstallMoves`] for `version` of `plugin`, read after [`follow_versions`] ran.
pub async fn moves_to(
    market: &Market,
    plugin: &PluginId,
    version: &semver::Version,
) -> Result<InstallMoves, MarketError> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT version, requirement, pending_version FROM installs WHERE plugin_id = $1 AND status <> 'uninstalled'",
    )
    .bind(plugin.to_string())
    .fetch_all(&market.db.pool)
    .await?;
    let mut moves = InstallMoves::default();
    let new = version.to_string();
    for (running, requirement, pending) in rows {
        if running == new {
            moves.moved += 1;
        } else if pending.as_deref() == Some(new.as_str()) {
            moves.waiting_for_consent += 1;
        } else if parse_requirement(&requirement).is_ok_and(|r| !r.matches(version))
            && running.parse::<semver::Version>().is_ok_and(|v| v < *version)
        {
            moves.left_behind += 1;
        }
    }
    Ok(moves)
}

/// After a version of `plugin` is published or yanked: each live install moves to the best
/// non-yanked version within its requirement if that needs nothing more than was granted,
/// or records it as pending consent. A yanked running version is therefore left for the
/// best remaining one, even an older one (a yank usually means "broken"); when nothing
/// remains within the requirement the install keeps running what it has.
pub async fn follow_versions(market: &Market, plugin: &PluginId) -> Result<(), MarketError> {
    let sql = format!("SELECT {COLUMNS} FROM installs WHERE plugin_id = $1 AND status <> 'uninstalled'");
    let rows: Vec<InstallRow> = sqlx::query_as(&sql).bind(plugin.to_string()).fetch_all(&market.db.pool).await?;
    // Many installs share a requirement: resolve each requirement once (and once more for
    // the publisher's development tenants, who alone may have development versions).
    let dev_tenants = crate::dev_tenants::tenants_of(market, plugin.publisher.as_str()).await?;
    let mut resolved: HashMap<(String, bool), Option<VersionRecord>> = HashMap::new();
    for row in rows {
        let current = Install::try_from(row)?;
        let key = (current.requirement.clone(), dev_tenants.iter().any(|dev| dev.as_str() == current.tenant.as_str()));
        if !resolved.contains_key(&key) {
            let best = best_within(market, plugin, &current.requirement, key.1).await?;
            resolved.insert(key.clone(), best);
        }
        let Some(Some(best)) = resolved.get(&key) else { continue };
        follow(market, &current, best).await?;
    }
    Ok(())
}

/// The best version of `plugin` within `requirement`, development versions included for a
/// development tenant (`dev`) when the requirement names them; `None` when no version is
/// within it, or it does not parse.
async fn best_within(
    market: &Market,
    plugin: &PluginId,
    requirement: &str,
    dev: bool,
) -> Result<Option<VersionRecord>, MarketError> {
    let Ok(requirement) = parse_requirement(requirement) else {
        return Ok(None);
    };
    let found = if dev && crate::dev_tenants::names_dev(&requirement) {
        market.registry.resolve_with_dev(plugin, &requirement).await
    } else {
        market.registry.resolve(plugin, &requirement).await
    };
    match found {
        Ok(best) => Ok(Some(best)),
        Err(RegistryError::NoMatchingVersion { .. }) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// Brings `current` to `best` in a transaction of its own: moves it there if its grants
/// cover it, else records it as pending consent; clears a pending upgrade once it runs the
/// best version. Writes nothing when there is nothing to do.
async fn follow(market: &Market, current: &Install, best: &VersionRecord) -> Result<(), MarketError> {
    let pending = current.pending_upgrade.as_ref().map(|p| p.version.as_str());
    if best.version.to_string() == current.version && pending.is_none() {
        return Ok(()); // nothing to do: no write transaction
    }
    let mut tx = write_tx(market).await?;
    if best.version.to_string() == current.version {
        if pending.is_some() {
            sqlx::query("UPDATE installs SET pending_version = NULL, pending_reason = NULL WHERE id = $1")
                .bind(&current.id)
                .execute(&mut *tx)
                .await?;
        }
    } else if grants_cover(&current.grants, best) {
        // Compare-and-set: if another node moved it meanwhile, its newer answer stands.
        if set_version(&mut tx, current.id.as_str(), &current.version, best, None, market.billing.clock.now_ms())
            .await?
        {
            let detail = json!({ "from": current.version, "to": best.version.to_string() });
            audit::record(&mut *tx, audit::SYSTEM, "install.version_changed", current.id.as_str(), detail).await?;
        }
    } else if pending != Some(best.version.to_string().as_str()) {
        let reason = pending_reason(current, best);
        sqlx::query("UPDATE installs SET pending_version = $1, pending_reason = $2, updated_at = $3 WHERE id = $4")
            .bind(best.version.to_string())
            .bind(&reason)
            .bind(now_ms())
            .bind(&current.id)
            .execute(&mut *tx)
            .await?;
        let detail = json!({ "version": best.version.to_string(), "reason": reason });
        audit::record(&mut *tx, audit::SYSTEM, "install.upgrade_pending", current.id.as_str(), detail).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Why `best` waits for consent: what it asks for beyond `current`'s grants.
fn pending_reason(current: &Install, best: &VersionRecord) -> String {
    let wanted = Consent::of(best).grants();
    let mut more: Vec<String> =
        wanted.capabilities.difference(&current.grants.capabilities).map(|c| c.to_string()).collect();
    more.extend(
        wanted.allowed_hosts.iter().filter(|h| !current.grants.allowed_hosts.contains(h)).map(|h| h.to_string()),
    );
    format!("{} asks for more than you granted: {}", best.version, more.join(", "))
}
