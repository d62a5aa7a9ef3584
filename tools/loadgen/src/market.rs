//! `nexus-loadgen market`: what a marketplace sees at once. One client per tenant (64 by
//! default) buys plugins on a one-time plan and on a subscription, sends events, changes
//! plan, has the operator refund part of its purchase and uninstalls, round after round,
//! while the publisher publishes new versions; requests carry `Idempotency-Key`s and a share
//! of them is sent twice (beside the first, or after it answered). The load stops by itself
//! (a duration or a number of requests); then the outcomes are checked through the API and a
//! table per kind of request is printed. Exits non-zero if any check fails.
//!
//! Like `run`, the server is this binary in `server` mode as a child process, and this side
//! is an HTTP client of it only (loopback), with the tokens the server announced.

mod api;
mod checks;
mod expected;
mod publisher;
mod report;
mod send;
mod setup;
mod shared;
mod tally;
mod tenant;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;

use crate::child::Server;
use crate::procfs::Cpu;
use api::Api;
use expected::Expected;
use report::{Figures, thousands};
use send::{Pace, Sender};
use shared::{Budget, Dice, Progress, RetryMix};
use tally::Tally;

#[derive(Debug, Clone, Args)]
pub struct MarketArgs {
    /// Store in a throwaway PostgreSQL cluster started for the run instead of SQLite.
    #[arg(long, conflicts_with = "database")]
    postgres: bool,
    /// Store in this PostgreSQL database (postgres://…), which must be empty.
    #[arg(long)]
    database: Option<String>,
    /// Tenants, each with one client sending one request (or a request and its retry) at a
    /// time; the publisher's client comes on top.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1000))]
    clients: u32,
    /// Stop starting requests after this many seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,
    /// Stop after this many requests (first sends, retries not counted), if that comes first.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    operations: Option<u64>,
    /// Events a tenant sends after buying, and again after changing plan.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=1000))]
    events: u32,
    /// Percent of keyed requests sent a second time at the same moment as the first.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    concurrent_retry_percent: u8,
    /// Percent of keyed requests sent a second time once the first has answered.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    later_retry_percent: u8,
    /// Seconds between the publisher's new versions; the registry allows 10 publishes a
    /// minute per publisher, so below 7 some are refused with 429.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3600))]
    publish_every_secs: u64,
    /// Pace the load: this many first sends per second in all, spread evenly over the
    /// clients (each sends on its own schedule, latency counted from the scheduled moment).
    /// Without it every client sends its next request as soon as the last is answered, which
    /// measures how much the server can take rather than how fast it answers at a given load.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: Option<u32>,
    /// Seeds which requests are retried, so a run can be repeated.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl MarketArgs {
    fn backend(&self) -> &'static str {
        match (self.postgres, &self.database) {
            (true, _) => "PostgreSQL (throwaway cluster)",
            (false, Some(_)) => "PostgreSQL (--database)",
            (false, None) => "SQLite",
        }
    }

    fn mix(&self) -> anyhow::Result<RetryMix> {
        anyhow::ensure!(
            self.concurrent_retry_percent + self.later_retry_percent <= 100,
            "--concurrent-retry-percent and --later-retry-percent add up to more than 100"
        );
        Ok(RetryMix { concurrent_percent: self.concurrent_retry_percent, after_percent: self.later_retry_percent })
    }
}

/// Whether every check passed; an error when the run itself could not be made.
pub async fn run(args: MarketArgs) -> anyhow::Result<bool> {
    args.mix()?;
    let database = database(&args).await?;
    eprintln!("starting the server ({})...", args.backend());
    let mut server = tokio::task::block_in_place(|| Server::start(database.as_deref()))?;
    let outcome = drive(&server, &args).await;
    let stopped = tokio::task::block_in_place(|| server.stop());
    let (mut figures, checks) = outcome?;
    report::print(&mut figures, &checks);
    match stopped {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("warning: the server exited with {status}"),
        Err(error) => eprintln!("warning: {error:#}"),
    }
    let failed: Vec<&str> = checks.iter().filter(|check| !check.passed()).map(|check| check.name).collect();
    if !failed.is_empty() {
        eprintln!("{} of {} checks failed: {}", failed.len(), checks.len(), failed.join(", "));
    }
    Ok(failed.is_empty())
}

