//! `nexus-loadgen`: drives `POST /v1/events` of a real marketplace server over loopback HTTP
//! and reports throughput, latency, the server's resident memory, and whether every accepted
//! event left exactly one invocation row.
//!
//! Two modes. `server` seeds a marketplace through the marketplace's own functions and
//! serves its router; `run` (the default) starts `server` as a child process, is an HTTP
//! client of it and nothing else (it refuses any URL that is not loopback), and stops it.
//! This crate owns no marketplace logic and must not reach into the server's internals
//! from the `run` side: only HTTP and `/proc`.

mod child;
mod load;
mod procfs;
mod report;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "nexus-loadgen", version, about = "Load generator for POST /v1/events")]
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
    /// Seed a marketplace and serve it on 127.0.0.1 until stdin closes or SIGTERM; prints
    /// `{"url", "tenant_token"}` as one line on stdout once it accepts connections.
    Server(serve::ServerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Server(args)) => serve::run(args).await,
        Some(Command::Run(args)) => load::run(args).await,
        None => load::run(cli.run).await,
    }
}
