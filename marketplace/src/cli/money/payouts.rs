//! Payouts: running them (`nexus payouts run`, operators) and a partner's list, or one
//! payout with the lines it settles (`nexus payouts list`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{per_currency, shown};
use crate::cli::client::Connection;

#[derive(Debug, Subcommand)]
pub enum PayoutsCommand {
    /// Pay every partner due in this payout period (operators); a second run pays nothing.
    Run(PayoutsRunArgs),
    /// A partner's payouts, or one of them with the lines it settles.
    List(PayoutsListArgs),
}

#[derive(Debug, Args)]
pub struct PayoutsRunArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct PayoutsListArgs {
    publisher: String,
    /// One payout (`pay_…`): its reconciliation and the lines it settles.
    payout: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

pub async fn payouts(command: PayoutsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PayoutsCommand::Run(args) => run(&args).await?,
        PayoutsCommand::List(args) => {
            let c = &args.connection;
            let base = format!("/v1/publishers/{}/payouts", args.publisher);
            match &args.payout {
                None => list(c, &base, &args.publisher).await?,
                Some(id) => one(c, &base, id).await?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(args: &PayoutsRunArgs) -> anyhow::Result<()> {
    let c = &args.connection;
    eprintln!("paying every partner due in this payout period…");
    let report: Value = c.send(c.client().post(c.url("/v1/payouts/runs")).json(&json!({}))).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let paid = per_currency(&report["paid_minor"]);
    println!(
        "period {}: {} paid ({}), {} failed, {} awaiting the provider, {} carried forward, {} on hold",
        report["period"].as_str().unwrap_or(""),
        report["paid"],
        paid,
        report["failed"],
        report["pending"],
        report["carried_forward"].as_array().map_or(0, Vec::len),
        report["held"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}

/// A partner's payouts, one line each.
async fn list(c: &Connection, base: &str, publisher: &str) -> anyhow::Result<()> {
    let list: Value = c.send(c.client().get(c.url(base))).await?;
    if list.as_array().is_none_or(Vec::is_empty) {
        println!(
            "no payouts to {publisher} yet: a payout run (`nexus payouts run`, or the server's schedule) \
             pays each partner's balance once it is due"
        );
    }
    for p in list.as_array().into_iter().flatten() {
        println!(
            "{}  {:<10} {:<8} {:>16}  {}",
            p["id"].as_str().unwrap_or(""),
            p["period"].as_str().unwrap_or(""),
            p["status"].as_str().unwrap_or(""),
            shown(p["amount_minor"].as_i64().unwrap_or(0), p["currency"].as_str().unwrap_or("")),
            p["failure_reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// One payout: the lines it settles and its reconciliation.
async fn one(c: &Connection, base: &str, id: &str) -> anyhow::Result<()> {
    let detail: Value = c.send(c.client().get(c.url(&format!("{base}/{id}")))).await?;
    let currency = detail["payout"]["currency"].as_str().unwrap_or("");
    let r = &detail["reconciliation"];
    let amount = |field: &str| shown(r[field].as_i64().unwrap_or(0), currency);
    for line in detail["lines"].as_array().into_iter().flatten() {
        println!(
            "  {:<16} {:>16}  {}",
            line["kind"].as_str().unwrap_or(""),
            shown(line["amount_minor"].as_i64().unwrap_or(0), currency),
            line["charge"].as_str().or(line["payout"].as_str()).unwrap_or("")
        );
    }
    println!(
        "carried {} + sales {} − fees {} − refunds {} + fees returned {} + adjustments {} − payouts {} = paid {}",
        amount("opening_minor"),
        amount("sales_minor"),
        amount("fees_minor"),
        amount("refunds_minor"),
        amount("fees_returned_minor"),
        amount("adjustments_minor"),
        amount("payouts_minor"),
        amount("closing_minor")
    );
    Ok(())
}
