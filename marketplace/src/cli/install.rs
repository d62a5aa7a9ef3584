//! `nexus install` and `nexus installs`, a tenant's side of installing: review what a plugin
//! asks for, consent, install it with settings and secrets, list what is installed. Also the
//! operator's `nexus tenant create`, which makes the account these commands act for.
//!
//! Secret values go to the server once, where they are sealed; nothing here prints them.

mod manage;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nexus_registry::PluginId;
use nexus_registry::publishers::random_hex;
use serde_json::{Value, json};

use self::manage::InstallsCommand;
use super::client::{Connection, decode, unreachable_server};
use crate::accounts::IssuedAccountToken;
use crate::installs::{Consent, GrantConsent, Install};

/// Random bytes in an install's `Idempotency-Key`: 128 bits, so no two installs share one.
const IDEMPOTENCY_KEY_BYTES: usize = 16;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (an account that installs plugins) and print its first API token, once.
    /// Needs an operator token.
    Create(CreateTenantArgs),
}

#[derive(Debug, Args)]
pub struct CreateTenantArgs {
    /// The tenant id, such as `globex` (lowercase letters, digits, '-').
    id: String,
    /// The name shown for the tenant (default: the id).
    #[arg(long)]
    display_name: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
#[command(after_help = "Secrets: --secret KEY=@FILE reads the value from FILE (one trailing newline dropped), \
                        which keeps it out of your shell history. Values are sealed by the server and never \
                        printed.\n\nWithout --yes the command lists what the plugin asks for and asks before \
                        installing; when standard input is not a terminal, --yes is required.")]
pub struct InstallArgs {
    /// The plugin: publisher/name.
    plugin: PluginId,
    /// The versions to accept, a semver requirement such as `^1` (default: the newest stable).
    #[arg(long)]
    requirement: Option<String>,
    /// The pricing plan's id (default: the plugin's first plan).
    #[arg(long)]
    plan: Option<String>,
    /// A setting for the plugin; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A secret for the plugin, given inline or read from a file; repeat for more.
    #[arg(long = "secret", value_name = "KEY=VALUE|KEY=@FILE")]
    secrets: Vec<String>,
    /// Grant everything the plugin asks for without asking.
    #[arg(long, short)]
    yes: bool,
    /// Print the new install as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InstallsArgs {
    #[command(subcommand)]
    command: Option<InstallsCommand>,
    /// Include uninstalled installs (history).
    #[arg(long)]
    all: bool,
    /// Print the installs as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn tenant(command: TenantCommand) -> anyhow::Result<ExitCode> {
    let TenantCommand::Create(args) = command;
    let connection = &args.connection;
    let body = json!({ "id": args.id, "display_name": args.display_name.as_deref().unwrap_or(&args.id) });
    let token: IssuedAccountToken =
        connection.send(connection.client().post(connection.url("/v1/tenants")).json(&body)).await?;
    println!("created tenant {}", args.id);
    println!("token id  {}", token.id);
    println!("token     {}", token.secret);
    eprintln!("The token is shown once. Give it to the tenant: export NEXUS_TOKEN=<token>");
    Ok(ExitCode::SUCCESS)
}

pub async fn install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let config = pairs("--config", &args.config, false)?;
    let secrets = pairs("--secret", &args.secrets, true)?;
    let connection = &args.connection;
    let id = &args.plugin;

