//! `nexus-loadgen`: drives a real marketplace server over loopback HTTP. `run` (the default)
//! drives `POST /v1/events` and reports throughput, latency, the server's resident memory,
//! and whether every accepted event left exactly one invocation row; `market` mixes what a
//! marketplace sees at once (purchases, plan changes, refunds, uninstalls, publishes and
//! events, keyed and retried), checks every outcome through the API and reports a table per
//! kind of request. `run --vs-bare` also measures a bare axum route that parses the same
//! JSON and answers a receipt of the same size, alternating windows with the real server,
//! and prints the ratio: what the marketplace's path costs over HTTP and JSON alone.
//!
//! `server` seeds a marketplace through the marketplace's own functions and serves its
//! router; `run` and `market` start `server` as a child process, are HTTP clients of it and
//! nothing else (they refuse any URL that is not loopback), and stop it. This crate owns no
//! marketplace logic and must not reach into the server's internals from the client side:
//! only HTTP, `/proc`, and the sample plugins' files it publishes.

mod backlog;
mod bare;
mod child;
mod load;
mod market;
mod procfs;
mod report;
mod samples;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "nexus-loadgen", version, about = "Load generator for a Nexus marketplace server")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `run` with these options.
    #[command(flatten)]
    run: load::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a seeded server, load it, print the figures, stop it (the default).
    Run(load::RunArgs),
    /// Start a seeded server, run the mixed market scenario, check every outcome through the
    /// API, print a table per kind of request, stop the server; exits non-zero if a check fails.
    Market(market::MarketArgs),
    /// Queue a backlog of events with the delivery worker held, time the worker through it,
    /// then time a tenant's webhook receiver that was down getting every message once it
    /// comes back; checks every event applied once and every message arrived under one id.
    Backlog(backlog::BacklogArgs),
    /// Seed a marketplace and serve it on 127.0.0.1 until stdin closes or SIGTERM; prints
    /// `{"url", "tenant_token", "operator_token", "publisher_token"}` as one line on stdout
    /// once it accepts connections. `--bare`: the comparator of `run --vs-bare` instead.
    Server(serve::ServerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Server(args)) => serve::run(args).await?,
        Some(Command::Run(args)) => load::run(args).await?,
        Some(Command::Backlog(args)) => backlog::run(args).await?,
        // A failed check is the run's finding, not an error of the tool: exit 1 without one.
        Some(Command::Market(args)) => {
            if !market::run(args).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        None => load::run(cli.run).await?,
    }
    Ok(ExitCode::SUCCESS)
}
