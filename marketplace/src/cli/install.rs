//! `nexus install` and `nexus installs`, a tenant's side of installing: review what a plugin
//! asks for, consent, install it with settings and secrets, list what is installed. Also the
//! operator's `nexus tenant create`, which makes the account these commands act for.
//!
//! Secret values go to the server once, where they are sealed; nothing here prints them.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nexus_registry::PluginId;
use nexus_registry::publishers::random_hex;
use serde_json::{Value, json};

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
    let answer = GrantConsent {
        capabilities: consent.capabilities.iter().map(|c| c.capability).collect(),
        hosts: consent.capabilities.iter().flat_map(|c| &c.hosts).map(|h| h.host.clone()).collect(),
    };
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
        return one(command).await;
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
        [install.id.clone(), install.plugin.clone(), install.version.clone(), status(install), pending]
    });
    print_table(std::iter::once(header).chain(rows).collect());
    Ok(ExitCode::SUCCESS)
}

async fn one(command: InstallsCommand) -> anyhow::Result<ExitCode> {
    match command {
        InstallsCommand::Upgrade(args) => {
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
            let answer = GrantConsent {
                capabilities: consent.capabilities.iter().map(|c| c.capability).collect(),
                hosts: consent.capabilities.iter().flat_map(|c| &c.hosts).map(|h| h.host.clone()).collect(),
            };
            let path = format!("/v1/installs/{}/upgrade", args.id);
            let upgraded: Install = c.send(c.client().post(c.url(&path)).json(&json!({ "consent": answer }))).await?;
            println!("{} runs {} now", upgraded.id, upgraded.version);
        }
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
        InstallsCommand::Settings(args) => {
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
            let changed: Install =
                c.send(c.client().patch(c.url(&format!("/v1/installs/{}", args.id))).json(&body)).await?;
            if args.requirement.is_some() {
                println!("version   {} (requirement {})", changed.version, changed.requirement);
                if let Some(pending) = &changed.pending_upgrade {
                    println!(
                        "pending   {}: {} (`nexus installs upgrade {}`)",
                        pending.version, pending.reason, changed.id
                    );
                }
            }
            println!("config    {}", serde_json::to_string(&changed.config)?);
            println!("secrets   {} (sealed, not shown)", changed.secret_names.join(", "));
        }
        InstallsCommand::Invocations(args) => {
            let c = &args.connection;
            let mut query = vec![("per_page", args.limit.clamp(1, 100).to_string())];
            if let Some(outcome) = &args.outcome {
                query.push(("outcome", outcome.clone()));
            }
            let path = format!("/v1/installs/{}/invocations", args.id);
            let page: Value = c.send(c.client().get(c.url(&path)).query(&query)).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            let header = ["ID", "EVENT", "TYPE", "OUTCOME", "DURATION", "USAGE"].map(String::from);
            let rows = page["items"].as_array().into_iter().flatten().map(|i| {
                let usage = i["usage"]
                    .as_object()
                    .map(|u| u.iter().map(|(meter, units)| format!("{meter}={units}")).collect::<Vec<_>>().join(","));
                [
                    i["id"].as_str().unwrap_or("").to_string(),
                    i["event_id"].as_str().unwrap_or("").to_string(),
                    i["event_type"].as_str().unwrap_or("").to_string(),
                    super::output::shown(i["outcome"].as_str().unwrap_or("")),
                    format!("{} µs", i["duration_us"]),
                    usage.filter(|u| !u.is_empty()).unwrap_or_else(|| "-".into()),
                ]
            });
            print_table(std::iter::once(header).chain(rows).collect());
            println!("{} invocation(s) in all", page["total"]);
        }
    }
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

/// Lists what the plugin asks for, on stderr beside the prompt, so `--json` output stays clean.
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
