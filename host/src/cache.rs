//! The on-disk cache of precompiled components. A file is named by the component's sha256
//! and the engine's compatibility hash, so a file from another wasmtime version or another
//! engine configuration is never even opened; each file carries a checksum of its contents,
//! so a corrupt or truncated file is detected, deleted and rebuilt rather than trusted.
//!
//! The folder is kept under a size budget: every store removes the least recently used
//! files (a hit renews a file's modification time) until the rest fit. Files of another
//! engine are never used again, so they age out first.

use std::hash::Hasher;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::digest::Digest;
use crate::error::LoadError;

/// File header: format tag, then the sha256 of the precompiled bytes that follow.
const MAGIC: &[u8; 8] = b"NXSCWSM1";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// The suffix of a cache file; temporary files being written have another.
const EXTENSION: &str = "cwasm";

#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    engine_hash: String,
    max_bytes: u64,
}

/// Feeds what `Engine::precompile_compatibility_hash` hashes into sha256, giving a name
/// that is stable across processes (std's hashers are not).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl DiskCache {
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine, max_bytes: u64) -> Result<Self, LoadError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut hasher = ShaHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_hash = hex::encode(&hasher.0.finalize()[..8]);
        Ok(Self { dir, engine_hash, max_bytes })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}-{}.{EXTENSION}", digest.hex(), self.engine_hash))
    }

    /// The cached component, or `None` if there is none or it failed verification (in which
    /// case the file is removed so the next store replaces it).
    pub fn load(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        match verify(&bytes) {
            Some(code) => {
                // Renewed, so the size budget removes files that are not used first.
                renew(&path);
                // SAFETY: `code` is exactly what `Component::serialize` produced in this
                // cache (its checksum matches and the file lives in our cache folder under
                // this engine's compatibility hash); wasmtime re-checks the engine settings.
                #[allow(unsafe_code)]
                let component = unsafe { Component::deserialize(engine, code) };
                match component {
                    Ok(component) => Some(component),
                    Err(error) => discard(&path, &format!("{error:#}")),
                }
            }
            None => discard(&path, "checksum mismatch"),
        }
    }

    /// Writes the precompiled form atomically (temporary file, then rename).
    pub fn store(&self, digest: &Digest, component: &Component) -> Result<(), LoadError> {
        let code = component.serialize().map_err(|e| LoadError::Cache(format!("serialize: {e:#}")))?;
        let mut file = Vec::with_capacity(HEADER_LEN + code.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&Sha256::digest(&code));
        file.extend_from_slice(&code);
        let path = self.path(digest);
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temporary, &file).map_err(|e| io(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| io(&path, e))?;
        prune(&self.dir, self.max_bytes, &path);
        Ok(())
    }
}

fn renew(path: &Path) {
    let renewed = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()));
    if let Err(error) = renewed {
        tracing::debug!(path = %path.display(), %error, "cannot renew a component cache file");
    }
}

/// Removes the least recently modified cache files until those left take at most
/// `max_bytes`, never `keep` (the file just stored). Best effort: a file that cannot be
/// read or removed is left, and another process removing one first is fine.
fn prune(dir: &Path, max_bytes: u64, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|e| e == EXTENSION))
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), entry.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    if total <= max_bytes {
        return;
    }
    files.sort();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), bytes = len, "removed a component cache file over the size budget");
                total -= len;
            }
            Err(error) => tracing::warn!(path = %path.display(), %error, "cannot remove a component cache file"),
        }
    }
}

/// The precompiled bytes if the header and checksum are intact.
fn verify(file: &[u8]) -> Option<&[u8]> {
    if file.len() < HEADER_LEN || &file[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (checksum, code) = file[MAGIC.len()..].split_at(32);
    (Sha256::digest(code).as_slice() == checksum).then_some(code)
}

fn discard<T>(path: &Path, why: &str) -> Option<T> {
    tracing::warn!(path = %path.display(), why, "discarding corrupt component cache file");
    let _ = std::fs::remove_file(path);
    None
}

fn io(path: &Path, error: std::io::Error) -> LoadError {
    LoadError::Cache(format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_removes_the_least_recently_used_files_down_to_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let write = |name: &str, len: usize, age_rank: u64| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; len]).expect("write");
            let file = std::fs::File::options().write(true).open(&path).expect("open");
            file.set_modified(base + std::time::Duration::from_secs(age_rank * 60)).expect("set_modified");
            path
        };
        let oldest = write("a-old.cwasm", 400, 0);
        let middle = write("b-mid.cwasm", 400, 1);
        let newest = write("c-new.cwasm", 400, 2);
        // Just stored, but with the oldest time: still kept.
        let kept = write("d-kept.cwasm", 400, 0);
        let other = write("e.tmp123", 5000, 0);

        prune(dir.path(), 1000, &kept);
        let left: Vec<bool> = [&oldest, &middle, &newest, &kept, &other].iter().map(|p| p.exists()).collect();
        // 1,600 bytes of cache files: the two oldest go, leaving 800; other files are not counted.
        assert_eq!(left, [false, false, true, true, true]);

        prune(dir.path(), 10_000, &kept);
        assert!(newest.exists() && kept.exists(), "within the budget nothing is removed");
    }

    #[test]
    fn verify_rejects_bad_headers_and_checksums() {
        let code = b"precompiled";
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(code));
        file.extend_from_slice(code);
        assert_eq!(verify(&file), Some(&code[..]));
        let mut flipped = file.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(verify(&flipped), None);
        assert_eq!(verify(&file[..10]), None);
        let mut wrong_magic = file;
        wrong_magic[0] = b'X';
        assert_eq!(verify(&wrong_magic), None);
    }
}
