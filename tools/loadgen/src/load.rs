//! `nexus-loadgen run`: start the seeded server, drive `POST /v1/events` from `concurrency`
//! keep-alive connections for a warm-up and a measured window, sample the server's memory,
//! check the invocation rows, stop the server. With `--vs-bare` it also starts the bare
//! comparator (`bare.rs`) and alternates measured windows between the two (real, bare, bare,
//! real, ...), so both are measured in the same run under the same conditions, and prints
//! the ratio.

mod served;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use reqwest::Client;
use url::Url;

pub use self::served::invocation_rows;
use self::served::{drained, recorded_invocations};
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
    /// Length of the measured window, in seconds (with --vs-bare: per server, split into
    /// --rounds windows).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,
    /// Connections, each with one request in flight at a time (at most the server's
    /// in-flight cap, 1024).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Seconds of load before the window opens (connections, caches, pool warm-up); with
    /// --vs-bare, for each server.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup_secs: u64,
    /// Also measure the bare comparator (`server --bare`: one axum route that parses the same
    /// JSON and answers a receipt of the same size) in alternating windows, and print the
    /// ratio of the two throughputs.
    #[arg(long)]
    vs_bare: bool,
    /// With --vs-bare: measured windows per server (the order alternates, real-bare then
    /// bare-real, so a drift of the machine weighs on both).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Send every event with `Prefer: respond-async` (answered 202 once queued), then wait
    /// for the server's worker to deliver everything accepted and report how long that took.
    #[arg(long = "async")]
    queue: bool,
}

/// Shared between the workers and the progress line.
#[derive(Default)]
struct Counters {
    /// The next event's `payload.n`.
    next: AtomicU64,
    /// Requests answered (or failed) so far.
    done: AtomicU64,
    /// What is being driven now, for the progress line.
    phase: Mutex<&'static str>,
}

impl Counters {
    fn enter(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }
}

/// A server under load and the connections that drive it.
struct Side<'a> {
    server: &'a Server,
    events: Url,
    token: Arc<str>,
    /// One client per connection, kept across windows so connections stay open.
    clients: Vec<Client>,
    /// Send `Prefer: respond-async`.
    queue: bool,
}

impl<'a> Side<'a> {
    fn new(server: &'a Server, concurrency: u32, queue: bool) -> anyhow::Result<Self> {
        Ok(Self {
            queue,
            server,
            events: server.url.join("/v1/events")?,
            token: server.tenant_token.as_str().into(),
            clients: (0..concurrency).map(|_| client()).collect::<anyhow::Result<_>>()?,
        })
    }
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
    let mut bare = match args.vs_bare {
        true => Some(tokio::task::block_in_place(Server::start_bare)?),
        false => None,
    };
    let measured = measure(&server, bare.as_ref(), &args).await;
    let mut stopped = vec![tokio::task::block_in_place(|| server.stop())];
    if let Some(bare) = bare.as_mut() {
        stopped.push(tokio::task::block_in_place(|| bare.stop()));
    }
    let (real, bare) = measured?;
    let real = real.print();
    if let Some(bare) = bare {
        println!();
        crate::report::print_ratio(&real, &bare.print());
    }
    for stopped in stopped {
        match stopped {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("warning: a server exited with {status}"),
            Err(error) => eprintln!("warning: {error:#}"),
        }
    }
    real.check()
}

async fn measure(server: &Server, bare: Option<&Server>, args: &RunArgs) -> anyhow::Result<(Report, Option<Report>)> {
    let real = Side::new(server, args.concurrency, args.queue)?;
    let bare = bare.map(|bare| Side::new(bare, args.concurrency, false)).transpose()?;
    let counters = Arc::new(Counters::default());
    let progress = tokio::spawn(progress(counters.clone(), Instant::now()));
    let memory_before = procfs::memory(server.pid()).context("the server is gone")?;
    let bare_memory_before = bare.as_ref().and_then(|side| procfs::memory(side.server.pid()));

    let warmup = Duration::from_secs(args.warmup_secs);
    counters.enter("warm-up");
    let mut real_tally = drive(&real, &counters, warmup, false).await?.0;
    let mut bare_tally = Tally::default();
    if let Some(bare) = &bare {
        counters.enter("warm-up bare");
        bare_tally = drive(bare, &counters, warmup, false).await?.0;
    }

    let rounds = if bare.is_some() { args.rounds } else { 1 };
    let each = Duration::from_secs(args.duration_secs) / rounds;
    let tallies = (&mut real_tally, &mut bare_tally);
    let (real_windows, bare_windows) = measure_rounds(&real, bare.as_ref(), &counters, rounds, each, tallies).await?;
    progress.abort();

    let memory_after = procfs::memory(server.pid()).context("the server exited during the load")?;
    if args.queue {
        drained(&server.url, &server.tenant_token, real_tally.accepted).await?;
    }
    let invocation_rows = recorded_invocations(&server.url, &server.tenant_token).await?;
    let backend = if args.postgres { "PostgreSQL" } else { "SQLite" };
    let real_report = Report {
        subject: if args.queue {
            "POST /v1/events (Prefer: respond-async) -> 1 echo install"
        } else {
            "POST /v1/events -> 1 echo install"
        },
        backend,
        concurrency: args.concurrency,
        warmup,
        window: Window::combined(&real_windows),
        rates: real_windows.iter().map(|w| w.rate).collect(),
        tally: real_tally,
        memory_before,
        memory_after,
        invocation_rows: Some(invocation_rows),
    };
    let bare_report = match (&bare, bare_memory_before) {
        (Some(side), Some(memory_before)) => Some(Report {
            subject: "bare axum comparator (parse the JSON, answer the receipt)",
            backend,
            concurrency: args.concurrency,
            warmup,
            window: Window::combined(&bare_windows),
            rates: bare_windows.iter().map(|w| w.rate).collect(),
            tally: bare_tally,
            memory_before,
            memory_after: procfs::memory(side.server.pid()).context("the bare server exited during the load")?,
            invocation_rows: None,
        }),
        _ => None,
    };
    Ok((real_report, bare_report))
}

