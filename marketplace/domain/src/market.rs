//! The marketplace as one value: the database, the registry, the master key for secrets
//! and the runner. Handlers and the demo call its modules with a `&Market`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nexus_host::{Host, HostConfig, LoadError, OutboundPolicy};
use nexus_registry::{
    Credential, Db, ErrorCode, PluginId, PublishRequest, Published, Registry, RegistryError, VersionRecord,
};
use semver::Version;
use serde_json::json;

use crate::audit;
use crate::billing::{BillingConfig, plans};
use crate::catalog;
use crate::error::MarketError;
use crate::installs;
use crate::metrics::Metrics;
use crate::runner::{Loading, Runner, TenantLimits};
use crate::secrets::MasterKey;

/// Migrations of the marketplace's own tables, after the registry's: one file per backend
/// where the dialects differ (`sqlite/`, `postgres/`), one for both where they do not
/// (`common/`).
pub const SQLITE_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_marketplace.sql"),
    include_str!("../migrations/common/0002_applied_once.sql"),
    include_str!("../migrations/common/0003_cache_generation.sql"),
    include_str!("../migrations/common/0004_nodes.sql"),
    include_str!("../migrations/common/0005_billing.sql"),
    include_str!("../migrations/sqlite/0006_ledger.sql"),
    include_str!("../migrations/common/0007_payouts.sql"),
    include_str!("../migrations/common/0008_invocation_output.sql"),
    include_str!("../migrations/common/0009_console_sessions.sql"),
    include_str!("../migrations/common/0010_featured_listings.sql"),
    include_str!("../migrations/common/0011_invocations_by_plugin.sql"),
    include_str!("../migrations/common/0012_idempotency_with_effect.sql"),
    include_str!("../migrations/sqlite/0013_event_generations.sql"),
    include_str!("../migrations/common/0014_money_rollups.sql"),
    include_str!("../migrations/common/0015_statement_lines.sql"),
    include_str!("../migrations/common/0016_charge_claims.sql"),
    include_str!("../migrations/common/0018_invocation_outcome.sql"),
    include_str!("../migrations/common/0019_install_pause_cause.sql"),
    include_str!("../migrations/sqlite/0020_usage_hours.sql"),
    include_str!("../migrations/sqlite/0021_event_queue.sql"),
    include_str!("../migrations/common/0022_webhooks.sql"),
    include_str!("../migrations/common/0023_schedules.sql"),
    include_str!("../migrations/common/0024_people.sql"),
    include_str!("../migrations/common/0025_partner_program.sql"),
    include_str!("../migrations/common/0026_invitations.sql"),
    include_str!("../migrations/common/0027_second_factor.sql"),
    include_str!("../migrations/common/0028_tokens_of_people.sql"),
    include_str!("../migrations/common/0029_publisher_domains.sql"),
    include_str!("../migrations/common/0030_partner_tiers.sql"),
    include_str!("../migrations/common/0031_featured_placements.sql"),
    include_str!("../migrations/common/0032_listing_prices.sql"),
    include_str!("../migrations/common/0033_listing_content.sql"),
    include_str!("../migrations/common/0034_reviews.sql"),
    include_str!("../migrations/sqlite/0035_listing_search.sql"),
    include_str!("../migrations/common/0036_listing_media.sql"),
    include_str!("../migrations/common/0037_dev_tenants.sql"),
    include_str!("../migrations/sqlite/0038_narrower_triggers.sql"),
    include_str!("../migrations/sqlite/0039_ledger_keys_per_statement.sql"),
];
pub const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_marketplace.sql"),
    include_str!("../migrations/common/0002_applied_once.sql"),
    include_str!("../migrations/common/0003_cache_generation.sql"),
    include_str!("../migrations/common/0004_nodes.sql"),
    include_str!("../migrations/common/0005_billing.sql"),
    include_str!("../migrations/postgres/0006_ledger.sql"),
    include_str!("../migrations/common/0007_payouts.sql"),
    include_str!("../migrations/common/0008_invocation_output.sql"),
    include_str!("../migrations/common/0009_console_sessions.sql"),
    include_str!("../migrations/common/0010_featured_listings.sql"),
    include_str!("../migrations/common/0011_invocations_by_plugin.sql"),
    include_str!("../migrations/common/0012_idempotency_with_effect.sql"),
    include_str!("../migrations/postgres/0013_event_generations.sql"),
    include_str!("../migrations/common/0014_money_rollups.sql"),
    include_str!("../migrations/common/0015_statement_lines.sql"),
    include_str!("../migrations/common/0016_charge_claims.sql"),
    include_str!("../migrations/common/0018_invocation_outcome.sql"),
    include_str!("../migrations/common/0019_install_pause_cause.sql"),
    include_str!("../migrations/postgres/0020_usage_hours.sql"),
    include_str!("../migrations/postgres/0021_event_queue.sql"),
    include_str!("../migrations/common/0022_webhooks.sql"),
    include_str!("../migrations/common/0023_schedules.sql"),
    include_str!("../migrations/common/0024_people.sql"),
    include_str!("../migrations/common/0025_partner_program.sql"),
    include_str!("../migrations/common/0026_invitations.sql"),
    include_str!("../migrations/common/0027_second_factor.sql"),
    include_str!("../migrations/common/0028_tokens_of_people.sql"),
    include_str!("../migrations/common/0029_publisher_domains.sql"),
    include_str!("../migrations/common/0030_partner_tiers.sql"),
    include_str!("../migrations/common/0031_featured_placements.sql"),
    include_str!("../migrations/common/0032_listing_prices.sql"),
    include_str!("../migrations/common/0033_listing_content.sql"),
    include_str!("../migrations/common/0034_reviews.sql"),
    include_str!("../migrations/postgres/0035_listing_search.sql"),
    include_str!("../migrations/common/0036_listing_media.sql"),
    include_str!("../migrations/common/0037_dev_tenants.sql"),
    include_str!("../migrations/postgres/0038_narrower_triggers.sql"),
    include_str!("../migrations/postgres/0039_ledger_keys_per_statement.sql"),
];

