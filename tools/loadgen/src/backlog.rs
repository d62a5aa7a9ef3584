//! `nexus-loadgen backlog`: the queue with a backlog, and a tenant's webhook receiver that
//! comes back. With the server's delivery worker held, `--events` events are queued
//! (`Prefer: respond-async`) for the echo install, which asks for one action per event; the
//! tenant's endpoint for `plugin.action` is a receiver on loopback that answers 503. Then:
//! 1. the worker is started and timed through the whole backlog (every delivery applied);
//! 2. once every message's first post was refused, the receiver comes back (answers 204),
//!    and the time until every message arrived is measured: the retry schedule's first
//!    wait (30 s ± 20 %) plus how fast the sender posts what is due; with `--recover`, the
//!    tenant asks for them at once and only the sending counts.
//!
//! It checks, through the API and the receiver, that every event was applied once and every
//! message arrived at least once, always under the one id it was first posted with.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Args;
use reqwest::Client;
use serde_json::{Value, json};
use url::Url;

use crate::child::Server;

/// The longest any phase may take before the run is called stuck.
const PHASE_LIMIT: Duration = Duration::from_secs(900);
/// How often the API and the receiver are polled while waiting.
const POLL: Duration = Duration::from_millis(20);
/// The action kind the echo install is configured to ask for.
const ACTION: &str = "loadgen.note";

#[derive(Debug, Clone, Args)]
pub struct BacklogArgs {
    /// Store in a throwaway PostgreSQL cluster started for the run instead of SQLite.
    #[arg(long)]
    postgres: bool,
    /// Events queued before the worker starts.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    events: u64,
    /// When the receiver is back, ask for the messages at once (`POST
    /// /v1/webhooks/{id}/recover`) instead of waiting for their retries to fall due.
    #[arg(long)]
    recover: bool,
    /// Connections queueing them, each with one request in flight at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
}

pub async fn run(args: BacklogArgs) -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let database = if args.postgres {
        let url = tokio::task::spawn_blocking(|| nexus_testkit::Postgres::shared().fresh_database());
        Some(url.await.context("starting a throwaway PostgreSQL")?)
    } else {
        None
    };
    let backend = if args.postgres { "PostgreSQL" } else { "SQLite" };
    eprintln!("starting the server ({backend}) with its delivery worker held...");
    let mut server = tokio::task::block_in_place(|| Server::start_holding(database.as_deref()))?;
    let measured = measure(&mut server, &receiver, &args).await;
    let stopped = tokio::task::block_in_place(|| server.stop());
    let figures = measured?;
    figures.print(backend, &args);
    match stopped {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => anyhow::bail!("the server exited with {status}"),
        Err(error) => Err(error),
    }
}

struct Figures {
    queued: Duration,
    delivered: Duration,
    /// From the receiver's return to the last message's arrival.
    drained: Duration,
    /// From the receiver's return to the first message's arrival.
    first_after_return: Duration,
    /// From the first to the last message that arrived after the return.
    sending: Duration,
    /// Posts answered 2xx beyond one per message.
    repeated: u64,
}

impl Figures {
    fn print(&self, backend: &str, args: &BacklogArgs) {
        let n = args.events as f64;
        let rate = |took: Duration| n / took.as_secs_f64().max(f64::MIN_POSITIVE);
        println!("backlog          {} events, {backend}, queued from {} connections", args.events, args.concurrency);
        println!(
            "queued           {:.2} s ({:.0} accepted/s, worker held)",
            self.queued.as_secs_f64(),
            rate(self.queued)
        );
        println!(
            "delivered        {:.2} s from the worker's start to the last applied ({:.0} deliveries/s)",
            self.delivered.as_secs_f64(),
            rate(self.delivered)
        );
        let asked = match args.recover {
            true => "recovered at once",
            false => "each at its retry (30 s ± 20 % after its refusal)",
        };
        println!(
            "receiver back    every message arrived {:.2} s after the receiver came back, {asked}: the first after \
             {:.2} s, then {:.0} messages/s over {:.2} s",
            self.drained.as_secs_f64(),
            self.first_after_return.as_secs_f64(),
            rate(self.sending),
            self.sending.as_secs_f64()
        );
        println!(
            "checks           {} events applied once each; {} messages arrived, each under one id; {} repeated posts",
            args.events, args.events, self.repeated
        );
    }
}

async fn measure(server: &mut Server, receiver: &Receiver, args: &BacklogArgs) -> anyhow::Result<Figures> {
    let api = Api { client: client()?, base: server.url.clone(), token: server.tenant_token.clone() };
    let installs = api.get("/v1/installs").await?;
    let install = installs["items"][0]["id"].as_str().context("the tenant has no install")?.to_string();
    api.send("PATCH", &format!("/v1/installs/{install}"), json!({ "config": { "emit": ACTION } })).await?;
    let endpoint = json!({ "url": receiver.url, "kinds": ["plugin.action"], "description": "loadgen backlog" });
    let endpoint = api.send("POST", "/v1/webhooks", endpoint).await?;
    let endpoint = endpoint["endpoint"]["id"].as_str().context("no endpoint id")?.to_string();

    eprintln!("queueing {} events from {} connections...", args.events, args.concurrency);
    let started = Instant::now();
    queue(&api, args).await?;
    let queued = started.elapsed();
    ensure!(api.total("/v1/deliveries?state=applied&per_page=1").await? == 0, "a delivery ran while held");

    eprintln!("starting the worker...");
    tokio::task::block_in_place(|| server.deliver())?;
    let started = Instant::now();
    wait_for("deliveries applied", args.events, || api.total("/v1/deliveries?state=applied&per_page=1")).await?;
    let delivered = started.elapsed();

    eprintln!("waiting until every message's first post was refused...");
    wait_for("messages refused", args.events, || async { Ok(receiver.refused()) }).await?;
    receiver.come_back();
    let back = Instant::now();
    if args.recover {
        let recovered = api.send("POST", &format!("/v1/webhooks/{endpoint}/recover"), json!({})).await?;
        ensure!(recovered["messages"].as_u64() == Some(args.events), "recovered {recovered}");
    }
    eprintln!("the receiver is back; waiting for the messages...");
    wait_for("messages arrived", args.events, || async { Ok(receiver.arrived()) }).await?;
    let (first, last, repeated) = receiver.arrivals();
    let history = api.total(&format!("/v1/installs/{install}/invocations?per_page=1")).await?;
    ensure!(history == args.events, "{history} invocations recorded for {} events", args.events);
    Ok(Figures {
        queued,
        delivered,
        drained: last.saturating_duration_since(back),
        first_after_return: first.saturating_duration_since(back),
        sending: last.saturating_duration_since(first),
        repeated,
    })
}

