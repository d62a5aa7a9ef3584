//! Per-invocation cost, load cost, and concurrent throughput of the host.
//! Run: `cargo bench -p nexus-host --bench invoke`. Results: BENCHMARKS.md.

// Benchmarks report setup failures by panicking.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nexus_host::{Capability, Event, Grants, Host, HostConfig, InvocationContext, Limits, MemoryKv, Secrets};

/// A 200-byte event payload, as in PERF-NOTES.
const PAYLOAD: &str = r#"{"invoice_id":"INV-20931","customer":"Globex Corporation","amount_minor":1249900,"currency":"USD","lines":[{"sku":"seat","quantity":25},{"sku":"support","quantity":1}],"paid_at":"2026-11-25T10:00Z"}"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn context(tenant: usize) -> InvocationContext {
    InvocationContext {
        tenant: format!("tenant-{tenant}"),
        install: "echo".into(),
        grants: Grants { capabilities: [Capability::Config].into_iter().collect(), allowed_hosts: vec![] },
        config: BTreeMap::from([("prefix".to_string(), "seen: ".to_string())]),
        secrets: Secrets::default(),
        kv: Arc::new(MemoryKv::new()),
        limits: Limits::default(),
    }
}

fn event() -> Event {
    Event { id: "evt-1".into(), event_type: "invoice.paid".into(), payload: PAYLOAD.into() }
}

/// The same work as the echo plugin, natively: one config lookup and a concatenation.
fn native_echo(config: &BTreeMap<String, String>, event: &Event) -> String {
    let prefix = config.get("prefix").map(String::as_str).unwrap_or_default();
    format!("{prefix}{}", event.payload)
}

fn per_invocation(c: &mut Criterion) {
    let rt = runtime();
    let host = Host::new(HostConfig::default()).expect("host");
    let bytes = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).expect("echo");
    let plugin = rt.block_on(host.load(&bytes)).expect("load").0;
    let event = event();
    let shared = context(0);

    let mut group = c.benchmark_group("per_invocation");
    group.bench_function("native_echo", |b| b.iter(|| native_echo(black_box(&shared.config), black_box(&event))));
    group.bench_function("fresh_instance_echo", |b| {
        b.to_async(&rt).iter(|| async {
            let run = host.invoke(&plugin, shared.clone(), &event).await;
            assert!(run.result.is_ok());
            run
        })
    });
    // Any built component, such as a Python or JavaScript plugin:
    // NEXUS_BENCH_COMPONENT=<file.wasm> NEXUS_BENCH_EVENT='{"type": ..., "payload": {...}}'.
    if let Ok(path) = std::env::var("NEXUS_BENCH_COMPONENT") {
        let bytes = std::fs::read(&path).expect("NEXUS_BENCH_COMPONENT is a readable file");
        let started = Instant::now();
        let guest = rt.block_on(host.load(&bytes)).expect("load").0;
        eprintln!("loaded {path} ({} KiB) in {:.1?}", bytes.len() / 1024, started.elapsed());
        let given: serde_json::Value =
            serde_json::from_str(&std::env::var("NEXUS_BENCH_EVENT").unwrap_or_else(|_| "{}".into()))
                .expect("event JSON");
        let event = Event {
            id: "evt-1".into(),
            event_type: given["type"].as_str().unwrap_or("invoice.paid").into(),
            payload: given.get("payload").map_or_else(|| PAYLOAD.to_string(), ToString::to_string),
        };
        let all = InvocationContext { grants: Grants::all(Vec::new()), ..context(0) };
        let first = rt.block_on(host.invoke(&guest, all.clone(), &event));
        assert!(first.result.is_ok(), "{:?}", first.result);
        let name =
            std::path::Path::new(&path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        group.bench_function(format!("fresh_instance_{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let run = host.invoke(&guest, all.clone(), &event).await;
                assert!(run.result.is_ok());
                run
            })
        });
    }
    group.finish();
}

fn loading(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = Host::new(HostConfig { cache_dir: Some(dir.path().into()), ..HostConfig::default() }).expect("host");
    let uncached = Host::new(HostConfig::default()).expect("host");
    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    for (name, path) in [("echo", nexus_sample_plugins::ECHO), ("tax_calculator", nexus_sample_plugins::TAX_CALCULATOR)]
    {
        let bytes = nexus_sample_plugins::bytes(path).expect("plugin");
        let digest = rt.block_on(cached.load(&bytes)).expect("load").0.digest();
        group.bench_with_input(BenchmarkId::new("compile", name), &bytes, |b, bytes| {
            b.iter(|| {
                uncached.evict(&digest);
                rt.block_on(uncached.load(bytes)).expect("load")
            })
        });
        group.bench_with_input(BenchmarkId::new("precompiled_cache", name), &bytes, |b, bytes| {
            b.iter(|| {
                cached.evict(&digest);
                rt.block_on(cached.load(bytes)).expect("load")
            })
        });
    }
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let rt = runtime();
    let host = Arc::new(Host::new(HostConfig::default()).expect("host"));
    let bytes = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).expect("echo");
    let plugin = rt.block_on(host.load(&bytes)).expect("load").0;
    let contexts: Vec<InvocationContext> = (0..100).map(context).collect();
    let mut group = c.benchmark_group("throughput");
    for in_flight in [1usize, 16, 100] {
        group.throughput(Throughput::Elements(in_flight as u64));
        group.bench_function(BenchmarkId::new("tenants_in_flight", in_flight), |b| {
            b.to_async(&rt).iter_custom(|iterations| {
                let (host, plugin, contexts) = (host.clone(), plugin.clone(), contexts.clone());
                async move {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let mut tasks = tokio::task::JoinSet::new();
                        for context in contexts.iter().take(in_flight).cloned() {
                            let (host, plugin) = (host.clone(), plugin.clone());
                            tasks.spawn(async move { host.invoke(&plugin, context, &event()).await.result.is_ok() });
                        }
                        while let Some(ok) = tasks.join_next().await {
                            assert!(matches!(ok, Ok(true)));
                        }
                    }
                    started.elapsed()
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = per_invocation, loading, throughput
}
criterion_main!(benches);
