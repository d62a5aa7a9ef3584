//! A tenant's pages: installs (status, version, update available, paused and why), one
//! install with its invocations, consenting to a waiting upgrade, resuming, and bills per
//! period with their lines and CSV.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use nexus_registry::ErrorCode;
use serde::Deserialize;

use super::session::Signed;
use super::{Chrome, Fields, PageError, csv, render};
use crate::billing::views::{self, Bill};
use crate::error::{Page, PageQuery};
use crate::ids::InstallId;
use crate::installs::{self, GrantConsent, Install};
use crate::records::{self, InstallHealth, InvocationQuery, InvocationRecord};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/installs", get(list))
        .route("/console/installs/{id}", get(show))
        .route("/console/installs/{id}/upgrade", post(upgrade))
        .route("/console/installs/{id}/resume", post(resume))
        .merge(super::install_actions::routes())
        .route("/console/bills", get(bill))
        .route("/console/bills/{file}", get(bill_csv))
}

#[derive(Template)]
#[template(path = "installs.html")]
struct InstallsPage {
    chrome: Chrome,
    installs: Page<Install>,
    /// Delisted plugins among them (and others), with why.
    delistings: std::collections::BTreeMap<String, crate::catalog::Delisting>,
}

/// Operators name the tenant (`?tenant=`), as in the API; tenants see their own.
#[derive(Debug, Deserialize)]
struct PageForm {
    page: Option<u32>,
    tenant: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<PageForm>,
) -> Result<Response, PageError> {
    let query = PageQuery { page: form.page, per_page: Some(50) };
    let tenant = form.tenant.as_deref().map(str::parse::<crate::accounts::TenantId>).transpose()?;
    let installs = installs::list(&state.market, &signed.0.caller, tenant.as_ref(), false, &query).await?;
    let delistings = crate::catalog::delistings(&state.market.db).await?;
    render(&InstallsPage { chrome: Chrome::new("Installs", Some(&signed.0)), installs, delistings })
}