/// How long a publish waits for the component to compile on the publishing node.
pub const PUBLISH_COMPILE_WAIT: Duration = Duration::from_secs(10);

pub struct Market {
    pub db: Db,
    pub registry: Arc<Registry>,
    pub master_key: MasterKey,
    pub runner: Runner,
    pub billing: BillingConfig,
    /// Where mail to people goes (`mail.rs`).
    pub mailer: crate::mail::Mailer,
}

/// How to build a [`Market`] beyond its registry.
pub struct MarketConfig {
    pub master_key: MasterKey,
    /// The plugin host; shared so tests compile each component once.
    pub host: Arc<Host>,
    pub tenant_limits: TenantLimits,
    /// The billing clock, the payment provider and the retry schedule.
    pub billing: BillingConfig,
    /// How long an event waits for its component to compile on this node before it is
    /// answered `host_busy` (reason `compiling`): normally
    /// [`EVENT_COMPILE_WAIT`](crate::runner::EVENT_COMPILE_WAIT); tests shorten it.
    pub event_compile_wait: Duration,
    /// Where mail to people goes: SMTP, or `.eml` files in a folder.
    pub mailer: crate::mail::Mailer,
}

/// The host a server runs: precompiled components cached under `cache_dir`; outbound HTTP
/// reaches public addresses and the internal ranges the operator allowed.
pub fn host_with_cache(cache_dir: PathBuf, outbound: OutboundPolicy) -> Result<Arc<Host>, MarketError> {
    Host::new(HostConfig { cache_dir: Some(cache_dir), outbound, ..HostConfig::default() })
        .map(Arc::new)
        .map_err(|e| MarketError::Storage(format!("cannot start the plugin host: {e}")))
}

impl Market {
    /// Migrates the marketplace tables and starts the plugin host.
    pub async fn open(registry: Arc<Registry>, config: MarketConfig) -> Result<Self, MarketError> {
        let db = registry.db().clone();
        db.apply_migrations("marketplace_migrations", SQLITE_MIGRATIONS, POSTGRES_MIGRATIONS).await?;
        let runner = Runner::new(
            config.host,
            db.clone(),
            config.tenant_limits,
            config.event_compile_wait,
            Arc::new(Metrics::new()),
        );
        let billing = config.billing.after_durable(&db);
        let market = Self { db, registry, master_key: config.master_key, runner, billing, mailer: config.mailer };
        plans::backfill(&market).await?;
        catalog::reprice_all(&market.db).await?;
        catalog::index_all(&market.db).await?;
        Ok(market)
    }

