//! A tenant's bill for a month (`nexus bill`) and usage so far this period (`nexus usage`).

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use super::{period_open, shown, text};
use crate::cli::client::Connection;
use crate::cli::output;

#[derive(Debug, Args)]
pub struct BillArgs {
    /// The month, `YYYY-MM` (UTC).
    period: String,
    /// Operators: the tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Print the bill as CSV.
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  nexus usage ins_0123…            one install of your tenant\n  \
                  nexus usage --plugin acme/crm    every install of your plugin (its publisher)")]
pub struct UsageArgs {
    /// The install (`ins_…`; `nexus installs list` shows them).
    #[arg(required_unless_present = "plugin", conflicts_with = "plugin")]
    install: Option<String>,
    /// A plugin of yours, `publisher/name`: every live install's usage so far (publishers).
    #[arg(long)]
    plugin: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn bill(args: BillArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let mut query = vec![("format", if args.csv { "csv" } else { "json" }.to_string())];
    if let Some(tenant) = &args.tenant {
        query.push(("tenant", tenant.clone()));
    }
    let request = c.client().get(c.url(&format!("/v1/bills/{}", args.period))).query(&query);
    if args.csv {
        print!("{}", text(c, request).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let bill: Value = c.send(request).await?;
    let empty = |field: &str| bill[field].as_array().is_none_or(Vec::is_empty);
    if empty("lines") && empty("refunds") {
        let open = if period_open(&args.period) {
            "; the period is still open: subscriptions are charged when their period starts, usage when it ends \
             (`nexus charges` shows what is charged so far)"
        } else {
            ""
        };
        println!("nothing billed in {}{open}", args.period);
        return Ok(ExitCode::SUCCESS);
    }
    for line in bill["lines"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<26} {:>14}  {}",
            line["plugin"].as_str().unwrap_or(""),
            line["line"].as_str().unwrap_or(""),
            shown(line["amount_minor"].as_i64().unwrap_or(0), line["currency"].as_str().unwrap_or("")),
            line["status"].as_str().unwrap_or("")
        );
    }
    for refund in bill["refunds"].as_array().into_iter().flatten() {
        let amount = -refund["amount_minor"].as_i64().unwrap_or(0);
        println!(
            "{:<28} {:<26} {:>14}  {}",
            refund["charge"].as_str().unwrap_or(""),
            refund["kind"].as_str().unwrap_or(""),
            shown(amount, refund["currency"].as_str().unwrap_or("")),
            refund["reason"].as_str().unwrap_or("")
        );
    }
    for total in bill["totals"].as_array().into_iter().flatten() {
        let currency = total["currency"].as_str().unwrap_or("");
        let amount = |field: &str| shown(total[field].as_i64().unwrap_or(0), currency);
        println!(
            "total {currency}: charged {}, collected {}, outstanding {}, refunded {}",
            amount("charged_minor"),
            amount("collected_minor"),
            amount("outstanding_minor"),
            amount("refunded_minor")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn usage(args: UsageArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let path = match (&args.install, &args.plugin) {
        (_, Some(plugin)) => format!("/v1/plugins/{plugin}/usage"),
        (Some(install), None) => format!("/v1/installs/{install}/usage"),
        (None, None) => bail!("name an install, or --plugin publisher/name"),
    };
    let usage: Value = c.send(c.client().get(c.url(&path))).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&usage)?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.plugin.is_some() {
        print_plugin_usage(&usage);
        return Ok(ExitCode::SUCCESS);
    }
    let currency = usage["currency"].as_str().unwrap_or("");
    match usage["meter"].as_str() {
        Some(meter) => {
            let until =
                usage["period_end"].as_i64().map(|end| format!(" (the period ends {})", crate::console::when(end)));
            println!(
                "usage so far: {} {meter}, {} included, {} billable{}",
                usage["units"],
                usage["included_units"],
                usage["billable_units"],
                until.unwrap_or_default()
            );
            println!(
                "charged for it if the period ended now: {}",
                shown(usage["estimate_minor"].as_i64().unwrap_or(0), currency)
            );
        }
        None => println!("its plan bills no usage"),
    }
    match usage["next_charge_at"].as_i64() {
        Some(at) => {
            let advance = usage["next_period_minor"].as_i64().unwrap_or(0);
            let fee = if advance > 0 { format!(": {} in advance", shown(advance, currency)) } else { String::new() };
            println!("next charge: {}{fee}", crate::console::when(at));
        }
        None => println!("nothing further is scheduled to be charged"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The publisher's view: one line per live install, then the totals per currency.
fn print_plugin_usage(usage: &Value) {
    let plugin = usage["plugin"].as_str().unwrap_or_default();
    let installs = usage["installs"].as_array().cloned().unwrap_or_default();
    if installs.is_empty() {
        println!("{plugin} has no live installs: nothing is used or owed yet");
        return;
    }
    println!("{:<28} {:<24} {:>10} {:>10}  {:<18} period ends", "install", "tenant", "units", "billable", "so far");
    for install in &installs {
        let currency = install["currency"].as_str().unwrap_or("");
        let so_far = match install["meter"].as_str() {
            Some(_) => shown(install["estimate_minor"].as_i64().unwrap_or(0), currency),
            None => "no usage billed".into(),
        };
        let ends = install["period_end"].as_i64().map_or_else(|| "-".into(), crate::console::when);
        println!(
            "{:<28} {:<24} {:>10} {:>10}  {:<18} {ends}",
            output::shown(install["install"].as_str().unwrap_or_default()),
            output::shown(install["tenant"].as_str().unwrap_or_default()),
            install["units"],
            install["billable_units"],
            so_far
        );
    }
    for total in usage["totals"].as_array().into_iter().flatten() {
        let currency = total["currency"].as_str().unwrap_or("");
        println!(
            "total {currency}: {} install(s), {} units, {} billable, {} if every period ended now",
            total["installs"],
            total["units"],
            total["billable_units"],
            shown(total["estimate_minor"].as_i64().unwrap_or(0), currency)
        );
    }
    println!("usage is charged when each install's period ends; the partner's share follows each collection");
}
