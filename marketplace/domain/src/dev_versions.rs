//! Development versions: what `nexus dev --marketplace` publishes on every change. The
//! working copy goes up as `<major>.<minor>.<patch>-dev.<N>` of its manifest's version, so the
//! release number stays free; the registry never lists those versions and resolves them
//! only for the publisher's development tenants, and only when the requirement names one
//! (`=1.2.0-dev.4`). The newest [`KEEP`] and any an install runs are kept; older ones are
//! deleted at the next development publish.
//!
//! A publisher's development tenants are linked by an operator (`nexus operator dev-tenant`),
//! or by `nexus dev --marketplace` in the local marketplace it starts. Without one, a
//! development publish is refused (`dev_tenant_missing`): no one could run it.

use std::sync::Arc;

use nexus_registry::publish::{PublishRequest, Published};
use nexus_registry::publishers::Credential;
use nexus_registry::{ErrorCode, PluginId, RegistryError, VersionRecord};
use semver::VersionReq;
use serde::Serialize;
use serde_json::json;

use crate::accounts::{Caller, TenantId};
use crate::audit;
use crate::billing::plans;
use crate::error::MarketError;
use crate::market::{Market, PUBLISH_COMPILE_WAIT};
use crate::runner::Loading;

/// Development versions kept per plugin besides those installs run.
pub const KEEP: usize = 3;

/// `POST /v1/publish/dev`'s answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DevPublished {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub published: Published,
    /// The tenants that may install it (`requirement` `=<version>`).
    pub dev_tenants: Vec<String>,
    /// Older development versions deleted by this publish.
    pub pruned: Vec<String>,
}

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

/// Publishes the upload as the next development version of its manifest's release: the
/// registry's checks as for a release, the component compiled on this node, plans seeded
/// from the manifest while the plugin has no release yet (a released plugin's plans change
/// only with releases or `nexus plans set`), then older development versions pruned.
pub async fn publish(
    market: &Arc<Market>,
    caller: &Credential,
    request: PublishRequest,
) -> Result<DevPublished, MarketError> {
    nexus_registry::publish::validate(caller, &request)?;
    crate::partner_program::require_current_agreement(market, caller.publisher.as_str()).await?;
    let publisher = caller.publisher.as_str();
    let dev_tenants = tenants_of(market, publisher).await?;
    if dev_tenants.is_empty() {
        return Err(MarketError::conflict(
            ErrorCode::DevTenantMissing,
            format!(
                "publisher {publisher} has no development tenant on this marketplace, so no one could install a \
                 development version: an operator links one with `nexus operator dev-tenant {publisher} <tenant>`, \
                 or run `nexus dev --marketplace` without --registry for a local marketplace of your own"
            ),
        ));
    }
    let manifest = nexus_registry::manifest::Manifest::from_toml(&request.manifest).map_err(RegistryError::from)?;
    plans::check_manifest(&manifest)?;
    let mut compiling = false;
    match market.runner.load_within(request.component.clone(), PUBLISH_COMPILE_WAIT).await {
        Loading::Ready(_) => {}
        Loading::Refused(e) => return Err(MarketError::Registry(RegistryError::Component(e))),
        Loading::Compiling(_) => compiling = true,
    }
    let mut published = market.registry.publish_dev(caller, request).await?;
    if compiling {
        published.warnings.push(format!(
            "the component is still compiling on this node (over {} s); its first events may be answered `host_busy`",
            PUBLISH_COMPILE_WAIT.as_secs()
        ));
    }
    let id: PluginId = published.id.parse().map_err(RegistryError::from)?;
    let actor = Caller::Publisher(caller.clone()).actor();
    let detail = json!({ "version": published.version, "digest": published.digest.to_string() });
    audit::record(market.db.writer(), &actor, "version.published_dev", &published.id, detail).await?;
    match market.registry.versions(&id).await {
        Err(RegistryError::NotFound(_)) => plans::seed(market, &id, &manifest, &actor).await?,
        Err(error) => return Err(error.into()),
        Ok(_) => published.warnings.push(
            "the plugin has releases, so its plans stay as they are: a development version does not change them \
             (publish a release, or `nexus plans set`)"
                .into(),
        ),
    }
    let in_use = versions_in_use(market, &id).await?;
    let pruned = market.registry.prune_dev(&id, KEEP, &in_use).await?;
    Ok(DevPublished { published, dev_tenants, pruned: pruned.iter().map(ToString::to_string).collect() })
}

/// The versions of `plugin` that live installs run or wait for.
async fn versions_in_use(market: &Market, plugin: &PluginId) -> Result<Vec<semver::Version>, MarketError> {
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT version, pending_version FROM installs WHERE plugin_id = $1 AND status <> $2")
            .bind(plugin.to_string())
            .bind(crate::installs::InstallStatus::Uninstalled.as_str())
            .fetch_all(&market.db.pool)
            .await?;
    Ok(rows
        .into_iter()
        .flat_map(|(running, pending)| [Some(running), pending])
        .flatten()
        .filter_map(|version| version.parse().ok())
        .collect())
}
