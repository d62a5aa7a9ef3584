//! The Nexus registry: plugin artifacts and versions. It owns content-addressed artifact
//! storage, manifests, semver resolution, publish validation, signatures, yanking and
//! publisher credentials. It must not route HTTP: the marketplace server exposes
//! [`Registry`] over HTTP and the `nexus` CLI drives it. It also holds [`ErrorCode`], the one
//! list of error codes the service answers with, since registry errors carry codes too.
//!
//! Rules it keeps: a `name@version` is published once, ever (yanked or not); bytes are
//! addressed and verified by sha256 on every read; nothing is stored unless every check
//! passed.

pub mod artifacts;
pub mod cron;
pub mod db;
pub mod error;
pub mod error_code;
pub mod id;
pub mod manifest;
pub mod publish;
pub mod publishers;
pub mod resolve;
pub mod signature;
pub mod text;
pub mod versions;

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use semver::{Version, VersionReq};

pub use artifacts::ArtifactStore;
pub use db::{Backend, Db, DbLimits};
pub use error::RegistryError;
pub use error_code::ErrorCode;
pub use id::{PluginId, PluginName, PublisherName};
pub use manifest::Manifest;
pub use publish::{MAX_COMPONENT_BYTES, PublishRequest, Published, SignedBy};
pub use publishers::{Credential, IssuedToken, KeyInfo, Scope};
pub use signature::{PublicKey, SecretKey, Signature};
pub use versions::{VersionRecord, Yank};

/// Publishes allowed per publisher per minute, in a burst: enough for a release script,
/// few enough that a leaked token cannot fill the artifact store.
pub const PUBLISHES_PER_MINUTE: u32 = 10;

type Limiter = RateLimiter<String, governor::state::keyed::DefaultKeyedStateStore<String>, DefaultClock>;

/// The registry: a database, an artifact store and the publish rate limiter. With several
/// nodes the configured rate is divided among the live ones ([`Registry::share_among`]).
pub struct Registry {
    db: Db,
    artifacts: ArtifactStore,
    per_minute: u32,
    /// The live nodes the rate is divided among, and this node's limiter for its share.
    publish_limiter: std::sync::RwLock<(u32, std::sync::Arc<Limiter>)>,
}

fn publish_limiter(per_minute: u32, nodes: u32) -> std::sync::Arc<Limiter> {
    let share = NonZeroU32::new(per_minute / nodes.max(1)).unwrap_or(NonZeroU32::MIN);
    std::sync::Arc::new(RateLimiter::keyed(Quota::per_minute(share)))
}

impl Registry {
    pub fn new(db: Db, artifacts: ArtifactStore) -> Self {
        Self::with_publish_rate(db, artifacts, PUBLISHES_PER_MINUTE)
    }

    pub fn with_publish_rate(db: Db, artifacts: ArtifactStore, per_minute: u32) -> Self {
        let limiter = publish_limiter(per_minute, 1);
        Self { db, artifacts, per_minute, publish_limiter: std::sync::RwLock::new((1, limiter)) }
    }

