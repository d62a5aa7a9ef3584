//! Reading versions back: listing, resolution, fetching verified bytes, checking
//! signatures again, and yanking.

use nexus_host::Digest;
use semver::{Version, VersionReq};
use serde::Serialize;

use crate::artifacts::ArtifactStore;
use crate::db::{Db, now_ms, storage};
use crate::error::RegistryError;
use crate::id::PluginId;
use crate::manifest::Manifest;
use crate::publish::version_key;
use crate::publishers::{self, Credential, Scope};
use crate::signature::{Signature, signing_message};

/// Why and when a version was yanked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Yank {
    pub at: i64,
    pub reason: String,
    /// The version to move to instead, if the publisher named one.
    pub successor: Option<String>,
}

/// One published version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRecord {
    pub id: String,
    pub version: Version,
    pub digest: Digest,
    pub size: u64,
    pub contract: String,
    pub published_at: i64,
    pub signature: Option<String>,
    pub key_fingerprint: Option<String>,
    pub yank: Option<Yank>,
    pub manifest: Manifest,
}

const COLUMNS: &str = "plugin_id, version, digest, size, contract, published_at, signature, key_fingerprint, \
                       yanked_at, yank_reason, yank_successor, manifest";

/// A row of [`COLUMNS`], as stored: its version, digest and manifest still text.
#[derive(sqlx::FromRow)]
struct VersionRow {
    plugin_id: String,
    version: String,
    digest: String,
    size: i64,
    contract: String,
    published_at: i64,
    signature: Option<String>,
    key_fingerprint: Option<String>,
    yanked_at: Option<i64>,
    yank_reason: Option<String>,
    yank_successor: Option<String>,
    manifest: String,
}

impl TryFrom<VersionRow> for VersionRecord {
    type Error = RegistryError;

    fn try_from(row: VersionRow) -> Result<Self, RegistryError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| RegistryError::Storage(format!("stored {what}: {e}"));
        Ok(VersionRecord {
            id: row.plugin_id,
            version: row.version.parse().map_err(|e| corrupt("version", &e))?,
            digest: row.digest.parse().map_err(|e| corrupt("digest", &e))?,
            size: u64::try_from(row.size).unwrap_or(0),
            contract: row.contract,
            published_at: row.published_at,
            signature: row.signature,
            key_fingerprint: row.key_fingerprint,
            yank: row.yanked_at.map(|at| Yank {
                at,
                reason: row.yank_reason.unwrap_or_default(),
                successor: row.yank_successor,
            }),
            manifest: serde_json::from_str(&row.manifest).map_err(|e| corrupt("manifest", &e))?,
        })
    }
}

/// A development version: a pre-release whose first identifier is `dev` (`1.2.0-dev.4`),
/// numbered by the registry for `nexus dev --marketplace`. Never listed, never resolved but
/// for the publisher's development tenants, pruned when newer ones come.
pub fn is_dev(version: &Version) -> bool {
    let pre = version.pre.as_str();
    pre == "dev" || pre.starts_with("dev.")
}

/// Every released (not development) version of `id`, newest first.
pub async fn list(db: &Db, id: &PluginId) -> Result<Vec<VersionRecord>, RegistryError> {
    let rows = sqlx::query_as::<_, VersionRow>(&format!("SELECT {COLUMNS} FROM plugin_versions WHERE plugin_id = $1"))
        .bind(id.to_string())
        .fetch_all(&db.pool)
        .await
        .map_err(storage)?;
    let mut records = rows.into_iter().map(VersionRecord::try_from).collect::<Result<Vec<_>, _>>()?;
    records.retain(|record| !is_dev(&record.version));
    records.sort_by(|a, b| b.version.cmp(&a.version));
    if records.is_empty() {
        return Err(RegistryError::NotFound(format!("plugin {id}")));
    }
    Ok(records)
}

/// One version of `id`.
pub async fn get(db: &Db, id: &PluginId, version: &Version) -> Result<VersionRecord, RegistryError> {
    let sql = format!("SELECT {COLUMNS} FROM plugin_versions WHERE plugin_id = $1 AND version_key = $2");
    sqlx::query_as::<_, VersionRow>(&sql)
        .bind(id.to_string())
        .bind(version_key(version))
        .fetch_optional(&db.pool)
        .await
        .map_err(storage)?
        .ok_or_else(|| RegistryError::NotFound(format!("{id}@{version}")))?
        .try_into()
}