/// Sends `args.events` events with `Prefer: respond-async`, each answered 202.
async fn queue(api: &Api, args: &BacklogArgs) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let url = api.base.join("/v1/events")?;
    let senders: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (next, url, token, total) = (next.clone(), url.clone(), api.token.clone(), args.events);
            tokio::spawn(async move {
                let client = client()?;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return anyhow::Ok(());
                    }
                    let body = json!({ "id": format!("backlog-{n}"), "type": "bench.ping", "payload": { "n": n } });
                    let answer = client
                        .post(url.clone())
                        .bearer_auth(&token)
                        .header("prefer", "respond-async")
                        .json(&body)
                        .send()
                        .await?;
                    let status = answer.status();
                    ensure!(status == StatusCode::ACCEPTED, "event {n} answered {status}: {}", answer.text().await?);
                    if n > 0 && n % 2_000 == 0 {
                        eprintln!("queued {n} of {total}");
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    Ok(())
}

/// Polls `count` until it reaches `target`, printing progress each second.
async fn wait_for<F, Fut>(what: &str, target: u64, mut count: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let started = Instant::now();
    let mut told = Instant::now();
    loop {
        let done = count().await?;
        if done >= target {
            return Ok(());
        }
        ensure!(started.elapsed() < PHASE_LIMIT, "{done} of {target} {what} after {PHASE_LIMIT:?}");
        if told.elapsed() >= Duration::from_secs(1) {
            eprintln!("{done} of {target} {what}");
            told = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The tenant's side of the API.
struct Api {
    client: Client,
    base: Url,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let answer = self.client.get(self.base.join(path)?).bearer_auth(&self.token).send().await?;
        Ok(answer.error_for_status()?.json().await?)
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let answer =
            self.client.request(method, self.base.join(path)?).bearer_auth(&self.token).json(&body).send().await?;
        let status = answer.status();
        let text = answer.text().await?;
        ensure!(status.is_success(), "{path} answered {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// The `total` of a paged listing.
    async fn total(&self, path: &str) -> anyhow::Result<u64> {
        self.get(path).await?["total"].as_u64().with_context(|| format!("no `total` in {path}"))
    }
}

fn client() -> anyhow::Result<Client> {
    Ok(Client::builder().no_proxy().tcp_nodelay(true).timeout(Duration::from_secs(30)).build()?)
}

/// A tenant's webhook receiver on loopback: down (503) until [`Receiver::come_back`], then
/// 204. It keeps the ids it refused and, per id, when and how often it accepted one.
struct Receiver {
    url: String,
    state: Arc<Received>,
    _serving: AbortOnDrop,
}

#[derive(Default)]
struct Received {
    up: AtomicBool,
    refused: Mutex<HashSet<String>>,
    accepted: Mutex<HashMap<String, (Instant, u64)>>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(Received::default());
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let serving = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, state, _serving: AbortOnDrop(serving) })
    }

    fn come_back(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }

    fn refused(&self) -> u64 {
        self.state.refused.lock().unwrap_or_else(PoisonError::into_inner).len() as u64
    }

    fn arrived(&self) -> u64 {
        self.state.accepted.lock().unwrap_or_else(PoisonError::into_inner).len() as u64
    }

    /// The first and last arrival, and the posts accepted beyond one per id.
    fn arrivals(&self) -> (Instant, Instant, u64) {
        let accepted = self.state.accepted.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let first = accepted.values().map(|(at, _)| *at).min().unwrap_or(now);
        let last = accepted.values().map(|(at, _)| *at).max().unwrap_or(now);
        (first, last, accepted.values().map(|(_, times)| times - 1).sum())
    }
}

/// Refuses while down; once up, accepts a message whose id it refused before (a message
/// first seen after the return would mean an id changed between attempts).
async fn receive(State(state): State<Arc<Received>>, headers: HeaderMap) -> StatusCode {
    let Some(id) = headers.get("webhook-id").and_then(|id| id.to_str().ok()).map(str::to_string) else {
        return StatusCode::BAD_REQUEST;
    };
    if !state.up.load(Ordering::SeqCst) {
        state.refused.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if !state.refused.lock().unwrap_or_else(PoisonError::into_inner).contains(&id) {
        return StatusCode::CONFLICT;
    }
    let mut accepted = state.accepted.lock().unwrap_or_else(PoisonError::into_inner);
    accepted.entry(id).and_modify(|(_, times)| *times += 1).or_insert((Instant::now(), 1));
    StatusCode::NO_CONTENT
}