    /// Divides the publish rate among `nodes` live nodes (each allows its share), so the
    /// configured rate holds for the whole marketplace. A change starts a fresh limiter.
    pub fn share_among(&self, nodes: u32) {
        let mut current = self.publish_limiter.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != nodes.max(1) {
            *current = (nodes.max(1), publish_limiter(self.per_minute, nodes));
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The content-addressed store of artifact bytes. The marketplace keeps listing media in
    /// it too, so several nodes on one PostgreSQL share them as they share components.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    pub async fn create_publisher(
        &self,
        name: &PublisherName,
        display_name: &str,
        created_by: &str,
    ) -> Result<IssuedToken, RegistryError> {
        publishers::create_publisher(&self.db, name, display_name, created_by).await
    }

    pub async fn issue_token(
        &self,
        caller: &Credential,
        scopes: BTreeSet<Scope>,
        label: &str,
        expires_at: Option<i64>,
        created_by: &str,
    ) -> Result<IssuedToken, RegistryError> {
        caller.require(Scope::Keys)?;
        let issuer = publishers::Issuer::by(created_by);
        publishers::issue_token(&self.db, &caller.publisher, scopes, label, expires_at, &issuer).await
    }

    pub async fn authenticate(&self, secret: &str) -> Result<Credential, RegistryError> {
        publishers::authenticate(&self.db, secret).await
    }

    /// [`Registry::authenticate`] for a token known by its stored hash.
    pub async fn authenticate_hash(&self, hash: &str) -> Result<Credential, RegistryError> {
        publishers::authenticate_hash(&self.db, hash).await
    }

    pub async fn revoke_token(&self, caller: &Credential, token_id: &str) -> Result<(), RegistryError> {
        publishers::revoke_token(&self.db, caller, token_id).await
    }

    pub async fn add_key(&self, caller: &Credential, key: &PublicKey) -> Result<KeyInfo, RegistryError> {
        publishers::add_key(&self.db, caller, key).await
    }

    pub async fn revoke_key(&self, caller: &Credential, fingerprint: &str) -> Result<(), RegistryError> {
        publishers::revoke_key(&self.db, caller, fingerprint).await
    }

    pub async fn keys(&self, publisher: &PublisherName) -> Result<Vec<KeyInfo>, RegistryError> {
        publishers::keys(&self.db, publisher).await
    }

    /// Publishes a version; attempts count against the publisher's rate limit.
    pub async fn publish(&self, caller: &Credential, request: PublishRequest) -> Result<Published, RegistryError> {
        self.take_publish(caller)?;
        publish::publish(&self.db, &self.artifacts, caller, request).await
    }

    /// One of the publisher's publishes per minute, releases and development versions alike
    /// (each stores its bytes), or `rate_limited` with the wait.
    fn take_publish(&self, caller: &Credential) -> Result<(), RegistryError> {
        let limiter = self.publish_limiter.read().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone();
        if let Err(not_until) = limiter.check_key(&caller.publisher.to_string()) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry_after = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
            return Err(RegistryError::RateLimited { retry_after });
        }
        Ok(())
    }

    pub async fn yank(
        &self,
        caller: &Credential,
        id: &PluginId,
        version: &Version,
        reason: &str,
        successor: Option<&Version>,
    ) -> Result<VersionRecord, RegistryError> {
        versions::yank(&self.db, caller, id, version, reason, successor).await
    }

    pub async fn versions(&self, id: &PluginId) -> Result<Vec<VersionRecord>, RegistryError> {
        versions::list(&self.db, id).await
    }

    pub async fn version(&self, id: &PluginId, version: &Version) -> Result<VersionRecord, RegistryError> {
        versions::get(&self.db, id, version).await
    }

    /// The version a requirement resolves to among the released ones.
    pub async fn resolve(&self, id: &PluginId, requirement: &VersionReq) -> Result<VersionRecord, RegistryError> {
        versions::resolve(&self.db, id, requirement, false).await
    }

    /// The same with development versions among the candidates: only for a tenant the
    /// caller checked is one of the publisher's development tenants.
    pub async fn resolve_with_dev(
        &self,
        id: &PluginId,
        requirement: &VersionReq,
    ) -> Result<VersionRecord, RegistryError> {
        versions::resolve(&self.db, id, requirement, true).await
    }

    /// Publishes a development version of the manifest's release (`1.2.0-dev.N`, the next
    /// N), leaving the release number itself free.
    pub async fn publish_dev(&self, caller: &Credential, request: PublishRequest) -> Result<Published, RegistryError> {
        self.take_publish(caller)?;
        publish::publish_dev(&self.db, &self.artifacts, caller, request).await
    }

    /// Deletes the development versions of `id` but the newest `keep` and those in `in_use`.
    pub async fn prune_dev(
        &self,
        id: &PluginId,
        keep: usize,
        in_use: &[Version],
    ) -> Result<Vec<Version>, RegistryError> {
        publish::prune_dev(&self.db, id, keep, in_use).await
    }

    /// The version's record and its bytes, verified against the digest.
    pub async fn fetch(&self, id: &PluginId, version: &Version) -> Result<(VersionRecord, Vec<u8>), RegistryError> {
        versions::fetch(&self.db, &self.artifacts, id, version).await
    }

    /// The bytes of a version whose record the caller already holds, verified against its
    /// digest.
    pub async fn component(&self, record: &VersionRecord) -> Result<Vec<u8>, RegistryError> {
        self.artifacts.get(&record.digest).await
    }

    /// Checks a version's signature against the publisher's current keys.
    pub async fn verify_signature(
        &self,
        id: &PluginId,
        record: &VersionRecord,
    ) -> Result<Option<String>, RegistryError> {
        versions::verify_signature(&self.db, id, record).await
    }
}
