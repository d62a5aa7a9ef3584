//! Artifact bytes addressed by sha256. Every read re-hashes the bytes: what does not match
//! its address is never returned, so it is never served or run.

use std::path::{Path, PathBuf};

use nexus_host::Digest;

use crate::db::{Db, is_unique_violation, storage};
use crate::error::RegistryError;

/// Where artifact bytes live.
#[derive(Debug, Clone)]
pub enum ArtifactStore {
    /// Files under a data folder: `<root>/sha256/<first two hex>/<hex>`. One node.
    Dir(PathBuf),
    /// The `artifacts` table, so several nodes sharing a PostgreSQL share artifacts.
    Db(Db),
}

impl ArtifactStore {
    /// Stores `bytes` under their digest. Storing the same bytes twice is a no-op.
    pub async fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
        debug_assert_eq!(&Digest::of(bytes), digest);
        match self {
            Self::Dir(root) => put_file(&path(root, digest), bytes),
            Self::Db(db) => {
                let insert = sqlx::query("INSERT INTO artifacts (digest, size, bytes) VALUES ($1, $2, $3)")
                    .bind(digest.to_string())
                    .bind(bytes.len() as i64)
                    .bind(bytes.to_vec())
                    .execute(db.writer())
                    .await;
                match insert {
                    Ok(_) => Ok(()),
                    Err(error) if is_unique_violation(&error) => Ok(()),
                    Err(error) => Err(storage(error)),
                }
            }
        }
    }

    /// The bytes stored under `digest`, verified against it.
    pub async fn get(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let bytes = match self {
            Self::Dir(root) => match std::fs::read(path(root, digest)) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(RegistryError::ArtifactMissing(*digest));
                }
                Err(e) => return Err(storage(e)),
            },
            Self::Db(db) => {
                let (bytes,): (Vec<u8>,) = sqlx::query_as("SELECT bytes FROM artifacts WHERE digest = $1")
                    .bind(digest.to_string())
                    .fetch_optional(&db.pool)
                    .await
                    .map_err(storage)?
                    .ok_or(RegistryError::ArtifactMissing(*digest))?;
                bytes
            }
        };
        if Digest::of(&bytes) != *digest {
            tracing::error!(%digest, "stored artifact does not match its digest; refusing to serve it");
            return Err(RegistryError::ArtifactCorrupt(*digest));
        }
        Ok(bytes)
    }
}

fn path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    root.join("sha256").join(&hex[..2]).join(hex)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn put_file(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    if path.exists() {
        return Ok(());
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| storage(format!("{}: {e}", folder.display())))?;
    // One temporary name per write: two publishes of the same bytes at once (a retry, a
    // race) each rename their own file into place; the content is the same either way.
    let temporary = path.with_extension(format!("tmp-{}", crate::publishers::random_hex(8)?));
    std::fs::write(&temporary, bytes).map_err(|e| storage(format!("{}: {e}", temporary.display())))?;
    std::fs::rename(&temporary, path).map_err(|e| storage(format!("{}: {e}", path.display())))
}