/// The PostgreSQL URL to give the server, if any.
async fn database(args: &MarketArgs) -> anyhow::Result<Option<String>> {
    if let Some(url) = &args.database {
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "--database takes a postgres:// URL"
        );
        return Ok(Some(url.clone()));
    }
    if !args.postgres {
        return Ok(None);
    }
    // The cluster lives as long as this process; its watchdog removes it when we exit.
    let url = tokio::task::spawn_blocking(|| nexus_testkit::Postgres::shared().fresh_database());
    Ok(Some(url.await.context("starting a throwaway PostgreSQL")?))
}

/// Sets the market up, runs the load, checks the outcomes.
async fn drive(server: &Server, args: &MarketArgs) -> anyhow::Result<(Figures, Vec<checks::Check>)> {
    let api = Api::new(&server.url)?;
    let operator: Arc<str> = server.operator_token.as_str().into();
    let publisher: Arc<str> = server.publisher_token.as_str().into();
    eprintln!("setting up over HTTP: pii-redactor, plans, {} tenants...", args.clients);
    let setup = Arc::new(setup::setup(&api, &operator, &publisher, args.clients).await?);

    let started = Instant::now();
    let budget = Arc::new(Budget::new(args.operations, started + Duration::from_secs(args.duration_secs)));
    let progress = Arc::new(Progress::default());
    let cpu_before = Cpu::now(server.pid());
    let ticker = tokio::spawn(show_progress(progress.clone(), started));
    let sender = |client: u64| -> anyhow::Result<Sender> {
        let dice = Dice::new(args.seed, client);
        let pace = args.rate.filter(|_| client != u64::MAX).map(|rate| {
            // Each client sends every clients/rate seconds, the clients' slots staggered.
            let every = Duration::from_secs_f64(f64::from(args.clients) / f64::from(rate));
            let offset = every.mul_f64(client as f64 / f64::from(args.clients));
            Pace { next: started + offset, every }
        });
        Ok(Sender::new(Api::new(&server.url)?, dice, args.mix()?, budget.clone(), progress.clone(), pace))
    };
    let shared = Arc::new(tenant::Shared { setup: setup.clone(), operator: operator.clone(), events: args.events });
    let mut tenants = tokio::task::JoinSet::new();
    for (n, tenant) in setup.tenants.iter().enumerate() {
        tenants.spawn(tenant::run(sender(n as u64)?, tenant.clone(), shared.clone()));
    }
    let (stop, stopped) = watch::channel(false);
    let every = Duration::from_secs(args.publish_every_secs);
    let publishing = tokio::spawn(publisher::run(sender(u64::MAX)?, setup.clone(), publisher, every, stopped));

    let (tally, expected) = gather(tenants, &stop, publishing).await?;
    let window = started.elapsed();
    ticker.abort();
    let cores =
        cpu_before.zip(Cpu::now(server.pid())).map(|(before, after)| before.cores_until(&after, window.as_secs_f64()));

    eprintln!("checking the outcomes through the API...");
    let checks = checks::run(&api, &operator, &setup, &tally, expected).await?;
    let stopped_by = match args.operations {
        Some(operations) if budget.operations_spent() => format!("{} requests", thousands(operations)),
        _ => format!("{} s", args.duration_secs),
    };
    let figures = Figures {
        backend: args.backend().into(),
        clients: args.clients,
        rate: args.rate,
        events: args.events,
        window,
        stopped_by,
        tally,
        cores,
    };
    Ok((figures, checks))
}

/// Waits for every tenant's client, then stops the publisher: what they all sent, and what
/// the tenants' clients expect to find.
async fn gather(
    mut tenants: tokio::task::JoinSet<(Tally, Expected)>,
    stop: &watch::Sender<bool>,
    publishing: tokio::task::JoinHandle<anyhow::Result<Tally>>,
) -> anyhow::Result<(Tally, Expected)> {
    let (mut tally, mut expected) = (Tally::default(), Expected::default());
    while let Some(done) = tenants.join_next().await {
        let (theirs, found) = done?;
        tally.merge(theirs);
        expected.merge(found);
    }
    let _ = stop.send(true);
    tally.merge(publishing.await??);
    Ok((tally, expected))
}

/// One line a second on stderr: requests answered so far, the current rate, failures.
async fn show_progress(progress: Arc<Progress>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut last, mut last_at) = (0, Instant::now());
    loop {
        tick.tick().await;
        let (answered, now) = (progress.answered.load(Ordering::Relaxed), Instant::now());
        let rate = (answered - last) as f64 / (now - last_at).as_secs_f64();
        let failed = progress.failed.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4.0}s] {answered:>8} answers  {rate:>7.0} /s  {failed} not as documented",
            (now - started).as_secs_f64()
        );
        (last, last_at) = (answered, now);
    }
}
