//! Publish and fetch throughput for 1 MiB and 10 MiB components, and resolution latency
//! with 10,000 versions of one plugin, on SQLite (data folder) and PostgreSQL (database
//! artifact store, a throwaway cluster started for the run).
//! Run: `cargo bench -p nexus-registry --bench registry`. Results: BENCHMARKS.md.

// Benchmarks report setup failures by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nexus_registry::resolve::parse_requirement;
use nexus_registry::{ArtifactStore, Credential, Db, PublishRequest, Registry};

const VERSIONS: u64 = 10_000;

/// The echo component grown to `size` bytes with a custom section: valid, and as costly to
/// hash, store and read as a real component of that size.
fn padded(size: usize) -> Vec<u8> {
    let mut bytes = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
    let name = b"padding";
    let payload = size.saturating_sub(bytes.len() + 16);
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.resize(section.len() + payload, 0);
    bytes.push(0);
    let mut length = section.len();
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        bytes.push(if length == 0 { byte } else { byte | 0x80 });
        if length == 0 {
            break;
        }
    }
    bytes.extend_from_slice(&section);
    bytes
}

fn manifest(version: &str) -> String {
    let (_, _, text) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == "echo").unwrap();
    text.replacen("version = \"0.1.0\"", &format!("version = \"{version}\""), 1)
}

async fn registry(postgres: bool, dir: &std::path::Path) -> (Registry, Credential) {
    let (db, artifacts) = if postgres {
        let db = Db::connect(&nexus_testkit::Postgres::shared().fresh_database()).await.unwrap();
        (db.clone(), ArtifactStore::Db(db))
    } else {
        (Db::sqlite_in(dir).await.unwrap(), ArtifactStore::Dir(dir.join("artifacts")))
    };
    let registry = Registry::with_publish_rate(db, artifacts, u32::MAX);
    let token = registry.create_publisher(&"nexus-labs".parse().unwrap(), "Nexus Labs", "bench").await.unwrap();
    let caller = registry.authenticate(&token.secret).await.unwrap();
    (registry, caller)
}

fn publish_and_fetch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("registry");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for (backend, postgres) in [("sqlite", false), ("postgres", true)] {
        let dir = tempfile::tempdir().unwrap();
        let (registry, caller) = rt.block_on(registry(postgres, dir.path()));
        let next = AtomicU64::new(1);
        for (label, size) in [("1MiB", 1usize << 20), ("10MiB", 10 << 20)] {
            let component = padded(size);
            group.throughput(Throughput::Bytes(component.len() as u64));
            group.bench_function(BenchmarkId::new(format!("publish/{backend}"), label), |b| {
                b.to_async(&rt).iter(|| async {
                    // Each publish is a new version and a new artifact (the version is in a
                    // custom section too, so the digest differs).
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let mut bytes = component.clone();
                    bytes.extend_from_slice(&[0, 16, 7]);
                    bytes.extend_from_slice(b"version");
                    bytes.extend_from_slice(&n.to_le_bytes());
                    let request = PublishRequest {
                        manifest: manifest(&format!("0.0.{n}")),
                        component: bytes,
                        claimed_digest: None,
                        signature: None,
                    };
                    registry.publish(&caller, request).await.unwrap()
                })
            });
            let version = format!("0.0.{}", next.load(Ordering::Relaxed) - 1);
            let (id, version) = ("nexus-labs/echo".parse().unwrap(), version.parse().unwrap());
            group.bench_function(BenchmarkId::new(format!("fetch/{backend}"), label), |b| {
                b.to_async(&rt).iter(|| async { registry.fetch(&id, &version).await.unwrap() })
            });
        }
    }
    group.finish();
}

fn resolution(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("resolve_10000_versions");
    for (backend, postgres) in [("sqlite", false), ("postgres", true)] {
        let dir = tempfile::tempdir().unwrap();
        let (registry, caller) = rt.block_on(registry(postgres, dir.path()));
        let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
        rt.block_on(async {
            for n in 0..VERSIONS {
                let version = format!("{}.{}.{}", n / 1000, (n / 10) % 100, n % 10);
                let request = PublishRequest {
                    manifest: manifest(&version),
                    component: component.clone(),
                    claimed_digest: None,
                    signature: None,
                };
                registry.publish(&caller, request).await.unwrap();
            }
        });
        let id = "nexus-labs/echo".parse().unwrap();
        for requirement in ["^5.2", "*"] {
            let requirement = parse_requirement(requirement).unwrap();
            group.bench_function(BenchmarkId::new(backend, requirement.to_string()), |b| {
                b.to_async(&rt).iter(|| async { registry.resolve(&id, &requirement).await.unwrap() })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, publish_and_fetch, resolution);
criterion_main!(benches);
