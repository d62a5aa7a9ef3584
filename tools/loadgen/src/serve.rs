//! `nexus-loadgen server`: a marketplace seeded with one tenant and one echo install,
//! served on an ephemeral loopback port with tenant limits out of the way. It announces the
//! tenant's, the operator's and the `bench` publisher's tokens, so the `market` scenario can
//! set up the rest of its marketplace over HTTP.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nexus_marketplace::installs::{self, GrantConsent, InstallRequest};
use nexus_marketplace::runner::TenantLimits;
use nexus_marketplace::server::{self, AppState, ServeConfig};
use nexus_marketplace::{Market, accounts};
use nexus_registry::PublishRequest;

use crate::samples;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The data folder: SQLite database (unless --database), artifacts, master key, cache.
    #[arg(long)]
    data_dir: PathBuf,
    /// A postgres:// URL to use instead of SQLite.
    #[arg(long)]
    database: Option<String>,
    /// Serve the bare comparator instead (`bare.rs`): one axum route that parses the event
    /// and answers a receipt of the same shape, with no marketplace behind it.
    #[arg(long, conflicts_with = "database")]
    bare: bool,
    /// Queue events but deliver none until the line `deliver` arrives on stdin (`backlog`
    /// builds its backlog this way, then times the worker through it).
    #[arg(long)]
    hold_deliveries: bool,
}

/// Admission far above what two cores can serve, so the measurement finds the server's
/// limit rather than the tenant's. `in_flight` stays finite so a runaway client still
/// meets back-pressure; the loadgen's concurrency is well under it.
const LIMITS: TenantLimits = TenantLimits {
    events_per_second: 1_000_000,
    burst: 1_000_000,
    in_flight: 1024,
    queue_wait: Duration::from_secs(2),
};

const TENANT: &str = "load";
const PLUGIN: &str = "bench/echo";

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let (deliver, shutdown) = stdin_commands();
    if args.bare {
        return crate::bare::run(shutdown).await;
    }
    // Storage failures are logged, not sent to clients: show them on the inherited stderr.
    // The server's own warnings are left out: the one it gives here is about the throwaway
    // master key.
    let filter = "warn,nexus_marketplace::server=error";
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("NEXUS_LOG").unwrap_or_else(|_| filter.into()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let config = ServeConfig {
        data_dir: args.data_dir,
        database_url: args.database,
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        public_url: None,
        tenant_limits: LIMITS,
        // The tenants' webhook receivers of `backlog` listen on loopback; nothing here
        // reaches further (the load generator only ever talks to loopback).
        allow_private_networks: vec!["127.0.0.0/8".parse()?],
        connections: nexus_marketplace::server::ConnectionLimits::default(),
        billing_every: None,
        payouts_every: None,
        payout_schedule: Default::default(),
        clock_offset_ms: 0,
        smtp_url: None,
        mail_from: nexus_marketplace::mail::Mailer::DEFAULT_FROM.into(),
    };
    let market = Arc::new(config.market().await?);
    let seeded = seed(&market).await.context("seeding the marketplace")?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    announce(&url, &seeded.tenant, &seeded.operator, &seeded.publisher)?;
    // Deliveries of events sent with `Prefer: respond-async` (`run --async`), as `nexus serve`.
    let delivering = {
        let market = market.clone();
        tokio::spawn(async move {
            if args.hold_deliveries && deliver.await.is_err() {
                return;
            }
            let mut worker = AbortOnDrop(nexus_marketplace::runner::worker::keep_delivering(market));
            let _ = (&mut worker.0).await;
        })
    };
    let served = server::serve_on(listener, AppState { market, public_url: url }, shutdown).await;
    delivering.abort();
    served
}

/// A task that ends with its handle (here: when the task awaiting it is aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The one line on stdout that tells the parent where the server is and which tokens to use.
pub fn announce(url: &str, tenant: &str, operator: &str, publisher: &str) -> anyhow::Result<()> {
    let announcement = serde_json::json!({
        "url": url,
        "tenant_token": tenant,
        "operator_token": operator,
        "publisher_token": publisher,
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{announcement}")?;
    stdout.flush()?;
    Ok(())
}

/// The secrets of the seeded accounts.
struct Seeded {
    tenant: String,
    operator: String,
    publisher: String,
}

/// An operator token, the `bench` publisher with echo published, and the `load` tenant with
/// echo installed (consenting to what it requests).
async fn seed(market: &Arc<Market>) -> anyhow::Result<Seeded> {
    let operator =
        accounts::issue_operator_token(&market.db, "loadgen", None, &nexus_registry::publishers::Issuer::by("loadgen"))
            .await?;
    let publisher = market.registry.create_publisher(&samples::PUBLISHER.parse()?, "Load generator", "loadgen").await?;
    let credential = market.registry.authenticate(&publisher.secret).await?;
    let request = PublishRequest {
        manifest: samples::manifest("echo", None)?,
        component: samples::component("echo")?,
        claimed_digest: None,
        signature: None,
    };
    market.publish(&credential, request).await?;

    let tenant = accounts::create_tenant(&market.db, &TENANT.parse()?, "Load generator", "loadgen").await?;
    let caller = accounts::authenticate(&market.db, &market.registry, &tenant.secret).await?;
    let consent = installs::preview(market, PLUGIN, None).await?;
    let answer = GrantConsent {
        capabilities: consent.capabilities.iter().map(|c| c.capability).collect(),
        hosts: consent.capabilities.iter().flat_map(|c| &c.hosts).map(|h| h.host.clone()).collect(),
    };
    let install = InstallRequest {
        plugin: PLUGIN.to_string(),
        requirement: None,
        consent: Some(answer),
        plan: None,
        config: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    nexus_marketplace::billing::purchase::install(market, &caller, install).await?;
    Ok(Seeded { tenant: tenant.secret, operator: operator.secret, publisher: publisher.secret })
}

/// What the parent says on stdin: the first future completes at the line `deliver`, the
/// second when stdin reaches end of file (the parent closed it or exited) or on
/// Ctrl-C/SIGTERM. Stdin is read on a plain thread: tokio's stdin cannot be cancelled and
/// would hold the runtime open at shutdown.
fn stdin_commands() -> (tokio::sync::oneshot::Receiver<()>, impl std::future::Future<Output = ()>) {
    let (deliver, deliver_now) = tokio::sync::oneshot::channel::<()>();
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut deliver = Some(deliver);
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) if line.trim() == "deliver" => {
                    if let Some(deliver) = deliver.take() {
                        let _ = deliver.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = closed.send(());
    });
    let shutdown = async move {
        tokio::select! {
            _ = stdin_closed => {},
            () = server::shutdown_signal() => {},
        }
    };
    (deliver_now, shutdown)
}
