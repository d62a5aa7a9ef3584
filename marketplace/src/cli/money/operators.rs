//! Operators' money commands: refunds (`nexus refund`), billing runs (`nexus billing run`)
//! and the ledger check (`nexus ledger verify`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{currency, minor, new_key, per_currency, shown};
use crate::cli::client::Connection;

#[derive(Debug, Args)]
pub struct RefundArgs {
    /// The charge (`chg_…`).
    charge: String,
    /// How much, in the charge's currency, such as `15.00`.
    #[arg(long)]
    amount: String,
    #[arg(long)]
    reason: String,
    /// The request's idempotency key (default: a new random one; reuse it to retry safely).
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Bill and collect everything due up to now (operators).
    Run(BillingRunArgs),
}

#[derive(Debug, Args)]
pub struct BillingRunArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every ledger invariant and report differences (operators). Exits 1 if any.
    Verify(LedgerVerifyArgs),
}

#[derive(Debug, Args)]
pub struct LedgerVerifyArgs {
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn refund(args: RefundArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let detail: Value = c.send(c.client().get(c.url(&format!("/v1/charges/{}", args.charge)))).await?;
    let code = detail["charge"]["currency"].as_str().context("the charge has no currency")?;
    let amount = minor("--amount", &args.amount, currency(code)?)?;
    let key = new_key(args.key)?;
    let request = c
        .client()
        .post(c.url(&format!("/v1/charges/{}/refunds", args.charge)))
        .header("idempotency-key", &key)
        .json(&json!({ "amount_minor": amount, "reason": args.reason }));
    let refund: Value = c.send(request).await.with_context(|| format!("retry safely with --key {key}"))?;
    println!(
        "refunded {} of {} ({}); the platform fee returned {}",
        shown(amount, code),
        args.charge,
        refund["id"].as_str().unwrap_or(""),
        shown(refund["fee_minor"].as_i64().unwrap_or(0), code)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn billing(command: BillingCommand) -> anyhow::Result<ExitCode> {
    let BillingCommand::Run(args) = command;
    let c = &args.connection;
    eprintln!("billing everything due up to now…");
    let report: Value = c.send(c.client().post(c.url("/v1/billing/runs")).json(&json!({}))).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let charged = per_currency(&report["charged"]);
    println!(
        "{} install(s) billed, {} charge(s) created ({}), {} collected, {} declined, {} awaiting the provider",
        report["installs_billed"],
        report["charges_created"],
        charged,
        report["collected"],
        report["declined"],
        report["unknown"]
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn ledger(command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let LedgerCommand::Verify(args) = command;
    let c = &args.connection;
    let report: Value = c.send(c.client().get(c.url("/v1/ledger/verify"))).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in report["checks"].as_array().into_iter().flatten() {
            let mark = if check["ok"] == true { "ok  " } else { "FAIL" };
            println!("{mark} {}", check["name"].as_str().unwrap_or(""));
            for difference in check["differences"].as_array().into_iter().flatten() {
                println!("       {}", difference.as_str().unwrap_or(""));
            }
        }
        println!("{} transactions, {} entries", report["transactions"], report["entries"]);
    }
    Ok(if report["ok"] == true { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