/// Measures `rounds` windows of `each` on each side, the side going first alternating from
/// round to round so neither always runs on a warmer machine; adds what is sent to
/// `tallies` (real, bare). The windows of each side (real, bare).
async fn measure_rounds(
    real: &Side<'_>,
    bare: Option<&Side<'_>>,
    counters: &Arc<Counters>,
    rounds: u32,
    each: Duration,
    (real_tally, bare_tally): (&mut Tally, &mut Tally),
) -> anyhow::Result<(Vec<Window>, Vec<Window>)> {
    let (mut real_windows, mut bare_windows) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let bare_first = round % 2 == 1;
        for is_bare in [bare_first, !bare_first] {
            let (side, windows, tally, phase) = match (is_bare, bare) {
                (false, _) => (real, &mut real_windows, &mut *real_tally, "measure"),
                (true, Some(bare)) => (bare, &mut bare_windows, &mut *bare_tally, "measure bare"),
                (true, None) => continue,
            };
            counters.enter(phase);
            let (measured, window) = drive(side, counters, each, true).await?;
            tally.merge(measured);
            windows.push(window);
        }
    }
    Ok((real_windows, bare_windows))
}

/// Drives `side` from all its connections for `length`; `measured` says whether what is
/// sent counts as the window (else it is warm-up, counted only towards the invocation
/// check). Returns the tally and, for a measured window, its figures.
async fn drive(
    side: &Side<'_>,
    counters: &Arc<Counters>,
    length: Duration,
    measured: bool,
) -> anyhow::Result<(Tally, Window)> {
    let pid = side.server.pid();
    let stopping = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let stop_at = started + length;
    let measure_from = if measured { started } else { stop_at };
    let sampler = measured.then(|| tokio::spawn(sample(pid, stopping.clone())));
    let workers: Vec<_> = side
        .clients
        .iter()
        .map(|client| {
            let (client, events, token, counters) =
                (client.clone(), side.events.clone(), side.token.clone(), counters.clone());
            tokio::spawn(worker(client, events, token, counters, side.queue, measure_from, stop_at))
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await?);
    }
    stopping.store(true, Ordering::Relaxed);
    let mut window = match sampler {
        Some(sampler) => sampler.await??,
        None => Window::default(),
    };
    window.rate = tally.latencies.len() as f64 / window.length.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok((tally, window))
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
    queue: bool,
    measure_from: Instant,
    stop_at: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let authorization = format!("Bearer {token}");
    loop {
        let start = Instant::now();
        if start >= stop_at {
            return tally;
        }
        let n = counters.next.fetch_add(1, Ordering::Relaxed);
        // The body as `serde_json::json!` would write it, without building a value first.
        let body = format!(r#"{{"type":"bench.ping","payload":{{"n":{n}}}}}"#);
        let mut request = client
            .post(url.clone())
            .header(reqwest::header::AUTHORIZATION, &authorization)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if queue {
            request = request.header("prefer", "respond-async");
        }
        let sent = request.body(body).send().await;
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
async fn progress(counters: Arc<Counters>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut last_done, mut last_at) = (0, Instant::now());
    loop {
        tick.tick().await;
        let (done, now) = (counters.done.load(Ordering::Relaxed), Instant::now());
        let rate = (done - last_done) as f64 / (now - last_at).as_secs_f64();
        let phase = *counters.phase.lock().unwrap_or_else(PoisonError::into_inner);
        eprintln!("[{:>4.0}s] {phase:<12}  {done:>9} requests  {rate:>8.0} /s", (now - started).as_secs_f64());
        (last_done, last_at) = (done, now);
    }
}

/// From now until `stopping`: the window's length, the largest `VmRSS` seen, and the CPU
/// each party used.
async fn sample(pid: u32, stopping: Arc<AtomicBool>) -> anyhow::Result<Window> {
    let started = Instant::now();
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
    let length = started.elapsed();
    let cpu_after = Cpu::now(pid).context("the server exited during the load")?;
    let cores = cpu_before.cores_until(&cpu_after, length.as_secs_f64());
    Ok(Window { length, peak_rss_kib, memory_samples, cores, rate: 0.0 })
}
