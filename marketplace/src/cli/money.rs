//! The money commands: publishers manage plans (`nexus plans`), tenants change plan, settle
//! and read their bills (`nexus plan change`, `nexus settle`, `nexus charges`, `nexus bill`),
//! partners read their sales (`nexus sales`), operators refund, run billing and check the
//! ledger (`nexus refund`, `nexus billing run`, `nexus ledger verify`).
//!
//! Amounts are typed as people write them (`29.00`, `0.25`, `500` for JPY) and parsed
//! exactly in the currency's minor units: `12.345` EUR is refused, never rounded.

use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use nexus_money::{Currency, Money};
use nexus_registry::PluginId;
use nexus_registry::publishers::random_hex;
use serde_json::{Value, json};

use super::client::Connection;
use super::output;

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

#[derive(Debug, Args)]
pub struct SalesArgs {
    publisher: String,
    /// A month, `YYYY-MM`; default all time.
    #[arg(long)]
    period: Option<String>,
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    connection: Connection,
}

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

fn currency(code: &str) -> anyhow::Result<Currency> {
    Currency::from_code(code).map_err(|e| anyhow!("--currency: {e}"))
}

/// An amount typed by a person, in minor units of `currency`.
fn minor(flag: &str, text: &str, currency: Currency) -> anyhow::Result<i64> {
    Money::parse(text, currency).map(|m| m.minor).map_err(|e| anyhow!("{flag}: {e}"))
}

fn shown(minor: i64, currency: &str) -> String {
    Currency::from_code(currency).map_or_else(|_| format!("{minor} {currency}"), |c| Money::new(minor, c).to_string())
}

/// `{"EUR": 1200, "USD": 99}` as `12.00 EUR, 0.99 USD`, or `nothing`.
fn per_currency(amounts: &Value) -> String {
    let shown: Vec<String> = amounts
        .as_object()
        .into_iter()
        .flatten()
        .map(|(code, minor)| shown(minor.as_i64().unwrap_or(0), code))
        .collect();
    if shown.is_empty() { "nothing".into() } else { shown.join(", ") }
}

fn new_key(given: Option<String>) -> anyhow::Result<String> {
    match given {
        Some(key) => Ok(key),
        None => Ok(format!("cli-{}", random_hex(16)?)),
    }
}