/// Every development version of `id`, newest first.
pub async fn dev_list(db: &Db, id: &PluginId) -> Result<Vec<Version>, RegistryError> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT version FROM plugin_versions WHERE plugin_id = $1")
        .bind(id.to_string())
        .fetch_all(&db.pool)
        .await
        .map_err(storage)?;
    let mut versions: Vec<Version> = rows.iter().filter_map(|v| v.parse().ok()).filter(is_dev).collect();
    versions.sort_by(|a, b| b.cmp(a));
    Ok(versions)
}

/// The highest non-yanked version of `id` matching `requirement`; development versions
/// only when `with_dev` (the caller checked the tenant may have them).
pub async fn resolve(
    db: &Db,
    id: &PluginId,
    requirement: &VersionReq,
    with_dev: bool,
) -> Result<VersionRecord, RegistryError> {
    // Only the two columns resolution needs: with 10,000 versions the manifests would
    // dominate the query.
    let rows: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT version, yanked_at FROM plugin_versions WHERE plugin_id = $1")
            .bind(id.to_string())
            .fetch_all(&db.pool)
            .await
            .map_err(storage)?;
    let mut candidates = Vec::with_capacity(rows.len());
    for (version, yanked_at) in &rows {
        let yanked = yanked_at.is_some();
        if let Ok(version) = version.parse::<Version>()
            && (with_dev || !is_dev(&version))
        {
            candidates.push((version, yanked));
        }
    }
    let chosen = crate::resolve::resolve(requirement, candidates.iter().map(|(v, y)| (v, *y)))
        .cloned()
        .ok_or_else(|| RegistryError::NoMatchingVersion { id: id.to_string(), requirement: requirement.to_string() })?;
    get(db, id, &chosen).await
}

/// The version's bytes, verified against its digest.
pub async fn fetch(
    db: &Db,
    artifacts: &ArtifactStore,
    id: &PluginId,
    version: &Version,
) -> Result<(VersionRecord, Vec<u8>), RegistryError> {
    let record = get(db, id, version).await?;
    let bytes = artifacts.get(&record.digest).await?;
    Ok((record, bytes))
}

/// Checks a version's signature again, against the publisher's keys as they are now: a
/// revoked key's signatures no longer verify. Returns the signing key's fingerprint, or
/// `None` for an unsigned version.
pub async fn verify_signature(db: &Db, id: &PluginId, record: &VersionRecord) -> Result<Option<String>, RegistryError> {
    let (Some(signature), Some(fingerprint)) = (&record.signature, &record.key_fingerprint) else {
        return Ok(None);
    };
    let key = publishers::active_key(db, &id.publisher, fingerprint).await?;
    let signature: Signature = signature.parse()?;
    key.verify(&signing_message(id, &record.version, &record.digest), &signature)?;
    Ok(Some(fingerprint.clone()))
}

/// Yanks a version: never chosen for new installs again; existing installs keep running and
/// are told. Yanking again replaces the reason and successor.
pub async fn yank(
    db: &Db,
    caller: &Credential,
    id: &PluginId,
    version: &Version,
    reason: &str,
    successor: Option<&Version>,
) -> Result<VersionRecord, RegistryError> {
    caller.require(Scope::Yank)?;
    if id.publisher != caller.publisher {
        return Err(RegistryError::NamespaceNotOwned { namespace: id.publisher.to_string() });
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(RegistryError::InvalidRequest("a yank needs a reason of 1 to 500 characters".into()));
    }
    get(db, id, version).await?;
    if let Some(successor) = successor {
        let next = get(db, id, successor).await?;
        if next.yank.is_some() || successor == version {
            return Err(RegistryError::InvalidRequest(format!(
                "successor {successor} is itself yanked or the same version"
            )));
        }
    }
    sqlx::query(
        "UPDATE plugin_versions SET yanked_at = $1, yank_reason = $2, yank_successor = $3 \
         WHERE plugin_id = $4 AND version_key = $5",
    )
    .bind(now_ms())
    .bind(reason)
    .bind(successor.map(ToString::to_string))
    .bind(id.to_string())
    .bind(version_key(version))
    .execute(db.writer())
    .await
    .map_err(storage)?;
    get(db, id, version).await
}
