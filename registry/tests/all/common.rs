//! Fixtures: a registry per test on each backend, with publisher `nexus-labs` and a token.

use std::future::Future;
use std::sync::OnceLock;

use nexus_registry::{ArtifactStore, Credential, Db, PublishRequest, Registry};

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Fixture {
    pub backend: Backend,
    pub registry: Registry,
    pub caller: Credential,
    /// The artifact folder (SQLite runs) inside the caller's temporary folder.
    pub artifacts_dir: std::path::PathBuf,
}

/// A registry in `dir` (SQLite file and artifacts) or in a fresh PostgreSQL database. The
/// caller keeps `dir` alive for as long as the fixture is used.
pub async fn fixture(backend: Backend, dir: &tempfile::TempDir, publishes_per_minute: u32) -> Fixture {
    let (db, artifacts) = match backend {
        Backend::Sqlite => (Db::sqlite_in(dir.path()).await.unwrap(), ArtifactStore::Dir(dir.path().join("artifacts"))),
        Backend::Postgres => {
            let db = Db::connect(&nexus_testkit::Postgres::shared().fresh_database()).await.unwrap();
            (db.clone(), ArtifactStore::Db(db))
        }
    };
    let registry = Registry::with_publish_rate(db, artifacts, publishes_per_minute);
    let token = registry.create_publisher(&"nexus-labs".parse().unwrap(), "Nexus Labs", "test").await.unwrap();
    let caller = registry.authenticate(&token.secret).await.unwrap();
    Fixture { backend, registry, caller, artifacts_dir: dir.path().join("artifacts") }
}

/// Runs `test` once on SQLite and once on PostgreSQL.
pub fn on_both<F, Fut>(test: F)
where
    F: Fn(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async { test(fixture(backend, &dir, 1000).await).await });
    }
}

/// The sample's manifest with its version replaced.
pub fn manifest(sample: &str, version: &str) -> String {
    let (_, _, text) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(name, ..)| *name == sample).unwrap();
    text.replacen("version = \"0.1.0\"", &format!("version = \"{version}\""), 1)
}

pub fn component(sample: &str) -> Vec<u8> {
    let (_, path, _) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(name, ..)| *name == sample).unwrap();
    nexus_sample_plugins::bytes(path).unwrap()
}

pub fn request(sample: &str, version: &str) -> PublishRequest {
    PublishRequest {
        manifest: manifest(sample, version),
        component: component(sample),
        claimed_digest: None,
        signature: None,
    }
}

/// The error code of a failed call.
pub fn code<T: std::fmt::Debug>(result: Result<T, nexus_registry::RegistryError>) -> &'static str {
    result.expect_err("expected an error").code().as_str()
}
