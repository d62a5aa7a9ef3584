//! Publishing a version: every check before anything is stored, then the artifact and the
//! version row. The version row's primary key makes `name@version` immutable: of two
//! concurrent publishes of one version exactly one inserts, the other gets `version_exists`.

use nexus_host::contract::{self, Inspection};
use nexus_host::{Capability, Digest};
use serde::Serialize;

use crate::artifacts::ArtifactStore;
use crate::db::{Db, is_unique_violation, now_ms, storage};
use crate::error::RegistryError;
use crate::id::PublisherName;
use crate::manifest::Manifest;
use crate::publishers::{self, Credential, Scope};
use crate::signature::{Signature, signing_message};

/// Largest component accepted: a componentize-py plugin is about 18 MB.
pub const MAX_COMPONENT_BYTES: u64 = 32 << 20;

/// What a client uploads.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The `nexus.toml` text.
    pub manifest: String,
    pub component: Vec<u8>,
    /// The sha256 the client computed (`sha256:<hex>` or hex); checked against the upload.
    pub claimed_digest: Option<String>,
    /// A signature of [`signing_message`] by one of the publisher's keys.
    pub signature: Option<SignedBy>,
}

#[derive(Debug, Clone)]
pub struct SignedBy {
    pub key_fingerprint: String,
    pub signature: Signature,
}

/// What the registry stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub id: String,
    pub version: String,
    pub digest: Digest,
    pub size: u64,
    pub contract: nexus_host::ContractVersion,
    pub signed_by: Option<String>,
    /// Problems that do not stop the publish, such as capabilities declared but unused.
    pub warnings: Vec<String>,
}

/// Checks everything that can be checked without the database, in the order a builder
/// would want to hear about problems.
pub fn validate(
    caller: &Credential,
    request: &PublishRequest,
) -> Result<(Manifest, Digest, Vec<String>), RegistryError> {
    caller.require(Scope::Publish)?;
    check(request, Some(&caller.publisher))
}

/// The checks of [`validate`] that need no credential: what `nexus plugin check` runs on a
/// builder's machine before anything is uploaded. The namespace is checked when the
/// publisher is known.
pub fn check(
    request: &PublishRequest,
    publisher: Option<&PublisherName>,
) -> Result<(Manifest, Digest, Vec<String>), RegistryError> {
    let size = request.component.len() as u64;
    if size > MAX_COMPONENT_BYTES {
        return Err(RegistryError::TooLarge { size, max: MAX_COMPONENT_BYTES });
    }
    let digest = Digest::of(&request.component);
    if let Some(claimed) = &request.claimed_digest
        && claimed.parse::<Digest>().ok() != Some(digest)
    {
        return Err(RegistryError::DigestMismatch { claimed: claimed.clone(), actual: digest });
    }
    let manifest = Manifest::from_toml(&request.manifest)?;
    if let Some(publisher) = publisher
        && manifest.id.publisher != *publisher
    {
        return Err(RegistryError::NamespaceNotOwned { namespace: manifest.id.publisher.to_string() });
    }
    let inspection = contract::inspect(&request.component).map_err(RegistryError::Component)?;
    if !inspection.contract.is_published() {
        return Err(RegistryError::ContractNotPublished { detected: inspection.contract.to_string() });
    }
    if inspection.contract != manifest.contract {
        return Err(RegistryError::ContractMismatch {
            declared: manifest.contract.to_string(),
            detected: inspection.contract.to_string(),
        });
    }
    let mut warnings = check_capabilities(&manifest, &inspection)?;
    warnings.extend(internal_host_warnings(&manifest));
    warnings.extend(Manifest::deprecations(&request.manifest));
    Ok((manifest, digest, warnings))
}

