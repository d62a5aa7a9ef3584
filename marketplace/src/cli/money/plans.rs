//! Plans: listing, adding, revising and retiring a plugin's plans (`nexus plans`), and
//! moving an install to another plan (`nexus plan change`).

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nexus_registry::PluginId;
use serde_json::{Value, json};

use super::{currency, minor, new_key, shown};
use crate::cli::client::{self, Connection};

#[derive(Debug, Subcommand)]
pub enum PlansCommand {
    /// List a plugin's plans (`--all`: every revision, for its publisher).
    List(PlansListArgs),
    /// Add a plan, or a new revision of one (installs keep the revision they agreed to).
    Set(Box<PlanSetArgs>),
    /// Stop offering a plan to new installs.
    Retire(PlanRetireArgs),
}

#[derive(Debug, Args)]
pub struct PlansListArgs {
    plugin: PluginId,
    #[arg(long)]
    all: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nexus plans set acme/crm --key team --name Team --model subscription --currency USD \
                        --price 29.00 --interval month --trial-days 14\n  nexus plans set acme/crm --key metered \
                        --name Metered --model usage --currency EUR --meter api-calls --unit-price 0.02 \
                        --included 1000 --cap 50.00"
)]
pub struct PlanSetArgs {
    plugin: PluginId,
    /// The plan's key, such as `team`.
    #[arg(long)]
    key: String,
    #[arg(long)]
    name: String,
    /// free, one-time, subscription or usage.
    #[arg(long)]
    model: String,
    #[arg(long)]
    currency: Option<String>,
    /// The one-time price or each period's base fee, such as `29.00`.
    #[arg(long)]
    price: Option<String>,
    /// month or year.
    #[arg(long)]
    interval: Option<String>,
    #[arg(long, default_value_t = 0)]
    trial_days: u32,
    /// The usage meter billed (usage, or subscription with usage on top).
    #[arg(long)]
    meter: Option<String>,
    /// The price of one unit of the meter, such as `0.02`.
    #[arg(long)]
    unit_price: Option<String>,
    /// Units free each period.
    #[arg(long, default_value_t = 0)]
    included: u64,
    /// The most one period's usage may cost, such as `50.00`.
    #[arg(long)]
    cap: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct PlanRetireArgs {
    plugin: PluginId,
    key: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Move an install to another plan of its plugin, prorated for the rest of the period.
    Change(PlanChangeArgs),
}

#[derive(Debug, Args)]
pub struct PlanChangeArgs {
    /// The install (`ins_…`).
    install: String,
    /// The plan key (or a plan revision id, `pln_…`).
    plan: String,
    /// The request's idempotency key (default: a new random one; reuse it to retry safely).
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

pub async fn plans(command: PlansCommand) -> anyhow::Result<ExitCode> {
    match command {
        PlansCommand::List(args) => list(&args).await?,
        PlansCommand::Set(args) => set(&args).await?,
        PlansCommand::Retire(args) => retire(&args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: &PlansListArgs) -> anyhow::Result<()> {
    let c = &args.connection;
    let path = format!("/v1/plugins/{}/plans{}", args.plugin, if args.all { "?all=true" } else { "" });
    let request = c.client().get(c.url(&path));
    let plans: Vec<Value> =
        if args.all { c.send(request).await? } else { client::decode(request.send().await?).await? };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plans)?);
        return Ok(());
    }
    for plan in &plans {
        println!("{}", describe_plan(plan));
    }
    if plans.is_empty() {
        println!("{} offers no plan", args.plugin);
    }
    Ok(())
}

async fn set(args: &PlanSetArgs) -> anyhow::Result<()> {
    let currency = args.currency.as_deref().map(currency).transpose()?;
    let amount = |flag: &str, text: &Option<String>| -> anyhow::Result<Option<i64>> {
        match (text, currency) {
            (Some(text), Some(currency)) => minor(flag, text, currency).map(Some),
            (Some(_), None) => bail!("{flag} needs --currency"),
            (None, _) => Ok(None),
        }
    };
    let usage = match &args.meter {
        Some(meter) => Some(json!({
            "meter": meter,
            "unit_minor": amount("--unit-price", &args.unit_price)?.context("--meter needs --unit-price")?,
            "included_units": args.included,
            "cap_minor": amount("--cap", &args.cap)?,
        })),
        None => None,
    };
    let body = json!({
        "key": args.key, "name": args.name, "model": args.model, "currency": args.currency,
        "price_minor": amount("--price", &args.price)?.unwrap_or(0), "interval": args.interval,
        "trial_days": args.trial_days, "usage": usage,
    });
    let c = &args.connection;
    let plan: Value = c.send(c.client().post(c.url(&format!("/v1/plugins/{}/plans", args.plugin))).json(&body)).await?;
    println!("{}", describe_plan(&plan));
    Ok(())
}

async fn retire(args: &PlanRetireArgs) -> anyhow::Result<()> {
    let c = &args.connection;
    let response = c
        .client()
        .delete(c.url(&format!("/v1/plugins/{}/plans/{}", args.plugin, args.key)))
        .bearer_auth(c.token()?)
        .send()
        .await?;
    if !response.status().is_success() {
        client::decode::<Value>(response).await?;
    }
    println!("retired {} of {}: new installs cannot choose it; installs on it keep it", args.key, args.plugin);
    Ok(())
}

fn describe_plan(plan: &Value) -> String {
    let retired = if plan["retired_at"].is_null() { "" } else { " (retired)" };
    format!(
        "{:<16} rev {:<3} {:<24} {}{retired}",
        plan["key"].as_str().unwrap_or(""),
        plan["revision"],
        plan["name"].as_str().unwrap_or(""),
        plan_terms(plan)
    )
}

/// What a plan costs, in words: `60.00 EUR once`, `9.00 USD per month, 0.02 USD per events
/// unit (1000 included)`, `no charge`.
pub(in crate::cli) fn plan_terms(plan: &Value) -> String {
    let currency = plan["currency"].as_str().unwrap_or("");
    let price = plan["price_minor"].as_i64().unwrap_or(0);
    let mut terms = match plan["model"].as_str().unwrap_or("") {
        "free" => "no charge".to_string(),
        "one-time" => format!("{} once", shown(price, currency)),
        model => {
            let interval = plan["interval"].as_str().unwrap_or("month");
            if price > 0 {
                format!("{} per {interval}", shown(price, currency))
            } else {
                format!("{model} per {interval}")
            }
        }
    };
    if let Some(usage) = plan["usage"].as_object() {
        terms += &format!(
            ", {} per {} unit ({} included",
            shown(usage["unit_minor"].as_i64().unwrap_or(0), currency),
            usage["meter"].as_str().unwrap_or(""),
            usage["included_units"].as_u64().unwrap_or(0)
        );
        if let Some(cap) = usage["cap_minor"].as_i64() {
            terms += &format!(", capped at {}", shown(cap, currency));
        }
        terms.push(')');
    }
    if let Some(days) = plan["trial_days"].as_u64().filter(|d| *d > 0) {
        terms += &format!(", {days}-day trial");
    }
    terms
}

pub async fn change_plan(command: PlanCommand) -> anyhow::Result<ExitCode> {
    let PlanCommand::Change(args) = command;
    let c = &args.connection;
    let key = new_key(args.key)?;
    let request = c
        .client()
        .put(c.url(&format!("/v1/installs/{}/plan", args.install)))
        .header("idempotency-key", &key)
        .json(&json!({ "plan": args.plan }));
    let install: Value = c.send(request).await.with_context(|| format!("retry safely with --key {key}"))?;
    println!("{} is on plan {} ({})", args.install, install["plan"].as_str().unwrap_or(""), install["plan_id"]);
    println!("prorated charges and credits: `nexus charges --install {}`", args.install);
    Ok(ExitCode::SUCCESS)
}