    /// Publishes a version, then updates its listing and the installs that follow it.
    /// The component is loaded by this node's host before anything is stored, so one the
    /// host would refuse (over its per-plugin limits) is refused at publish, and the first
    /// invocation finds it compiled.
    ///
    /// The component is compiled on this node as part of the publish, so a refusal by the
    /// host's limits is the publish's answer and the version is ready when it is stored.
    /// A compile that takes longer than [`PUBLISH_COMPILE_WAIT`] (a Python component on a
    /// busy machine) goes on in the background: the version is stored, the answer says so,
    /// and should the host refuse it after all, the version is yanked with the reason.
    pub async fn publish(
        self: &Arc<Self>,
        caller: &Credential,
        request: PublishRequest,
    ) -> Result<Published, MarketError> {
        nexus_registry::publish::validate(caller, &request)?;
        crate::partner_program::require_current_agreement(self, caller.publisher.as_str()).await?;
        let manifest = nexus_registry::manifest::Manifest::from_toml(&request.manifest).map_err(RegistryError::from)?;
        plans::check_manifest(&manifest)?;
        let compiling = match self.runner.load_within(request.component.clone(), PUBLISH_COMPILE_WAIT).await {
            Loading::Ready(_) => None,
            Loading::Refused(e) => return Err(MarketError::Registry(nexus_registry::RegistryError::Component(e))),
            Loading::Compiling(task) => Some(task),
        };
        let mut published = self.registry.publish(caller, request).await?;
        if let Some(task) = compiling {
            published.warnings.push(format!(
                "the component is still compiling on this node (over {} s); its first events may be answered \
                 `host_busy` until it is ready",
                PUBLISH_COMPILE_WAIT.as_secs()
            ));
            let (market, caller, version) = (self.clone(), caller.clone(), published.version.clone());
            let id: PluginId = published.id.parse().map_err(nexus_registry::RegistryError::from)?;
            tokio::spawn(async move {
                if let Ok(Err(refusal)) = task.await {
                    market.refused_after_publish(&caller, &id, &version, &refusal).await;
                }
            });
        }
        let id: PluginId = published.id.parse().map_err(nexus_registry::RegistryError::from)?;
        let detail = json!({ "version": published.version, "digest": published.digest.to_string(),
                             "signed_by": published.signed_by });
        audit::record(self.db.writer(), &actor(caller), "version.published", &published.id, detail).await?;
        if let Err(error) = plans::seed(self, &id, &manifest, &actor(caller)).await {
            tracing::error!(plugin = %id, %error, "plans not seeded from the manifest");
        }
        self.after_version_change(&id).await?;
        Ok(published)
    }

    /// Compiles an installed version on this node in the background, so the install's first
    /// event finds it ready (compiling is never part of a tenant's event).
    pub fn warm_in_background(self: &Arc<Self>, plugin: &str, version: &str) {
        let (market, plugin, version) = (self.clone(), plugin.to_string(), version.to_string());
        tokio::spawn(async move { market.runner.warm_version(&market, &plugin, &version).await });
    }

    /// A version the host refused once its background compile ended: yanked with the reason,
    /// so no install runs it and its publisher sees why.
    async fn refused_after_publish(&self, caller: &Credential, id: &PluginId, version: &str, refusal: &LoadError) {
        let reason = format!("refused by the host after publishing [{}]: {refusal}", refusal.code());
        let yanked = match version.parse::<Version>() {
            Ok(version) => self.yank(caller, id, &version, &reason, None).await.map(drop),
            Err(error) => Err(MarketError::invalid(ErrorCode::InvalidVersion, error.to_string())),
        };
        match yanked {
            Ok(()) => tracing::warn!(plugin = %id, version, %reason, "version yanked"),
            Err(error) => tracing::error!(plugin = %id, version, %error, %reason, "refused version not yanked"),
        }
    }

    /// Revokes a signing key, then tells every node to verify what it cached again: a
    /// component the key verified stops running on every node at its next event.
    pub async fn revoke_key(&self, caller: &Credential, fingerprint: &str) -> Result<(), MarketError> {
        self.registry.revoke_key(caller, fingerprint).await?;
        sqlx::query("UPDATE cache_generation SET generation = generation + 1 WHERE id = 1")
            .execute(self.db.writer())
            .await?;
        Ok(())
    }

    /// Yanks a version, then updates its listing and the installs that follow it.
    pub async fn yank(
        &self,
        caller: &Credential,
        id: &PluginId,
        version: &Version,
        reason: &str,
        successor: Option<&Version>,
    ) -> Result<VersionRecord, MarketError> {
        let record = self.registry.yank(caller, id, version, reason, successor).await?;
        let detail = json!({ "version": version.to_string(), "reason": reason });
        audit::record(self.db.writer(), &actor(caller), "version.yanked", &id.to_string(), detail).await?;
        self.after_version_change(id).await?;
        Ok(record)
    }

    /// The version change stands once the registry committed it; a failure to update the
    /// listing or the installs is logged (the next change of the plugin redoes both) rather
    /// than reported as a failed publish the publisher would retry into `version_exists`.
    async fn after_version_change(&self, id: &PluginId) -> Result<(), MarketError> {
        if let Err(error) = catalog::refresh(&self.db, &self.registry, id).await {
            tracing::error!(plugin = %id, %error, "listing not refreshed");
        }
        if let Err(error) = installs::follow_versions(self, id).await {
            tracing::error!(plugin = %id, %error, "installs not moved to the new version");
        }
        Ok(())
    }
}

fn actor(credential: &Credential) -> String {
    crate::accounts::Caller::Publisher(credential.clone()).actor()
}
