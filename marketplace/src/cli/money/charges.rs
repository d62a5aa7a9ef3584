//! A tenant's charges: listing them (`nexus charges`) and paying the failed ones now
//! (`nexus settle`).

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::shown;
use crate::cli::client::Connection;

#[derive(Debug, Args)]
pub struct SettleArgs {
    /// The install whose failed charges to pay now.
    install: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct ChargesArgs {
    /// Operators: one tenant's charges.
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    install: Option<String>,
    /// nothing-due, pending, collecting, collected or failed.
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn settle(args: SettleArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let report: Value =
        c.send(c.client().post(c.url(&format!("/v1/installs/{}/settle", args.install))).json(&json!({}))).await?;
    let collected = report["collected"].as_array().map_or(0, Vec::len);
    let outstanding = report["outstanding"].as_array().map_or(0, Vec::len);
    println!("collected {collected} charge(s); {outstanding} still outstanding; install is {}", report["status"]);
    Ok(if outstanding == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn charges(args: ChargesArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let mut query = vec![("per_page", "100".to_string())];
    for (name, value) in [("tenant", &args.tenant), ("install", &args.install), ("status", &args.status)] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    let page: Value = c.send(c.client().get(c.url("/v1/charges")).query(&query)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(ExitCode::SUCCESS);
    }
    let items = page["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        println!("no charges match (a subscription is charged when its period starts, usage when it ends)");
        return Ok(ExitCode::SUCCESS);
    }
    for charge in items {
        println!("{}", charge_line(charge));
    }
    println!("{} charge(s)", page["total"]);
    Ok(ExitCode::SUCCESS)
}

/// One charge as `nexus charges` lists it: id, status, plugin, plan and revision, line,
/// period (UTC days), units (usage lines: reported, included, billed, and the cap if it
/// applied), amount.
fn charge_line(charge: &Value) -> String {
    let detail = &charge["detail"];
    let plan = format!("{}@{}", detail["plan_key"].as_str().unwrap_or("?"), detail["plan_revision"]);
    let day = |field: &str| charge[field].as_i64().map_or_else(|| "?".into(), nexus_money::period::day_label);
    let period = match (charge["period_start"].as_i64(), charge["period_end"].as_i64()) {
        (Some(start), Some(end)) if start == end => day("period_start"),
        _ => format!("{}..{}", day("period_start"), day("period_end")),
    };
    let mut units = String::new();
    if let Some(reported) = detail["units_reported"].as_u64() {
        units = format!(
            "  {reported} {} ({} included, {} billed)",
            detail["meter"].as_str().unwrap_or("units"),
            detail["units_included"].as_u64().unwrap_or(0),
            detail["units_billable"].as_u64().unwrap_or(0)
        );
    }
    let currency = charge["currency"].as_str().unwrap_or("");
    if let Some(cap) = detail["cap_applied_minor"].as_i64() {
        units.push_str(&format!(", capped at {}", shown(cap, currency)));
    }
    format!(
        "{}  {:<10} {:<28} {:<14} {:<14} {:<23} {:>14}{units}",
        charge["id"].as_str().unwrap_or(""),
        charge["status"].as_str().unwrap_or(""),
        charge["plugin"].as_str().unwrap_or(""),
        plan,
        charge["line"].as_str().unwrap_or(""),
        period,
        shown(charge["amount_minor"].as_i64().unwrap_or(0), currency),
    )
}
