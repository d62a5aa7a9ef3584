//! `nexus installs <command>`: what a tenant does with one install after installing it:
//! upgrade it, resume it, uninstall it, change its settings, read its invocations.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nexus_registry::PluginId;
use serde_json::{Value, json};

use super::{ask, grant_all, pairs, print_consent, print_table, status};
use crate::cli::client::Connection;
use crate::installs::{Consent, Install};

/// What a tenant does with one install, without curl.
#[derive(Debug, Subcommand)]
pub enum InstallsCommand {
    /// Take the newer version waiting for consent, after reviewing what it asks for.
    Upgrade(UpgradeArgs),
    /// Resume a paused install.
    Resume(InstallId),
    /// Uninstall (history stays; settings, secrets and KV data are deleted).
    Uninstall(InstallId),
    /// Replace the config and set or remove secrets.
    Settings(SettingsArgs),
    /// The install's invocations, newest first.
    Invocations(InvocationsArgs),
}

#[derive(Debug, Args)]
pub struct InstallId {
    /// The install (`ins_…`).
    id: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    id: String,
    /// Grant what the new version asks for without asking.
    #[arg(long, short)]
    yes: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    id: String,
    /// The whole new config, `KEY=VALUE` (repeat); without any, the config stays as it is.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Remove every config entry.
    #[arg(long, conflicts_with = "config")]
    clear_config: bool,
    /// Set a secret, inline or from a file (repeat).
    #[arg(long = "secret", value_name = "KEY=VALUE|KEY=@FILE")]
    secrets: Vec<String>,
    /// Remove a secret (repeat).
    #[arg(long = "remove-secret", value_name = "KEY")]
    remove_secrets: Vec<String>,
    /// A new version requirement, such as `^0.2`: the install moves to the best version in
    /// it and keeps its KV data, settings and secrets.
    #[arg(long)]
    requirement: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct InvocationsArgs {
    id: String,
    /// Only this outcome (`ok`, `trapped`, …).
    #[arg(long)]
    outcome: Option<String>,
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub(super) async fn run(command: InstallsCommand) -> anyhow::Result<ExitCode> {
    match command {
        InstallsCommand::Upgrade(args) => return upgrade(&args).await,
        InstallsCommand::Resume(args) => {
            let c = &args.connection;
            let path = format!("/v1/installs/{}/resume", args.id);
            let resumed: Install = c.send(c.client().post(c.url(&path)).json(&json!({}))).await?;
            println!("{} is {}", resumed.id, status(&resumed));
        }
        InstallsCommand::Uninstall(args) => {
            let c = &args.connection;
            let gone: Install = c.send(c.client().delete(c.url(&format!("/v1/installs/{}", args.id)))).await?;
            println!("uninstalled {} ({}); its invocations and charges stay as history", gone.id, gone.plugin);
        }
        InstallsCommand::Settings(args) => settings(&args).await?,
        InstallsCommand::Invocations(args) => invocations(&args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes the version waiting for consent, after showing what it asks for and asking.
async fn upgrade(args: &UpgradeArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let install: Install = c.send(c.client().get(c.url(&format!("/v1/installs/{}", args.id)))).await?;
    let Some(pending) = &install.pending_upgrade else {
        bail!(
            "{} waits for no upgrade: it runs {} and nothing newer within {} asks for more",
            args.id,
            install.version,
            install.requirement
        );
    };
    let id: PluginId = install.plugin.parse().context("unexpected plugin id from the server")?;
    let url = c.url(&format!("/v1/catalog/{}/{}/consent", id.publisher, id.name));
    let consent: Consent =
        c.send(c.client().get(url).query(&[("requirement", format!("={}", pending.version))])).await?;
    eprintln!("{} {} → {}: {}", install.plugin, install.version, pending.version, pending.reason);
    print_consent(&consent);
    if !args.yes && !ask("Grant these and upgrade?")? {
        eprintln!("not upgraded");
        return Ok(ExitCode::from(2));
    }
    let answer = grant_all(&consent);
    let path = format!("/v1/installs/{}/upgrade", args.id);
    let upgraded: Install = c.send(c.client().post(c.url(&path)).json(&json!({ "consent": answer }))).await?;
    println!("{} runs {} now", upgraded.id, upgraded.version);
    Ok(ExitCode::SUCCESS)
}

/// Replaces the config, sets or removes secrets, and moves to a new requirement.
async fn settings(args: &SettingsArgs) -> anyhow::Result<()> {
    let c = &args.connection;
    let mut secrets: BTreeMap<String, Option<String>> =
        pairs("--secret", &args.secrets, true)?.into_iter().map(|(k, v)| (k, Some(v))).collect();
    for name in &args.remove_secrets {
        if secrets.insert(name.clone(), None).is_some() {
            bail!("--secret {name} and --remove-secret {name} contradict each other; give one");
        }
    }
    let config = if args.clear_config {
        Some(BTreeMap::new())
    } else if args.config.is_empty() {
        None
    } else {
        Some(pairs("--config", &args.config, false)?)
    };
    let body = json!({ "config": config, "secrets": secrets, "requirement": args.requirement });
    let changed: Install = c.send(c.client().patch(c.url(&format!("/v1/installs/{}", args.id))).json(&body)).await?;
    if args.requirement.is_some() {
        println!("version   {} (requirement {})", changed.version, changed.requirement);
        if let Some(pending) = &changed.pending_upgrade {
            println!("pending   {}: {} (`nexus installs upgrade {}`)", pending.version, pending.reason, changed.id);
        }
    }
    println!("config    {}", serde_json::to_string(&changed.config)?);
    println!("secrets   {} (sealed, not shown)", changed.secret_names.join(", "));
    Ok(())
}

/// The install's invocations, newest first, as a table or the API's JSON.
async fn invocations(args: &InvocationsArgs) -> anyhow::Result<()> {
    let c = &args.connection;
    let mut query = vec![("per_page", args.limit.clamp(1, 100).to_string())];
    if let Some(outcome) = &args.outcome {
        query.push(("outcome", outcome.clone()));
    }
    let path = format!("/v1/installs/{}/invocations", args.id);
    let page: Value = c.send(c.client().get(c.url(&path)).query(&query)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    let header = ["ID", "EVENT", "TYPE", "OUTCOME", "DURATION", "USAGE"].map(String::from);
    let rows = page["items"].as_array().into_iter().flatten().map(invocation_row);
    print_table(std::iter::once(header).chain(rows).collect());
    println!("{} invocation(s) in all", page["total"]);
    Ok(())
}

/// One invocation's cells: id, event, type, outcome, duration, usage by meter.
fn invocation_row(i: &Value) -> [String; 6] {
    let usage = i["usage"]
        .as_object()
        .map(|u| u.iter().map(|(meter, units)| format!("{meter}={units}")).collect::<Vec<_>>().join(","));
    [
        i["id"].as_str().unwrap_or("").to_string(),
        i["event_id"].as_str().unwrap_or("").to_string(),
        i["event_type"].as_str().unwrap_or("").to_string(),
        crate::cli::output::shown(i["outcome"].as_str().unwrap_or("")),
        format!("{} µs", i["duration_us"]),
        usage.filter(|u| !u.is_empty()).unwrap_or_else(|| "-".into()),
    ]
}