    let url = connection.url(&format!("/v1/catalog/{}/{}/consent", id.publisher, id.name));
    let mut request = connection.client().get(url);
    if let Some(requirement) = &args.requirement {
        request = request.query(&[("requirement", requirement)]);
    }
    let consent: Consent = connection.send(request).await?;
    print_consent(&consent);
    print_plan(connection, id, args.plan.as_deref()).await?;
    if !args.yes && !ask("Grant these and install?")? {
        eprintln!("not installed");
        return Ok(ExitCode::from(2));
    }
    let answer = grant_all(&consent);
    let body = json!({
        "plugin": id.to_string(), "requirement": args.requirement, "consent": answer, "plan": args.plan,
        "config": config, "secrets": secrets,
    });
    let created = post_once(connection, "/v1/installs", &body).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
        return Ok(ExitCode::SUCCESS);
    }
    let install: Install = serde_json::from_value(created).context("unexpected answer from the server")?;
    println!("installed {}", install.plugin);
    println!("id        {}", install.id);
    println!("version   {} (requirement {})", install.version, install.requirement);
    println!("status    {}", status(&install));
    println!("plan      {}", install.plan);
    if !install.secret_names.is_empty() {
        println!("secrets   {} (sealed, not shown)", install.secret_names.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(args: InstallsArgs) -> anyhow::Result<ExitCode> {
    if let Some(command) = args.command {
        return manage::run(command).await;
    }
    let connection = &args.connection;
    // One page of 100: a tenant has one live install per plugin.
    let mut request = connection.client().get(connection.url("/v1/installs")).query(&[("per_page", "100")]);
    if args.all {
        request = request.query(&[("all", "true")]);
    }
    let installs: Value = connection.send(request).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&installs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let installs: Vec<Install> =
        serde_json::from_value(installs["items"].clone()).context("unexpected answer from the server")?;
    if installs.is_empty() {
        eprintln!("no installs; install a plugin with `nexus install publisher/name`");
        return Ok(ExitCode::SUCCESS);
    }
    let header = ["ID", "PLUGIN", "VERSION", "STATUS", "PENDING UPGRADE"].map(String::from);
    let rows = installs.iter().map(|install| {
        let pending = match (&install.pending_upgrade, &install.newer_version) {
            (Some(upgrade), _) => format!("{}: {}", upgrade.version, upgrade.reason),
            (None, Some(newer)) => {
                format!("{newer} is outside {} (installs settings --requirement)", install.requirement)
            }
            (None, None) => "-".to_string(),
        };
        [install.id.to_string(), install.plugin.clone(), install.version.clone(), status(install), pending]
    });
    print_table(std::iter::once(header).chain(rows).collect());
    Ok(ExitCode::SUCCESS)
}

fn status(install: &Install) -> String {
    match &install.status_reason {
        Some(reason) => format!("{}: {reason}", install.status),
        None => install.status.to_string(),
    }
}

/// Prints rows in columns as wide as their widest cell.
pub(super) fn print_table<const N: usize>(rows: Vec<[String; N]>) {
    let mut widths = [0; N];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// Parses repeated `--config` or `--secret` flags, `KEY=VALUE`. A malformed secret is not
/// repeated in the error, as it may be the value itself.
fn pairs(flag: &str, given: &[String], secret: bool) -> anyhow::Result<BTreeMap<String, String>> {
    let mut entries = BTreeMap::new();
    for text in given {
        let Some((key, raw)) = text.split_once('=').filter(|(key, _)| !key.is_empty()) else {
            if secret {
                bail!(
                    "a {flag} is not KEY=VALUE (it is not shown, as it may be secret); write it as \
                     {flag} name=value or {flag} name=@file"
                );
            }
            bail!("{flag} `{text}` is not KEY=VALUE; write it as {flag} name=value");
        };
        let value = if secret { secret_value(key, raw)? } else { raw.to_string() };
        if entries.insert(key.to_string(), value).is_some() {
            bail!("{flag} {key} is given twice; give each key once");
        }
    }
    Ok(entries)
}

/// A secret's value: inline, or read from the file after `@`.
fn secret_value(key: &str, raw: &str) -> anyhow::Result<String> {
    let Some(path) = raw.strip_prefix('@') else { return Ok(raw.to_string()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("--secret {key}: cannot read {path}"))?;
    let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    Ok(value.to_string())
}

/// The plan the install will be on and what it costs, beside what it is granted: the plan
/// asked for, else the plugin's first (as the server chooses). A plan that does not exist is
/// left for the server to refuse with the list of plans.
async fn print_plan(connection: &Connection, id: &PluginId, key: Option<&str>) -> anyhow::Result<()> {
    let url = connection.url(&format!("/v1/plugins/{}/{}/plans", id.publisher, id.name));
    let plans: Vec<Value> = decode(connection.client().get(url).send().await?).await?;
    let chosen = match key {
        Some(key) => plans.iter().find(|plan| plan["key"] == key),
        None => plans.first(),
    };
    match chosen {
        Some(plan) => eprintln!(
            "on plan   {} ({}, revision {}): {}",
            plan["name"].as_str().unwrap_or(""),
            plan["key"].as_str().unwrap_or(""),
            plan["revision"],
            super::money::plan_terms(plan)
        ),
        None if plans.is_empty() => eprintln!("on plan   none: {id} is free to install"),
        None => {}
    }
    Ok(())
}

/// Lists what the plugin asks for, on stderr beside the prompt, so `--json` output stays clean.
fn print_consent(consent: &Consent) {
    if consent.capabilities.is_empty() {
        eprintln!("{}@{} asks for no capabilities", consent.plugin, consent.version);
        return;
    }
    eprintln!("{}@{} asks for:", consent.plugin, consent.version);
    let width = consent.capabilities.iter().map(|c| c.capability.as_str().len()).max().unwrap_or(0);
    for requested in &consent.capabilities {
        eprintln!("  {:<width$}  {}", requested.capability.as_str(), requested.reason);
        for host in &requested.hosts {
            eprintln!("  {:<width$}    host {}: {}", "", host.host, host.reason);
        }
    }
}

/// The answer that grants everything `consent` lists: each capability and each host.
fn grant_all(consent: &Consent) -> GrantConsent {
    GrantConsent {
        capabilities: consent.capabilities.iter().map(|c| c.capability).collect(),
        hosts: consent.capabilities.iter().flat_map(|c| &c.hosts).map(|h| h.host.clone()).collect(),
    }
}

/// Asks a yes/no question on the terminal; anything but `y` or `yes` is no.
fn ask(question: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("cannot ask for consent: standard input is not a terminal; pass --yes to grant what is listed above");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// POSTs `body` with an `Idempotency-Key`, and once more if the request may have reached
/// the server but no answer came back: the server runs a request once per key, so the retry
/// never installs twice.
async fn post_once(connection: &Connection, path: &str, body: &Value) -> anyhow::Result<Value> {
    let key = random_hex(IDEMPOTENCY_KEY_BYTES)?;
    let token = connection.token()?;
    let send = || {
        let request = connection.client().post(connection.url(path)).bearer_auth(token);
        request.header("idempotency-key", &key).json(body).send()
    };
    let response = match send().await {
        Ok(response) => response,
        Err(error) if !error.is_connect() => {
            eprintln!("no answer from {} ({error}); retrying with the same Idempotency-Key", connection.server());
            send().await.map_err(|e| unreachable_server(&connection.server(), &e))?
        }
        Err(error) => return Err(unreachable_server(&connection.server(), &error)),
    };
    decode(response).await
}