/// Every capability the component imports must be declared; declared ones it does not
/// import are only warned about (a builder may add the call in the next version).
fn check_capabilities(manifest: &Manifest, inspection: &Inspection) -> Result<Vec<String>, RegistryError> {
    let declared = manifest.capability_set();
    for needed in &inspection.capabilities {
        // The `config` interface serves both config values and secrets.
        let satisfied = match needed {
            Capability::Config => declared.contains(&Capability::Config) || declared.contains(&Capability::Secrets),
            other => declared.contains(other),
        };
        if !satisfied {
            let needs = if *needed == Capability::Config { "config or secrets".into() } else { needed.to_string() };
            return Err(RegistryError::UndeclaredCapability { interface: needed.to_string(), needs });
        }
    }
    let imported = |c: &Capability| match c {
        Capability::Secrets => inspection.capabilities.contains(&Capability::Config),
        other => inspection.capabilities.contains(other),
    };
    Ok(declared
        .iter()
        .filter(|c| !imported(c))
        .map(|c| format!("capability {c} is declared but the component never uses it"))
        .collect())
}

/// Hosts a hosted marketplace will not connect to (loopback, private, metadata; names
/// reserved for local networks): tenants could consent to them, but `nexus serve` refuses
/// the connection unless its operator allows the range.
fn internal_host_warnings(manifest: &Manifest) -> Vec<String> {
    manifest
        .requested_hosts()
        .iter()
        .filter(|pattern| nexus_host::capability::http::names_internal_host(pattern.host()))
        .map(|pattern| {
            format!(
                "host {pattern} is a loopback, private or metadata address; `nexus serve` refuses to connect to it \
                 unless the operator allows the range (--allow-private-network)"
            )
        })
        .collect()
}

/// Validates, verifies the signature, stores the artifact, and records the version.
pub async fn publish(
    db: &Db,
    artifacts: &ArtifactStore,
    caller: &Credential,
    request: PublishRequest,
) -> Result<Published, RegistryError> {
    let (manifest, digest, warnings) = validate(caller, &request)?;
    refuse_dev_name(&manifest)?;
    let signed_by = match &request.signature {
        Some(signed) => {
            let key = publishers::active_key(db, &caller.publisher, &signed.key_fingerprint).await?;
            key.verify(&signing_message(&manifest.id, &manifest.version, &digest), &signed.signature)?;
            Some(signed.key_fingerprint.clone())
        }
        None => None,
    };
    let id = manifest.id.to_string();
    let version_key = version_key(&manifest.version);
    // Refuse early, before the bytes are stored; the insert below is what guarantees it.
    let existing: Option<String> =
        sqlx::query_scalar("SELECT version FROM plugin_versions WHERE plugin_id = $1 AND version_key = $2")
            .bind(&id)
            .bind(&version_key)
            .fetch_optional(&db.pool)
            .await
            .map_err(storage)?;
    if let Some(version) = existing {
        return Err(RegistryError::VersionExists { id, version });
    }
    artifacts.put(&digest, &request.component).await?;
    insert_version(db, &manifest, &digest, request.component.len() as u64, &request.signature, &version_key).await?;
    Ok(Published {
        id,
        version: manifest.version.to_string(),
        digest,
        size: request.component.len() as u64,
        contract: manifest.contract,
        signed_by,
        warnings,
    })
}

fn refuse_dev_name(manifest: &Manifest) -> Result<(), RegistryError> {
    if crate::versions::is_dev(&manifest.version) {
        return Err(RegistryError::VersionReservedForDev {
            id: manifest.id.to_string(),
            version: manifest.version.to_string(),
        });
    }
    Ok(())
}

/// How many times a development publish takes the next number when another took it first.
const DEV_NUMBER_ATTEMPTS: usize = 8;

