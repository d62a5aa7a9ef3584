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
use nexus_registry::{ErrorCode, PluginId, RegistryError};
use serde::Serialize;
use serde_json::json;

use crate::accounts::Caller;
use crate::audit;
use crate::billing::plans;
pub use crate::dev_tenants::{link, may_see, names_dev, resolve_for, tenants_of};
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
