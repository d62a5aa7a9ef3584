//! `nexus yank publisher/name@version --reason ...`: the version is never chosen for new
//! installs; existing installs keep running and are told.

use std::process::ExitCode;

use clap::Args;

use super::client::Connection;

#[derive(Debug, Args)]
pub struct YankArgs {
    /// The version to yank: publisher/name@version.
    target: String,
    /// Why, shown to tenants who have it installed.
    #[arg(long)]
    reason: String,
    /// The version to move to instead.
    #[arg(long)]
    successor: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: YankArgs) -> anyhow::Result<ExitCode> {
    let Some((id, version)) = args.target.rsplit_once('@') else {
        anyhow::bail!("expected publisher/name@version, got `{}`", args.target);
    };
    let url = args.connection.url(&format!("/v1/plugins/{id}/versions/{version}/yank"));
    let body = serde_json::json!({ "reason": args.reason, "successor": args.successor });
    let record: serde_json::Value = args.connection.send(args.connection.client().post(url).json(&body)).await?;
    println!("yanked {id}@{}: {}", record["version"].as_str().unwrap_or(version), args.reason);
    Ok(ExitCode::SUCCESS)
}
