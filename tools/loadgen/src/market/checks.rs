//! The outcome checks after the load, through the API only: every request answered with its
//! documented status (no 5xx, no `idempotency_in_progress` once a key's first request had
//! answered, retries answered as their first), one charge per purchase and one per plan
//! change, each collected and refunded exactly as answered, every install in the state its
//! last answer left it, `GET /v1/ledger/verify` ok, and invocation rows = deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use reqwest::Method;
use serde_json::Value;

use super::api::{Api, Request};
use super::expected::{Expected, Purchase};
use super::setup::{LIFETIME, Plugin, Setup, Tenant};
use super::tally::Tally;
use crate::load::invocation_rows;

/// One check: what was found, and each way it failed (none when it passed).
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub summary: String,
    pub failures: Vec<String>,
}

impl Check {
    fn new(name: &'static str, summary: String, failures: Vec<String>) -> Self {
        Self { name, summary, failures }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What the per-tenant checks found.
#[derive(Debug, Default)]
struct Findings {
    charges: u64,
    collected: u64,
    prorations: u64,
    refunds_minor: i64,
    charge_failures: Vec<String>,
    installs: u64,
    install_failures: Vec<String>,
    rows: u64,
    row_failures: Vec<String>,
}

pub async fn run(
    api: &Api,
    operator: &Arc<str>,
    setup: &Arc<Setup>,
    tally: &Tally,
    expected: Expected,
) -> anyhow::Result<Vec<Check>> {
    let mut checks = answers(tally);
    let deliveries = expected.deliveries();
    let purchases = expected.purchases.len();
    let findings = per_tenant(api, operator, setup, expected).await?;
    checks.push(Check::new(
        "one charge per purchase",
        format!(
            "{purchases} purchases: {} charges, of which {} for plan changes; {} collected; {} minor units refunded",
            findings.charges, findings.prorations, findings.collected, findings.refunds_minor
        ),
        findings.charge_failures,
    ));
    checks.push(Check::new(
        "installs as answered",
        format!("{} installs, each in the status and on the plan its last answer gave", findings.installs),
        findings.install_failures,
    ));
    checks.push(Check::new(
        "invocation rows = accepted deliveries",
        format!("{} rows for {deliveries} deliveries in event receipts", findings.rows),
        findings.row_failures,
    ));
    checks.push(ledger(api, operator).await?);
    Ok(checks)
}

/// The checks of the answers themselves, from the tally.
fn answers(tally: &Tally) -> Vec<Check> {
    let requests: u64 = tally.kinds.values().map(|kind| kind.requests).sum();
    let retries = tally.retries.concurrent + tally.retries.after;
    let count = |count: u64, what: &str| if count == 0 { Vec::new() } else { vec![format!("{count} {what}")] };
    vec![
        Check::new(
            "documented answers",
            format!(
                "{requests} requests and {retries} retries; {} answers not as documented (by kind below)",
                tally.failure_count
            ),
            count(tally.failure_count, "answers not as documented"),
        ),
        Check::new("no 5xx", format!("{} answers with 5xx", tally.server_errors), count(tally.server_errors, "5xx")),
        Check::new(
            "no idempotency_in_progress once answered",
            format!(
                "{} retries sent after their first had answered got 409 idempotency_in_progress ({} sent beside it did)",
                tally.in_progress_after_answer, tally.in_progress_concurrent
            ),
            count(tally.in_progress_after_answer + tally.in_progress_concurrent, "409 idempotency_in_progress"),
        ),
        Check::new(
            "retries answered as their first",
            format!(
                "{} beside the first, {} after it answered: {} with the same status and body, marked replayed \
                 ({} sent again after a failed first, not compared)",
                tally.retries.concurrent, tally.retries.after, tally.retries.matched, tally.retries.after_failure
            ),
            count(
                retries - tally.retries.matched - tally.retries.after_failure,
                "retries answered otherwise (by kind below)",
            ),
        ),
    ]
}

/// Each tenant's charges, installs and invocation rows, tenants in parallel.
async fn per_tenant(
    api: &Api,
    operator: &Arc<str>,
    setup: &Arc<Setup>,
    expected: Expected,
) -> anyhow::Result<Findings> {
    let mut by_tenant: BTreeMap<String, BTreeMap<String, Purchase>> = BTreeMap::new();
    for (install, purchase) in expected.purchases {
        by_tenant.entry(purchase.tenant.clone()).or_default().insert(install, purchase);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for tenant in &setup.tenants {
        let purchases = by_tenant.remove(&tenant.id).unwrap_or_default();
        let (api, operator, setup, tenant) = (api.clone(), operator.clone(), setup.clone(), tenant.clone());
        tasks.spawn(async move { check_tenant(&api, &operator, &setup, &tenant, purchases).await });
    }
    let mut findings = Findings::default();
    while let Some(found) = tasks.join_next().await {
        let found = found??;
        findings.charges += found.charges;
        findings.collected += found.collected;
        findings.prorations += found.prorations;
        findings.refunds_minor += found.refunds_minor;
        findings.charge_failures.extend(found.charge_failures);
        findings.installs += found.installs;
        findings.install_failures.extend(found.install_failures);
        findings.rows += found.rows;
        findings.row_failures.extend(found.row_failures);
    }
    for (install, count) in expected.stray_deliveries {
        findings.row_failures.push(format!("{count} deliveries to {install}, which no purchase answered 201 for"));
    }
    Ok(findings)
}

async fn check_tenant(
    api: &Api,
    operator: &Arc<str>,
    setup: &Setup,
    tenant: &Tenant,
    purchases: BTreeMap<String, Purchase>,
) -> anyhow::Result<Findings> {
    let mut findings = Findings::default();
    let charges = api.all_pages(&format!("/v1/charges?tenant={}", tenant.id), operator).await?;
    let mut by_install: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for charge in charges {
        let install = charge["install"].as_str().context("a charge without an install")?.to_string();
        by_install.entry(install).or_default().push(charge);
    }
    let installs = api.all_pages(&format!("/v1/installs?tenant={}&all=true", tenant.id), operator).await?;
    let mut listed: BTreeMap<String, Value> = BTreeMap::new();
    for install in installs {
        listed.insert(install["id"].as_str().context("an install without an id")?.to_string(), install);
    }
    for (id, purchase) in &purchases {
        let plugin = if purchase.plugin == setup.echo.id { &setup.echo } else { &setup.redactor };
        let charges = by_install.remove(id).unwrap_or_default();
        findings.charges += charges.len() as u64;
        findings.collected += charges.iter().filter(|charge| charge["status"] == "collected").count() as u64;
        findings.prorations += charges.iter().filter(|charge| charge["line"] == "proration").count() as u64;
        findings.refunds_minor += purchase.refunded_minor;
        findings.charge_failures.extend(charge_problems(id, purchase, plugin, &charges));
        findings.installs += 1;
        findings.install_failures.extend(install_problems(id, purchase, listed.remove(id).as_ref()));
        let rows = invocation_rows(api.client(), api.base(), &tenant.token, id).await?;
        findings.rows += rows;
        if rows != purchase.deliveries {
            findings.row_failures.push(format!("{id}: {rows} invocation rows for {} deliveries", purchase.deliveries));
        }
    }
    for (install, charges) in by_install {
        let lines: Vec<String> = charges.iter().map(|charge| charge["line"].to_string()).collect();
        findings.charge_failures.push(format!(
            "{}: charges {} for install {install}, which no purchase answered 201 for",
            tenant.id,
            lines.join(", ")
        ));
    }
    for (install, found) in listed {
        findings.install_failures.push(format!(
            "{}: install {install} ({}, {}) exists, but no purchase answered 201 for it",
            tenant.id, found["plugin"], found["status"]
        ));
    }
    Ok(findings)
}

/// How the charges of one purchase differ from one charge for the purchase (refunded by what
/// the operator's refunds answered) and one `proration` charge per plan change (each change
/// crediting the charge before it), all collected.
fn charge_problems(install: &str, purchase: &Purchase, plugin: &Plugin, charges: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let problem = |what: String| format!("{install} ({} on {}): {what}", purchase.plugin, purchase.bought);
    let Some(price) = plugin.prices.get(&purchase.bought) else {
        return vec![problem("no price known for the plan bought".into())];
    };
    let first_line = if purchase.bought == LIFETIME { "one-time" } else { "subscription" };
    let mut ordered: Vec<&Value> = charges.iter().collect();
    ordered.sort_by_key(|charge| {
        (charge["line"] != first_line, charge["period_start"].as_i64(), charge["created_at"].as_i64())
    });
    let firsts = ordered.iter().filter(|charge| charge["line"] == first_line).count();
    let prorations = ordered.iter().filter(|charge| charge["line"] == "proration").count();
    if firsts != 1 || prorations != purchase.plan_changes as usize || firsts + prorations != charges.len() {
        let lines: Vec<String> = ordered.iter().map(|charge| charge["line"].to_string()).collect();
        problems.push(problem(format!(
            "charges [{}]; expected one {first_line} and {} proration",
            lines.join(", "),
            purchase.plan_changes
        )));
        return problems;
    }
    let most = plugin.prices.values().filter(|p| p.currency == price.currency).map(|p| p.minor).max().unwrap_or(0);
    for (n, charge) in ordered.iter().enumerate() {
        let (id, amount) = (charge["id"].as_str().unwrap_or_default(), charge["amount_minor"].as_i64().unwrap_or(0));
        let refunded = charge["refunded_minor"].as_i64().unwrap_or(-1);
        if charge["status"] != "collected" {
            problems.push(problem(format!("charge {id} is {}, not collected", charge["status"])));
        }
        if charge["currency"] != price.currency.as_str() {
            problems.push(problem(format!("charge {id} is in {}, not {}", charge["currency"], price.currency)));
        }
        let amount_ok = if n == 0 { amount == price.minor } else { amount > 0 && amount <= most };
        if !amount_ok {
            problems.push(problem(format!("charge {id} of {amount} minor units; the plan costs {}", price.minor)));
        }
        // A one-time charge is refunded exactly what the operator's refunds answered; a
        // period charge a plan change moved away from carries the change's credit.
        let refund_ok = match (first_line, n + 1 < ordered.len()) {
            ("one-time", _) => refunded == purchase.refunded_minor,
            (_, true) => refunded > 0 && refunded <= amount,
            (_, false) => refunded == 0,
        };
        if !refund_ok {
            problems.push(problem(format!("charge {id} has {refunded} minor units refunded")));
        }
    }
    problems
}

fn install_problems(id: &str, purchase: &Purchase, found: Option<&Value>) -> Vec<String> {
    let Some(install) = found else {
        return vec![format!("{id}: a purchase answered 201 for it, but the tenant's installs do not list it")];
    };
    let status = if purchase.uninstalled { "uninstalled" } else { "active" };
    let mut problems = Vec::new();
    if install["status"] != status
        || install["plan"] != purchase.plan.as_str()
        || install["plugin"] != purchase.plugin.as_str()
    {
        problems.push(format!(
            "{id}: {} {} on plan {}; its last answer left it {status} on {}",
            install["plugin"], install["status"], install["plan"], purchase.plan
        ));
    }
    problems
}

async fn ledger(api: &Api, operator: &Arc<str>) -> anyhow::Result<Check> {
    let report = api.expect(&Request::new(Method::GET, "/v1/ledger/verify", operator), 200).await?;
    let mut failures = Vec::new();
    for check in report["checks"].as_array().cloned().unwrap_or_default() {
        if check["ok"] != true {
            failures.push(format!("ledger check {}: {}", check["name"], check["differences"]));
        }
    }
    if report["ok"] != true && failures.is_empty() {
        failures.push(format!("ledger verify: {report}"));
    }
    let summary =
        format!("ok = {} over {} transactions, {} entries", report["ok"], report["transactions"], report["entries"]);
    Ok(Check::new("GET /v1/ledger/verify", summary, failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::setup::Price;
    use serde_json::json;

    fn redactor() -> Plugin {
        let price = |minor| Price { model: "subscription".into(), currency: "USD".into(), minor };
        let prices = BTreeMap::from([("pro".to_string(), price(900)), ("team".to_string(), price(2900))]);
        Plugin { id: "bench/pii-redactor".into(), consent: json!({}), prices }
    }

    fn charge(id: &str, line: &str, start: i64, amount: i64, refunded: i64) -> Value {
        json!({ "id": id, "line": line, "period_start": start, "created_at": start, "currency": "USD",
                "amount_minor": amount, "refunded_minor": refunded, "status": "collected" })
    }

    #[test]
    fn a_subscription_with_two_changes_has_three_charges() {
        let mut purchase = Purchase::new("t", "bench/pii-redactor", "pro");
        purchase.plan_changes = 2;
        let charges = [
            charge("c1", "subscription", 1, 900, 899),
            charge("c2", "proration", 2, 2899, 2898),
            charge("c3", "proration", 3, 899, 0),
        ];
        assert_eq!(charge_problems("i", &purchase, &redactor(), &charges), Vec::<String>::new());
        let problems = charge_problems("i", &purchase, &redactor(), &charges[..2]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("expected one subscription and 2 proration"), "{problems:?}");
    }

    #[test]
    fn an_uncollected_or_uncredited_charge_is_named() {
        let mut purchase = Purchase::new("t", "bench/pii-redactor", "pro");
        purchase.plan_changes = 1;
        let mut first = charge("c1", "subscription", 1, 900, 0);
        first["status"] = json!("pending");
        let problems = charge_problems("i", &purchase, &redactor(), &[first, charge("c2", "proration", 2, 2899, 0)]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("not collected") && problems[1].contains("0 minor units refunded"),
            "{problems:?}"
        );
    }
}