pub async fn plans(command: PlansCommand) -> anyhow::Result<ExitCode> {
    match command {
        PlansCommand::List(args) => {
            let c = &args.connection;
            let path = format!("/v1/plugins/{}/plans{}", args.plugin, if args.all { "?all=true" } else { "" });
            let request = c.client().get(c.url(&path));
            let plans: Vec<Value> =
                if args.all { c.send(request).await? } else { super::client::decode(request.send().await?).await? };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&plans)?);
                return Ok(ExitCode::SUCCESS);
            }
            for plan in &plans {
                println!("{}", describe_plan(plan));
            }
            if plans.is_empty() {
                println!("{} offers no plan", args.plugin);
            }
        }
        PlansCommand::Set(args) => {
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
            let plan: Value =
                c.send(c.client().post(c.url(&format!("/v1/plugins/{}/plans", args.plugin))).json(&body)).await?;
            println!("{}", describe_plan(&plan));
        }
        PlansCommand::Retire(args) => {
            let c = &args.connection;
            let response = c
                .client()
                .delete(c.url(&format!("/v1/plugins/{}/plans/{}", args.plugin, args.key)))
                .bearer_auth(c.token()?)
                .send()
                .await?;
            if !response.status().is_success() {
                super::client::decode::<Value>(response).await?;
            }
            println!("retired {} of {}: new installs cannot choose it; installs on it keep it", args.key, args.plugin);
        }
    }
    Ok(ExitCode::SUCCESS)
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
pub(super) fn plan_terms(plan: &Value) -> String {
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

/// Whether the `YYYY-MM` period has not ended yet (UTC).
fn period_open(period: &str) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    nexus_money::period::month_label(i64::try_from(now).unwrap_or(i64::MAX)).as_str() <= period
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

/// A text (CSV) answer, or the API's error.
async fn text(c: &Connection, request: reqwest::RequestBuilder) -> anyhow::Result<String> {
    let response =
        request.bearer_auth(c.token()?).send().await.map_err(|e| super::client::unreachable_server(&c.server(), &e))?;
    if !response.status().is_success() {
        super::client::decode::<Value>(response).await?;
        bail!("unexpected answer from the server");
    }
    Ok(response.text().await?)
}

pub async fn sales(args: SalesArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let mut query = vec![("format", if args.csv { "csv" } else { "json" }.to_string())];
    if let Some(period) = &args.period {
        query.push(("period", period.clone()));
    }
    let request = c.client().get(c.url(&format!("/v1/publishers/{}/sales", args.publisher))).query(&query);
    if args.csv {
        print!("{}", text(c, request).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let sales: Value = c.send(request).await?;
    if sales["rows"].as_array().is_none_or(Vec::is_empty) {
        let when = args.period.as_deref().map_or_else(|| "yet".to_string(), |period| format!("in {period}"));
        let open = match &args.period {
            Some(period) if period_open(period) => "; the period is still open: usage is charged when it ends",
            _ => "",
        };
        println!("no sales of {} collected {when}{open}", args.publisher);
    }
    for row in sales["rows"].as_array().into_iter().flatten() {
        let currency = row["currency"].as_str().unwrap_or("");
        let amount = |field: &str| shown(row[field].as_i64().unwrap_or(0), currency);
        println!(
            "{:<28} {:<14} {:>4} sale(s)  gross {}  fee {}  share {}  refunded {}",
            row["plugin"].as_str().unwrap_or(""),
            row["plan"].as_str().unwrap_or(""),
            row["charges"],
            amount("gross_minor"),
            amount("fee_minor"),
            amount("share_minor"),
            amount("refunded_minor")
        );
    }
    for balance in sales["balances"].as_array().into_iter().flatten() {
        let currency = balance["currency"].as_str().unwrap_or("");
        println!(
            "balance owed to {}: {}",
            args.publisher,
            shown(balance["payable_minor"].as_i64().unwrap_or(0), currency)
        );
    }
    Ok(ExitCode::SUCCESS)
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

#[derive(Debug, Args)]
pub struct StatementsArgs {
    publisher: String,
    /// A month, `YYYY-MM`; without it, the list of months with their opening and closing.
    period: Option<String>,
    /// One currency only.
    #[arg(long)]
    currency: Option<String>,
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn statements(args: StatementsArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let Some(period) = &args.period else {
        let months: Value =
            c.send(c.client().get(c.url(&format!("/v1/publishers/{}/statements", args.publisher)))).await?;
        if months.as_array().is_none_or(Vec::is_empty) {
            println!(
                "no statements for {} yet: a month's statement starts with its first collected sale; usage is \
                 charged when each install's period ends (`nexus usage --plugin {}/<name>` shows it so far)",
                args.publisher, args.publisher
            );
        }
        for month in months.as_array().into_iter().flatten() {
            let currency = month["currency"].as_str().unwrap_or("");
            let amount = |field: &str| shown(month[field].as_i64().unwrap_or(0), currency);
            let state = if month["closed"] == true { "closed" } else { "open" };
            println!(
                "{} {currency}  opening {:>16}  closing {:>16}  {state}",
                month["period"].as_str().unwrap_or(""),
                amount("opening_minor"),
                amount("closing_minor")
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut query = vec![("format", if args.csv { "csv" } else { "json" }.to_string())];
    if let Some(currency) = &args.currency {
        query.push(("currency", currency.clone()));
    }
    let request =
        c.client().get(c.url(&format!("/v1/publishers/{}/statements/{period}", args.publisher))).query(&query);
    if args.csv {
        print!("{}", text(c, request).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let found: Value = c.send(request).await?;
    if found.as_array().is_none_or(Vec::is_empty) {
        let open = if period_open(period) {
            "; the period is still open: usage is charged when each install's period ends (`nexus usage --plugin` \
             shows it so far)"
        } else {
            ""
        };
        println!("no statement for {} in {period}{open}", args.publisher);
    }
    for s in found.as_array().into_iter().flatten() {
        let currency = s["currency"].as_str().unwrap_or("");
        let amount = |field: &str| shown(s[field].as_i64().unwrap_or(0), currency);
        let state = if s["closed"] == true { "closed" } else { "open, may still change" };
        println!("{} {} {currency} ({state})", args.publisher, s["period"].as_str().unwrap_or(""));
        println!("  opening        {:>16}", amount("opening_minor"));
        for line in s["lines"].as_array().into_iter().flatten() {
            println!(
                "  {:<14} {:>16}  {} {}",
                line["kind"].as_str().unwrap_or(""),
                shown(line["amount_minor"].as_i64().unwrap_or(0), currency),
                line["plugin"].as_str().or(line["payout"].as_str()).or(line["adjustment"].as_str()).unwrap_or(""),
                line["charge"].as_str().unwrap_or("")
            );
        }
        println!(
            "  sales {}, fees {}, refunds {}, fees returned {}, adjustments {}, payouts {}",
            amount("sales_minor"),
            amount("fees_minor"),
            amount("refunds_minor"),
            amount("fees_returned_minor"),
            amount("adjustments_minor"),
            amount("payouts_minor")
        );
        println!("  closing        {:>16}", amount("closing_minor"));
    }
    Ok(ExitCode::SUCCESS)
}

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
        PayoutsCommand::Run(args) => {
            let c = &args.connection;
            eprintln!("paying every partner due in this payout period…");
            let report: Value = c.send(c.client().post(c.url("/v1/payouts/runs")).json(&json!({}))).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
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
        }
        PayoutsCommand::List(args) => {
            let c = &args.connection;
            let base = format!("/v1/publishers/{}/payouts", args.publisher);
            match &args.payout {
                None => {
                    let list: Value = c.send(c.client().get(c.url(&base))).await?;
                    if list.as_array().is_none_or(Vec::is_empty) {
                        println!(
                            "no payouts to {} yet: a payout run (`nexus payouts run`, or the server's schedule) \
                             pays each partner's balance once it is due",
                            args.publisher
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
                }
                Some(id) => {
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
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct GmvArgs {
    /// day, week or month.
    #[arg(long, default_value = "month")]
    interval: String,
    /// currency, plugin, partner or category.
    #[arg(long, default_value = "currency")]
    by: String,
    /// Partners: your own name; operators: one partner's figures.
    #[arg(long)]
    publisher: Option<String>,
    #[arg(long)]
    csv: bool,
    #[command(flatten)]
    connection: Connection,
}

pub async fn gmv(args: GmvArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let mut query = vec![
        ("interval", args.interval.clone()),
        ("by", args.by.clone()),
        ("format", if args.csv { "csv" } else { "json" }.to_string()),
    ];
    if let Some(publisher) = &args.publisher {
        query.push(("publisher", publisher.clone()));
    }
    let request = c.client().get(c.url("/v1/metrics/gmv")).query(&query);
    if args.csv {
        print!("{}", text(c, request).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let figures: Value = c.send(request).await?;
    for r in figures["rows"].as_array().into_iter().flatten() {
        let currency = r["currency"].as_str().unwrap_or("");
        let amount = |field: &str| shown(r[field].as_i64().unwrap_or(0), currency);
        let bp = r["take_rate_bp"].as_i64().unwrap_or(0);
        println!(
            "{} {:<24} GMV {:>16}  refunds {:>14}  net revenue {:>14}  take rate {}.{:02}%",
            r["period"].as_str().unwrap_or(""),
            r["group"].as_str().filter(|g| !g.is_empty()).unwrap_or(currency),
            amount("gmv_minor"),
            amount("refunds_minor"),
            amount("net_revenue_minor"),
            bp / 100,
            bp % 100
        );
    }
    Ok(ExitCode::SUCCESS)
}