/// Publishes the working copy as `<major>.<minor>.<patch>-dev.<N>` of the manifest's
/// version, N one more than the highest of that release so far, unsigned. The release
/// number stays free: `1.2.0` can be published after `1.2.0-dev.7`. Two development
/// publishes at once each get their own N (the version row's key decides; the loser takes
/// the next).
pub async fn publish_dev(
    db: &Db,
    artifacts: &ArtifactStore,
    caller: &Credential,
    request: PublishRequest,
) -> Result<Published, RegistryError> {
    let (mut manifest, digest, warnings) = validate(caller, &request)?;
    refuse_dev_name(&manifest)?;
    let release = semver::Version::new(manifest.version.major, manifest.version.minor, manifest.version.patch);
    artifacts.put(&digest, &request.component).await?;
    let size = request.component.len() as u64;
    for _ in 0..DEV_NUMBER_ATTEMPTS {
        let taken = crate::versions::dev_list(db, &manifest.id).await?;
        let highest = taken
            .iter()
            .filter(|v| (v.major, v.minor, v.patch) == (release.major, release.minor, release.patch))
            .filter_map(|v| v.pre.as_str().strip_prefix("dev.")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let mut version = release.clone();
        version.pre = semver::Prerelease::new(&format!("dev.{}", highest + 1))
            .map_err(|e| RegistryError::InvalidVersion(format!("{release}-dev.{}: {e}", highest + 1)))?;
        manifest.version = version;
        match insert_version(db, &manifest, &digest, size, &None, &version_key(&manifest.version)).await {
            Err(RegistryError::VersionExists { .. }) => continue,
            Err(error) => return Err(error),
            Ok(()) => {
                return Ok(Published {
                    id: manifest.id.to_string(),
                    version: manifest.version.to_string(),
                    digest,
                    size,
                    contract: manifest.contract,
                    signed_by: None,
                    warnings,
                });
            }
        }
    }
    Err(RegistryError::VersionExists { id: manifest.id.to_string(), version: manifest.version.to_string() })
}

/// Deletes development versions of `id` beyond the newest `keep`, except those in `in_use`
/// (what installs run or wait for); the deleted ones, newest first. Their bytes stay in the
/// artifact store, which other versions may share.
pub async fn prune_dev(
    db: &Db,
    id: &crate::id::PluginId,
    keep: usize,
    in_use: &[semver::Version],
) -> Result<Vec<semver::Version>, RegistryError> {
    let gone: Vec<semver::Version> = crate::versions::dev_list(db, id)
        .await?
        .into_iter()
        .skip(keep)
        .filter(|version| !in_use.contains(version))
        .collect();
    for version in &gone {
        sqlx::query("DELETE FROM plugin_versions WHERE plugin_id = $1 AND version_key = $2")
            .bind(id.to_string())
            .bind(version_key(version))
            .execute(db.writer())
            .await
            .map_err(storage)?;
    }
    Ok(gone)
}

/// Build metadata does not make a new version (semver precedence ignores it).
pub(crate) fn version_key(version: &semver::Version) -> String {
    let mut key = version.clone();
    key.build = semver::BuildMetadata::EMPTY;
    key.to_string()
}

async fn insert_version(
    db: &Db,
    manifest: &Manifest,
    digest: &Digest,
    size: u64,
    signature: &Option<SignedBy>,
    version_key: &str,
) -> Result<(), RegistryError> {
    let id = manifest.id.to_string();
    let manifest_json = serde_json::to_string(manifest).map_err(storage)?;
    let mut tx = db.write_tx().await.map_err(storage)?;
    sqlx::query("INSERT INTO plugins (id, publisher, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
        .bind(&id)
        .bind(manifest.id.publisher.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
    let inserted = sqlx::query(
        "INSERT INTO plugin_versions (plugin_id, version_key, version, digest, size, contract, manifest, signature, \
         key_fingerprint, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(version_key)
    .bind(manifest.version.to_string())
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(contract_text(manifest.contract))
    .bind(manifest_json)
    .bind(signature.as_ref().map(|s| s.signature.to_string()))
    .bind(signature.as_ref().map(|s| s.key_fingerprint.clone()))
    .bind(now_ms())
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(error) if is_unique_violation(&error) => {
            return Err(RegistryError::VersionExists { id, version: manifest.version.to_string() });
        }
        other => other.map_err(storage)?,
    };
    tx.commit().await.map_err(storage)
}

pub(crate) fn contract_text(contract: nexus_host::ContractVersion) -> String {
    serde_json::to_value(contract).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
