//! Resident memory with 1,000 cached components and 100 invocations in flight.
//! Run: `cargo bench -p nexus-host --bench footprint`. Results: BENCHMARKS.md.
//! It loads 1,000 distinct components (the echo plugin with a distinct custom section
//! appended), then starts 100 spin-loop invocations with a 300 ms wall clock and samples
//! the process's resident set while they run. It stops by itself.

// Benchmarks report setup failures by panicking.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus_host::{Event, Grants, Host, HostConfig, InvocationContext, Limits, MemoryKv, Secrets};

const COMPONENTS: usize = 1_000;
const IN_FLIGHT: usize = 100;

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn resident() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The component with a custom section appended: same code, a different digest.
fn variant(base: &[u8], n: usize) -> Vec<u8> {
    let name = b"nexus-bench";
    let data = n.to_le_bytes();
    let payload_len = 1 + name.len() + data.len();
    let mut bytes = base.to_vec();
    bytes.push(0); // custom section id
    bytes.push(u8::try_from(payload_len).expect("short section"));
    bytes.push(u8::try_from(name.len()).expect("short name"));
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&data);
    bytes
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (start_rss, _) = resident();
    let host = Arc::new(Host::new(HostConfig { max_concurrent: 128, ..HostConfig::default() }).expect("host"));
    let echo = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).expect("echo");
    let spin = nexus_sample_plugins::bytes(nexus_sample_plugins::SPIN_LOOP).expect("spin");

    let started = Instant::now();
    let mut plugins = Vec::with_capacity(COMPONENTS);
    for n in 0..COMPONENTS {
        plugins.push(rt.block_on(host.load(&variant(&echo, n))).expect("load").0);
        if (n + 1) % 250 == 0 {
            eprintln!("loaded {} components in {:.1} s", n + 1, started.elapsed().as_secs_f64());
        }
    }
    let (loaded_rss, _) = resident();
    let spin = rt.block_on(host.load(&spin)).expect("load").0;

    let mut limits = Limits { fuel: u64::MAX / 2, wall_clock: Duration::from_millis(300), ..Limits::default() };
    limits.memory_bytes = 64 << 20;
    let mut peak_in_flight = 0;
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for tenant in 0..IN_FLIGHT {
            let (host, plugin, limits) = (host.clone(), spin.clone(), limits.clone());
            tasks.spawn(async move {
                let context = InvocationContext {
                    tenant: format!("tenant-{tenant}"),
                    install: "spin".into(),
                    grants: Grants::default(),
                    config: BTreeMap::new(),
                    secrets: Secrets::default(),
                    kv: Arc::new(MemoryKv::new()),
                    limits,
                };
                let event = Event { id: "e".into(), event_type: "x".into(), payload: "{}".into() };
                host.invoke(&plugin, context, &event).await
            });
        }
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            peak_in_flight = peak_in_flight.max(resident().0);
        }
        let mut contained = 0;
        while let Some(run) = tasks.join_next().await {
            contained += usize::from(run.map(|r| r.result.is_err()).unwrap_or(false));
        }
        assert_eq!(contained, IN_FLIGHT, "every spin loop ends at its wall clock");
    });
    let (_, high_water) = resident();
    println!("components cached:            {COMPONENTS} (echo, {} KiB each)", echo.len() / 1024);
    println!("resident at start:            {start_rss} MiB");
    println!("resident with {COMPONENTS} cached:     {loaded_rss} MiB");
    println!("resident with {IN_FLIGHT} in flight:     {peak_in_flight} MiB");
    println!("high-water mark:              {high_water} MiB");
    println!("load time for {COMPONENTS} components: {:.1} s", started.elapsed().as_secs_f64());
    drop(plugins);
}
