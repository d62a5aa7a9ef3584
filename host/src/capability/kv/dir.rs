//! A KV store in a folder: one JSON file per scope (`<tenant>/<install>.json`, values in
//! hex), replaced atomically on commit. Used by `nexus plugin run --kv-dir`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{BoxFuture, KvError, KvQuota, KvScope, KvStore, KvUsage, KvWrite, apply_within, usage_of};

#[derive(Debug)]
pub struct DirKv {
    root: PathBuf,
    /// Serialises commits within this process; the file rename makes each one atomic.
    commit_lock: Mutex<()>,
}

impl DirKv {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), commit_lock: Mutex::new(()) }
    }

    fn file(&self, scope: &KvScope) -> Result<PathBuf, KvError> {
        let safe = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !safe(&scope.tenant) || !safe(&scope.install) {
            return Err(KvError::Backend(format!("scope ids must be [A-Za-z0-9_-]+: {scope:?}")));
        }
        Ok(self.root.join(&scope.tenant).join(format!("{}.json", scope.install)))
    }

    fn load(&self, scope: &KvScope) -> Result<BTreeMap<String, Vec<u8>>, KvError> {
        let file = self.file(scope)?;
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(backend(&file, e)),
        };
        let stored: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| backend(&file, e))?;
        stored.into_iter().map(|(k, v)| Ok((k, hex::decode(v).map_err(|e| backend(&file, e))?))).collect()
    }

    fn store(&self, scope: &KvScope, entries: &BTreeMap<String, Vec<u8>>) -> Result<(), KvError> {
        let file = self.file(scope)?;
        let folder = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder).map_err(|e| backend(folder, e))?;
        let encoded: BTreeMap<&String, String> = entries.iter().map(|(k, v)| (k, hex::encode(v))).collect();
        let text = serde_json::to_string_pretty(&encoded).map_err(|e| backend(&file, e))?;
        let temporary = file.with_extension("json.tmp");
        std::fs::write(&temporary, text).map_err(|e| backend(&temporary, e))?;
        std::fs::rename(&temporary, &file).map_err(|e| backend(&file, e))
    }
}

fn backend(path: &Path, error: impl std::fmt::Display) -> KvError {
    KvError::Backend(format!("{}: {error}", path.display()))
}

impl KvStore for DirKv {
    fn get<'a>(&'a self, scope: &'a KvScope, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        Box::pin(async move { Ok(self.load(scope)?.remove(key)) })
    }

    fn list_keys<'a>(&'a self, scope: &'a KvScope, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, KvError>> {
        Box::pin(async move { Ok(self.load(scope)?.into_keys().filter(|k| k.starts_with(prefix)).collect()) })
    }

    fn usage<'a>(&'a self, scope: &'a KvScope) -> BoxFuture<'a, Result<KvUsage, KvError>> {
        Box::pin(async move { Ok(usage_of(&self.load(scope)?)) })
    }

    fn commit<'a>(
        &'a self,
        scope: &'a KvScope,
        writes: Vec<KvWrite>,
        quota: KvQuota,
        _base: Option<u64>,
    ) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let _guard = self.commit_lock.lock().map_err(|_| KvError::Backend("commit lock poisoned".into()))?;
            let entries = apply_within(&self.load(scope)?, writes, quota)?;
            self.store(scope, &entries)
        })
    }
}
