//! Who sees development versions: a publisher's development tenants (linked by an operator),
//! and the version an install resolves to, a development one only for those tenants. Below
//! installs, which resolve through it; publishing development versions is `dev_versions`'.

use nexus_registry::{PluginId, VersionRecord};
use semver::VersionReq;
use serde_json::json;

use crate::accounts::{Caller, TenantId};
use crate::audit;
use crate::error::MarketError;
use crate::market::Market;

/// Whether a requirement names a development version (`=1.2.0-dev.4`, `>=1.2.0-dev.1`).
pub fn names_dev(requirement: &VersionReq) -> bool {
    requirement.comparators.iter().any(|c| {
        let pre = c.pre.as_str();
        pre == "dev" || pre.starts_with("dev.")
    })
}

/// The publisher's development tenants, in the order they were linked.
pub async fn tenants_of(market: &Market, publisher: &str) -> Result<Vec<String>, MarketError> {
    Ok(sqlx::query_scalar("SELECT tenant_id FROM dev_tenants WHERE publisher = $1 ORDER BY created_at, tenant_id")
        .bind(publisher)
        .fetch_all(&market.db.pool)
        .await?)
}

/// Links `tenant` as a development tenant of `publisher` (operators); linking again is a
/// no-op. Audited.
pub async fn link(market: &Market, caller: &Caller, publisher: &str, tenant: &TenantId) -> Result<(), MarketError> {
    caller.require_operator()?;
    let known: Option<String> = sqlx::query_scalar("SELECT name FROM publishers WHERE name = $1")
        .bind(publisher)
        .fetch_optional(&market.db.pool)
        .await?;
    if known.is_none() {
        return Err(MarketError::NotFound(format!("publisher {publisher}")));
    }
    let tenant_known: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
        .bind(tenant.as_str())
        .fetch_optional(&market.db.pool)
        .await?;
    if tenant_known.is_none() {
        return Err(MarketError::NotFound(format!("tenant {tenant}")));
    }
    let mut tx = market.db.write_tx().await?;
    let linked = sqlx::query(
        "INSERT INTO dev_tenants (publisher, tenant_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (publisher, tenant_id) DO NOTHING",
    )
    .bind(publisher)
    .bind(tenant.as_str())
    .bind(market.billing.clock.now_ms())
    .execute(&mut *tx)
    .await?;
    if linked.rows_affected() == 1 {
        audit::record(&mut *tx, &caller.actor(), "dev_tenant.linked", publisher, json!({ "tenant": tenant.as_str() }))
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The version an install of `tenant` gets for `requirement`: development versions are
/// candidates only when the requirement names one and the tenant is a development tenant of
/// the plugin's publisher. For anyone else they do not exist (`no_matching_version`).
pub async fn resolve_for(
    market: &Market,
    tenant: &TenantId,
    plugin: &PluginId,
    requirement: &VersionReq,
) -> Result<VersionRecord, MarketError> {
    if names_dev(requirement)
        && tenants_of(market, plugin.publisher.as_str()).await?.iter().any(|t| t == tenant.as_str())
    {
        return Ok(market.registry.resolve_with_dev(plugin, requirement).await?);
    }
    Ok(market.registry.resolve(plugin, requirement).await?)
}

/// Whether `caller` may see `version` of `plugin` by its name (the version routes): a
/// development version exists only for operators, the plugin's publisher and its
/// development tenants; for anyone else it is not found, like a version never published.
pub async fn may_see(
    market: &Market,
    caller: Option<&Caller>,
    plugin: &PluginId,
    version: &semver::Version,
) -> Result<(), MarketError> {
    if !nexus_registry::versions::is_dev(version) {
        return Ok(());
    }
    let allowed = match caller {
        Some(Caller::Operator { .. }) => true,
        Some(Caller::Publisher(credential)) => credential.publisher == plugin.publisher,
        Some(Caller::Tenant { tenant, .. }) => {
            tenants_of(market, plugin.publisher.as_str()).await?.iter().any(|t| t == tenant.as_str())
        }
        None => false,
    };
    if allowed { Ok(()) } else { Err(MarketError::NotFound(format!("{plugin}@{version}"))) }
}
