//! Components for the runner: each version loaded once per node and kept by the generation
//! it was verified at; compiles run in tasks of their own, so that an event waits for one at
//! most [`EVENT_COMPILE_WAIT`] and a large component's first compile never holds a request.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use nexus_host::{LoadError, Plugin};
use nexus_registry::ErrorCode;

use super::{BUSY_RETRY_AFTER, Runner};
use crate::error::{BusyReason, MarketError};
use crate::installs::Target;
use crate::market::Market;

impl Runner {
    /// Loads a component in a task of its own, so that a caller who stops waiting does not
    /// stop the compile: the host keeps the result in memory and in its disk cache.
    pub fn warm(&self, bytes: Vec<u8>) -> tokio::task::JoinHandle<Result<Arc<Plugin>, LoadError>> {
        let host = self.host.clone();
        tokio::spawn(async move { host.load(&bytes).await.map(|(plugin, _)| plugin) })
    }

    /// [`Runner::warm`], waiting at most `wait` for the result.
    pub async fn load_within(&self, bytes: Vec<u8>, wait: Duration) -> Loading {
        let mut task = self.warm(bytes);
        match tokio::time::timeout(wait, &mut task).await {
            Ok(Ok(Ok(plugin))) => Loading::Ready(plugin),
            Ok(Ok(Err(error))) => Loading::Refused(error),
            Ok(Err(join)) => Loading::Refused(LoadError::Cache(format!("the compile task failed: {join}"))),
            Err(_) => Loading::Compiling(task),
        }
    }

    /// Compiles, in the background, the versions this node's active installs run, so that
    /// their first events find them ready.
    pub async fn warm_installed(&self, market: &Market) -> Result<usize, MarketError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT DISTINCT plugin_id, version FROM installs WHERE status = 'active'")
                .fetch_all(&market.db.pool)
                .await?;
        for (plugin, version) in &rows {
            self.warm_version(market, plugin, version).await;
        }
        Ok(rows.len())
    }

    /// Starts compiling one version (fetched from the registry) in the background.
    pub async fn warm_version(&self, market: &Market, plugin: &str, version: &str) {
        let (Ok(id), Ok(version)) = (plugin.parse::<nexus_registry::PluginId>(), version.parse::<semver::Version>())
        else {
            return;
        };
        match market.registry.fetch(&id, &version).await {
            Ok((_, bytes)) => drop(self.warm(bytes)),
            Err(error) => tracing::warn!(plugin, %version, %error, "component not fetched for warming"),
        }
    }

    /// The component of `target`'s version: from memory, or fetched from the registry, its
    /// signature checked against the publisher's current keys, and loaded by the host.
    pub(super) async fn plugin(&self, market: &Market, target: &Target) -> Result<Arc<Plugin>, MarketError> {
        let key = format!("{}@{}", target.plugin, target.version);
        // Verified at or after the generation the target was read at: still good. Older: a
        // key was revoked since, so fetch and verify again.
        if let Some((verified, plugin)) = self.plugins.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && *verified >= target.generation
        {
            return Ok(plugin.clone());
        }
        let record = market.registry.version(&target.plugin, &target.version).await?;
        market.registry.verify_signature(&target.plugin, &record).await?;
        // The host keys what it loaded by the digest of the bytes, so one loaded in memory is
        // this version: taken without reading the artifact or starting a task (a busy
        // runtime cannot make a ready component look like a compile).
        let loading = match self.host.loaded(&record.digest) {
            Some(plugin) => Loading::Ready(plugin),
            None => {
                let bytes = market.registry.component(&record).await?;
                self.load_within(bytes, self.event_compile_wait).await
            }
        };
        let plugin = match loading {
            Loading::Ready(plugin) => plugin,
            Loading::Refused(e) => {
                return Err(MarketError::invalid(ErrorCode::ComponentRefused, format!("{key} cannot be loaded: {e}")));
            }
            Loading::Compiling(_) => {
                tracing::info!(plugin = %key, "component still compiling on this node; the event is answered busy");
                return Err(MarketError::HostBusy {
                    retry_after: BUSY_RETRY_AFTER,
                    reason: BusyReason::Compiling,
                    details: None,
                });
            }
        };
        self.plugins.lock().unwrap_or_else(PoisonError::into_inner).insert(key, (target.generation, plugin.clone()));
        Ok(plugin)
    }
}

/// How long an event waits for its component to compile on this node, unless
/// [`MarketConfig::event_compile_wait`](crate::market::MarketConfig) says otherwise. Past it
/// the event is answered `host_busy` (reason `compiling`; nothing ran, nothing is recorded)
/// while the compile goes on, so a large component's first compile never holds a tenant's
/// request.
pub const EVENT_COMPILE_WAIT: Duration = Duration::from_secs(2);

/// Where a load stands after [`Runner::load_within`].
pub enum Loading {
    Ready(Arc<Plugin>),
    Refused(LoadError),
    /// Still compiling; the task finishes it.
    Compiling(tokio::task::JoinHandle<Result<Arc<Plugin>, LoadError>>),
}
