//! `nexus plugin health publisher/name`: how each version of your plugin is doing across
//! every install (invocations, errors by code, error rate, mean duration). Figures only:
//! no tenant's payloads or secrets.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::client::Connection;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The plugin: publisher/name.
    plugin: String,
    /// Only invocations of the last this many hours.
    #[arg(long)]
    hours: Option<u64>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let since = args.hours.map_or(0, |hours| {
        let now = nexus_registry::db::now_ms();
        now.saturating_sub(i64::try_from(hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX))
    });
    let path = format!("/v1/plugins/{}/health", args.plugin);
    let versions: Value = c.send(c.client().get(c.url(&path)).query(&[("since", since.to_string())])).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(ExitCode::SUCCESS);
    }
    let header = ["VERSION", "INVOCATIONS", "OK", "ERROR RATE", "MEAN", "INSTALLS", "ERRORS"].map(String::from);
    let rows = versions.as_array().into_iter().flatten().map(|v| {
        let errors = v["errors"]
            .as_object()
            .map(|e| e.iter().map(|(code, n)| format!("{code}={n}")).collect::<Vec<_>>().join(","))
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "-".into());
        let rate = v["error_rate_bp"].as_i64().unwrap_or(0);
        [
            v["version"].as_str().unwrap_or("").to_string(),
            v["invocations"].to_string(),
            v["ok"].to_string(),
            format!("{}.{:02} %", rate / 100, rate % 100),
            format!("{} µs", v["mean_duration_us"]),
            v["installs"].to_string(),
            errors,
        ]
    });
    let rows: Vec<[String; 7]> = std::iter::once(header).chain(rows).collect();
    if rows.len() == 1 {
        println!("no invocations of {} yet", args.plugin);
    } else {
        super::install::print_table(rows);
    }
    Ok(ExitCode::SUCCESS)
}
