//! The Nexus registry: plugin artifacts and versions. It owns content-addressed artifact
//! storage, manifests, semver resolution, publish validation, signatures, yanking and
//! publisher credentials. It must not route HTTP: the marketplace server exposes
//! [`Registry`] over HTTP and the `nexus` CLI drives it.
//!
//! Rules it keeps: a `name@version` is published once, ever (yanked or not); bytes are
//! addressed and verified by sha256 on every read; nothing is stored unless every check
//! passed.

pub mod artifacts;
pub mod db;
pub mod error;
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
pub use db::{Backend, Db};
pub use error::RegistryError;
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

/// The registry: a database, an artifact store and the publish rate limiter (per node).
pub struct Registry {
    db: Db,
    artifacts: ArtifactStore,
    publish_limiter: Limiter,
}

impl Registry {
    pub fn new(db: Db, artifacts: ArtifactStore) -> Self {
        Self::with_publish_rate(db, artifacts, PUBLISHES_PER_MINUTE)
    }

    pub fn with_publish_rate(db: Db, artifacts: ArtifactStore, per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self { db, artifacts, publish_limiter: RateLimiter::keyed(Quota::per_minute(per_minute)) }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn create_publisher(
        &self,
        name: &PublisherName,
        display_name: &str,
    ) -> Result<IssuedToken, RegistryError> {
        publishers::create_publisher(&self.db, name, display_name).await
    }

    pub async fn issue_token(
        &self,
        caller: &Credential,
        scopes: BTreeSet<Scope>,
        label: &str,
        expires_at: Option<i64>,
    ) -> Result<IssuedToken, RegistryError> {
        caller.require(Scope::Keys)?;
        publishers::issue_token(&self.db, &caller.publisher, scopes, label, expires_at).await
    }

    pub async fn authenticate(&self, secret: &str) -> Result<Credential, RegistryError> {
        publishers::authenticate(&self.db, secret).await
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
        if let Err(not_until) = self.publish_limiter.check_key(&caller.publisher.to_string()) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry_after = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
            return Err(RegistryError::RateLimited { retry_after });
        }
        publish::publish(&self.db, &self.artifacts, caller, request).await
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

    pub async fn resolve(&self, id: &PluginId, requirement: &VersionReq) -> Result<VersionRecord, RegistryError> {
        versions::resolve(&self.db, id, requirement).await
    }

    /// The version's record and its bytes, verified against the digest.
    pub async fn fetch(&self, id: &PluginId, version: &Version) -> Result<(VersionRecord, Vec<u8>), RegistryError> {
        versions::fetch(&self.db, &self.artifacts, id, version).await
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