#[derive(Template)]
#[template(path = "install_detail.html")]
struct InstallDetailPage {
    chrome: Chrome,
    install: Install,
    /// The install's own tenant: the forms are theirs (operators read the page only).
    is_tenant: bool,
    /// Set when the marketplace delisted the plugin: the install runs on, but its tenant is told.
    delisting: Option<crate::catalog::Delisting>,
    /// The plan's terms in words (`9.00 USD a month`), when it has a plan.
    plan_terms: Option<String>,
    /// Usage so far this period, its estimated charge, and the next charge.
    usage: crate::billing::estimate::UsageSoFar,
    /// The plans it could move to (offered now, not its own), with their terms.
    other_plans: Vec<(crate::billing::plans::Plan, String)>,
    /// Runs, failures and the newest failure over the last day and the last 30 days.
    health: Vec<(&'static str, InstallHealth)>,
    /// A form's refusal, shown beside the form it came from, with what was typed kept.
    problem: Option<String>,
    notice: Option<String>,
    /// Waiting for a payment, or paused for one: settling (not resuming) lets it run.
    owes: bool,
    config_text: String,
    invocations: Vec<InvocationRecord>,
    more: Option<String>,
    installed: bool,
    /// What the waiting upgrade's version asks for, ticked where already granted.
    upgrade: Vec<Asked>,
}

/// A capability (or host) a version asks for, and whether the install already has it.
#[derive(Debug)]
struct Asked {
    name: String,
    reason: String,
    granted: bool,
    hosts: Vec<Asked>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailForm {
    after: Option<String>,
    installed: Option<u8>,
    notice: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(form): Query<DetailForm>,
) -> Result<Response, PageError> {
    detail_page(&state, &signed, &id.parse()?, form, None).await
}

/// What a refused form on the install page brings back to it: the problem, and the
/// settings as they were typed.
pub struct Refused {
    pub problem: String,
    pub config_text: Option<String>,
}

/// The install page, with a refused form's problem and input when there is one.
pub async fn detail_page(
    state: &AppState,
    signed: &Signed,
    id: &InstallId,
    form: DetailForm,
    refused: Option<Refused>,
) -> Result<Response, PageError> {
    let caller = &signed.0.caller;
    let install = installs::get(&state.market, caller, id).await?;
    let health = health_of(state, &install).await?;
    let delisting = crate::catalog::delistings(&state.market.db).await?.remove(&install.plugin);
    let (plan_terms, other_plans) = plans_of(state, &install).await?;
    let (problem, config_text) = match refused {
        Some(refused) => (Some(refused.problem), refused.config_text),
        None => (None, None),
    };
    let config_text =
        config_text.unwrap_or_else(|| install.config.iter().map(|(key, value)| format!("{key} = {value}\n")).collect());
    let query = InvocationQuery { after: form.after, per_page: Some(25), ..InvocationQuery::default() };
    let page = records::list(&state.market, caller, id, &query).await?;
    let upgrade = upgrade_asks(state, &install).await?;
    render(&InstallDetailPage {
        is_tenant: caller.role() == "tenant",
        delisting,
        plan_terms,
        other_plans,
        usage: crate::billing::estimate::usage_so_far(&state.market, caller, id).await?,
        health,
        problem,
        notice: form.notice.clone(),
        owes: install.status == installs::InstallStatus::PendingPayment
            || install.paused_for == Some(installs::PauseCause::Payment),
        config_text,
        upgrade,
        chrome: Chrome::new(format!("Install {}", install.plugin), Some(&signed.0)),
        more: page.next_after.filter(|_| page.has_more),
        invocations: page.items,
        install,
        installed: form.installed.is_some(),
    })
}

/// Runs and failures over the last day and the last 30 days.
async fn health_of(state: &AppState, install: &Install) -> Result<Vec<(&'static str, InstallHealth)>, PageError> {
    // Invocations are stamped by the marketplace's clock, so the windows end on it.
    let now = state.market.billing.clock.now_ms();
    let mut health = Vec::with_capacity(2);
    for (label, days) in [("Last 24 hours", 1), ("Last 30 days", 30)] {
        health.push((label, records::install_health(&state.market, install, now - days * 86_400_000).await?));
    }
    Ok(health)
}

/// The install's plan in words, and the plans it could move to with theirs.
async fn plans_of(
    state: &AppState,
    install: &Install,
) -> Result<(Option<String>, Vec<(crate::billing::plans::Plan, String)>), PageError> {
    let plan_terms = match &install.plan_id {
        Some(plan) => {
            Some(super::catalog_pages::plan_terms(&crate::billing::plans::get(&state.market, &plan.parse()?).await?))
        }
        None => None,
    };
    let plugin: nexus_registry::PluginId = install.plugin.parse().map_err(nexus_registry::RegistryError::from)?;
    let offered = crate::billing::plans::offered(&state.market, &plugin).await?;
    let others = offered.into_iter().filter(|p| Some(p.id.as_str()) != install.plan_id.as_deref()).collect();
    Ok((plan_terms, super::catalog_pages::with_terms(others)))
}

/// What the waiting upgrade's version asks for, ticked where the install already has it.
async fn upgrade_asks(state: &AppState, install: &Install) -> Result<Vec<Asked>, PageError> {
    let mut upgrade = Vec::new();
    let Some(pending) = &install.pending_upgrade else { return Ok(upgrade) };
    let asked = installs::preview(&state.market, &install.plugin, Some(&format!("={}", pending.version))).await?;
    let granted_hosts: Vec<String> = install.grants.allowed_hosts.iter().map(ToString::to_string).collect();
    for requested in asked.capabilities {
        let hosts = requested
            .hosts
            .into_iter()
            .map(|h| Asked {
                granted: granted_hosts.contains(&h.host),
                name: h.host,
                reason: h.reason,
                hosts: Vec::new(),
            })
            .collect();
        upgrade.push(Asked {
            name: requested.capability.to_string(),
            reason: requested.reason,
            granted: install.grants.capabilities.contains(&requested.capability),
            hosts,
        });
    }
    Ok(upgrade)
}

/// Consents to the waiting upgrade with what the form ticked (only what is new is asked).
async fn upgrade(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let consent = GrantConsent {
        capabilities: fields.all("capability").filter_map(|c| c.parse().ok()).collect(),
        hosts: fields.all("host").map(String::from).collect(),
    };
    let install = installs::approve_upgrade(&state.market, &signed.0.caller, &id.parse()?, &consent).await?;
    state.market.warm_in_background(&install.plugin, &install.version);
    Ok(Redirect::to(&format!("/console/installs/{id}")).into_response())
}

async fn resume(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    signed.check(&Fields(fields))?;
    installs::resume(&state.market, &signed.0.caller, &id.parse()?).await?;
    Ok(Redirect::to(&format!("/console/installs/{id}")).into_response())
}

#[derive(Template)]
#[template(path = "bill.html")]
struct BillPage {
    chrome: Chrome,
    bill: Bill,
    previous: String,
    next: String,
    /// The tenant an operator named, carried into the page's links.
    tenant: Option<String>,
    /// The plugin of each charge the page names.
    plugins: std::collections::BTreeMap<String, String>,
}

impl BillPage {
    fn plugin_of(&self, charge: &str) -> &str {
        self.plugins.get(charge).map_or("", String::as_str)
    }
}

#[derive(Debug, Deserialize)]
struct BillForm {
    period: Option<String>,
    tenant: Option<String>,
}

/// The month before and after `YYYY-MM`.
fn neighbours(period: &str) -> Option<(String, String)> {
    let (year, month) = period.split_once('-')?;
    let (year, month): (i32, i32) = (year.parse().ok()?, month.parse().ok()?);
    let index = year * 12 + month - 1;
    let label = |i: i32| format!("{:04}-{:02}", i.div_euclid(12), i.rem_euclid(12) + 1);
    Some((label(index - 1), label(index + 1)))
}

async fn bill(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<BillForm>,
) -> Result<Response, PageError> {
    let period = match form.period.filter(|p| !p.trim().is_empty()) {
        Some(period) => period,
        None => current_month(&state),
    };
    let bill = views::bill(&state.market, &signed.0.caller, form.tenant.as_deref(), &period).await?;
    let (previous, next) = neighbours(&bill.period).unwrap_or_default();
    // Each refund's plugin: from the period's lines, or its charge (made in an earlier period).
    let mut plugins: std::collections::BTreeMap<String, String> =
        bill.lines.iter().map(|line| (line.id.to_string(), line.plugin.clone())).collect();
    for refund in &bill.refunds {
        if !plugins.contains_key(&refund.charge) {
            let charge = crate::billing::charges::get(&state.market, &signed.0.caller, &refund.charge.parse()?).await?;
            plugins.insert(refund.charge.clone(), charge.plugin);
        }
    }
    render(&BillPage {
        plugins,
        chrome: Chrome::new(format!("Bill for {}", bill.period), Some(&signed.0)),
        bill,
        previous,
        next,
        tenant: form.tenant.filter(|t| !t.trim().is_empty()),
    })
}

/// The billing clock's month, `YYYY-MM`.
pub fn current_month(state: &AppState) -> String {
    let now = state.market.billing.clock.now_ms();
    super::when(now)[..7].to_string()
}

/// Operators name the tenant (`?tenant=`), as on the bill page.
#[derive(Debug, Deserialize)]
struct TenantForm {
    tenant: Option<String>,
}

async fn bill_csv(
    State(state): State<AppState>,
    signed: Signed,
    Path(file): Path<String>,
    Query(form): Query<TenantForm>,
) -> Result<Response, PageError> {
    let Some(period) = file.strip_suffix(".csv") else {
        return Err(PageError::new(
            axum::http::StatusCode::NOT_FOUND,
            ErrorCode::UnknownRoute,
            "bills are downloaded as `<period>.csv`",
        ));
    };
    let tenant = form.tenant.filter(|t| !t.trim().is_empty());
    let bill = views::bill(&state.market, &signed.0.caller, tenant.as_deref(), period).await?;
    Ok(csv(&format!("bill-{}-{}", bill.tenant, bill.period), views::bill_csv(&bill)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn neighbouring_months_cross_years() {
        assert_eq!(super::neighbours("2026-01"), Some(("2025-12".into(), "2026-02".into())));
        assert_eq!(super::neighbours("2026-12"), Some(("2026-11".into(), "2027-01".into())));
        assert_eq!(super::neighbours("nonsense"), None);
    }
}
