//! `nexus-loadgen run`: start the seeded server, drive `POST /v1/events` from `concurrency`
//! keep-alive connections for a warm-up and a measured window, sample the server's memory,
//! check the invocation rows, stop the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use reqwest::Client;
use serde_json::{Value, json};
use url::Url;

use crate::child::Server;
use crate::procfs::{self, Cpu};
use crate::report::{Report, Tally, Window};

/// One request that takes this long is a hung server, not a slow one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the server's `VmRSS` is read during the measured window.
const MEMORY_SAMPLE_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Store in a throwaway PostgreSQL cluster started for the run instead of SQLite.
    #[arg(long)]
    postgres: bool,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,
    /// Connections, each with one request in flight at a time (at most the server's
    /// in-flight cap, 1024).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Seconds of load before the window opens (connections, caches, pool warm-up).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup_secs: u64,
}

/// Shared between the workers and the progress line.
#[derive(Default)]
struct Counters {
    /// The next event's `payload.n`.
    next: AtomicU64,
    /// Requests answered (or failed) so far.
    done: AtomicU64,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let database = if args.postgres {
        // The cluster lives as long as this process; its watchdog removes it when we exit.
        let url = tokio::task::spawn_blocking(|| nexus_testkit::Postgres::shared().fresh_database());
        Some(url.await.context("starting a throwaway PostgreSQL")?)
    } else {
        None
    };
    eprintln!("starting the server ({})...", if args.postgres { "PostgreSQL" } else { "SQLite" });
    let mut server = tokio::task::block_in_place(|| Server::start(database.as_deref()))?;
    let measured = measure(&server, &args).await;
    let stopped = tokio::task::block_in_place(|| server.stop());
    let report = measured?.print();
    match stopped {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("warning: the server exited with {status}"),
        Err(error) => eprintln!("warning: {error:#}"),
    }
    report.check()
}

async fn measure(server: &Server, args: &RunArgs) -> anyhow::Result<Report> {
    let pid = server.pid();
    let events = server.url.join("/v1/events")?;
    let token: Arc<str> = server.tenant_token.as_str().into();
    let counters = Arc::new(Counters::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let memory_before = procfs::memory(pid).context("the server is gone")?;

    let started = Instant::now();
    let measure_from = started + Duration::from_secs(args.warmup_secs);
    let stop_at = measure_from + Duration::from_secs(args.duration_secs);
    let progress = tokio::spawn(progress(counters.clone(), started, measure_from));
    let sampler = tokio::spawn(sample(pid, measure_from, stopping.clone()));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, events, token, counters) = (client()?, events.clone(), token.clone(), counters.clone());
        workers.push(tokio::spawn(worker(client, events, token, counters, measure_from, stop_at)));
    }
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await?);
    }
    progress.abort();
    stopping.store(true, Ordering::Relaxed);
    let window = sampler.await??;
    let memory_after = procfs::memory(pid).context("the server exited during the load")?;
    let invocation_rows = recorded_invocations(&server.url, &server.tenant_token).await?;
    Ok(Report {
        backend: if args.postgres { "PostgreSQL" } else { "SQLite" },
        concurrency: args.concurrency,
        warmup: Duration::from_secs(args.warmup_secs),
        window,
        tally,
        memory_before,
        memory_after,
        invocation_rows,
    })
}

/// A client that keeps its one connection alive and never goes through a proxy: the
/// requests go straight to the loopback server.
fn client() -> anyhow::Result<Client> {
    Ok(Client::builder().no_proxy().tcp_nodelay(true).pool_max_idle_per_host(1).timeout(REQUEST_TIMEOUT).build()?)
}

/// Sends events one after another until `stop_at`; what starts before `measure_from` is
/// warm-up and counts only towards the invocation check.
async fn worker(
    client: Client,
    url: Url,
    token: Arc<str>,
    counters: Arc<Counters>,
    measure_from: Instant,
    stop_at: Instant,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let start = Instant::now();
        if start >= stop_at {
            return tally;
        }
        let n = counters.next.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "type": "bench.ping", "payload": { "n": n } });
        let sent = client.post(url.clone()).bearer_auth(&token).json(&body).send().await;
        // The body is always read to the end so the connection can be reused.
        let (outcome, answer) = match sent {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(bytes) => (Ok(status), bytes),
                    Err(error) => (Err(error), Default::default()),
                }
            }
            Err(error) => (Err(error), Default::default()),
        };
        let latency = start.elapsed();
        counters.done.fetch_add(1, Ordering::Relaxed);
        tally.record(start >= measure_from, outcome, &answer, latency);
    }
}

/// One line a second on stderr: the phase, requests answered so far and the current rate.
async fn progress(counters: Arc<Counters>, started: Instant, measure_from: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut last_done, mut last_at) = (0, Instant::now());
    loop {
        tick.tick().await;
        let (done, now) = (counters.done.load(Ordering::Relaxed), Instant::now());
        let rate = (done - last_done) as f64 / (now - last_at).as_secs_f64();
        let phase = if now < measure_from { "warm-up" } else { "measure" };
        eprintln!("[{:>4.0}s] {phase}  {done:>9} requests  {rate:>8.0} /s", (now - started).as_secs_f64());
        (last_done, last_at) = (done, now);
    }
}

/// From the window's opening until the workers are done: its length, the largest `VmRSS`
/// seen, and the CPU each party used.
async fn sample(pid: u32, measure_from: Instant, stopping: Arc<AtomicBool>) -> anyhow::Result<Window> {
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = Cpu::now(pid).context("the server is gone")?;
    let mut tick = tokio::time::interval(MEMORY_SAMPLE_EVERY);
    let (mut peak_rss_kib, mut memory_samples) = (0, 0);
    while !stopping.load(Ordering::Relaxed) {
        tick.tick().await;
        if let Some(memory) = procfs::memory(pid) {
            peak_rss_kib = peak_rss_kib.max(memory.rss_kib);
            memory_samples += 1;
        }
    }
    let length = measure_from.elapsed();
    let cpu_after = Cpu::now(pid).context("the server exited during the load")?;
    let cores = cpu_before.cores_until(&cpu_after, length.as_secs_f64());
    Ok(Window { length, peak_rss_kib, memory_samples, cores })
}

/// The rows in `invocations` for the tenant's install, as the API reports them.
async fn recorded_invocations(base: &Url, token: &str) -> anyhow::Result<u64> {
    let client = client()?;
    let installs: Value =
        client.get(base.join("/v1/installs")?).bearer_auth(token).send().await?.error_for_status()?.json().await?;
    let id =
        installs["items"].get(0).and_then(|install| install["id"].as_str()).context("the tenant has no install")?;
    invocation_rows(&client, base, token, id).await
}

/// The rows in `invocations` for one install (uninstalled ones keep theirs), as the API
/// reports them to its tenant.
pub async fn invocation_rows(client: &Client, base: &Url, token: &str, install: &str) -> anyhow::Result<u64> {
    let url = base.join(&format!("/v1/installs/{install}/invocations?per_page=1"))?;
    let page: Value = client.get(url).bearer_auth(token).send().await?.error_for_status()?.json().await?;
    page["total"].as_u64().context("no `total` in the invocations page")
}
