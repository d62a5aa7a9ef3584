//! A partner's pages (its own, or any for an operator): listings and delisting reasons,
//! installs, usage and sales per plugin, GMV over time, statements and payouts with the
//! lines they settle, and CSV downloads.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::chart::{self, BarChart, PeriodFigures};
use super::session::Signed;
use super::{Chrome, Fields, PageError, csv, money, render};
use crate::billing::gmv::{self, GmvQuery, GroupBy, Interval};
use crate::billing::payouts::{self, Payout, PayoutDetail};
use crate::billing::statements::{self, Statement, StatementSummary};
use crate::billing::views::{self, Sales};
use crate::catalog::{self, Listing};
use crate::publisher_domains::{self, DomainState};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/partners/{publisher}", get(overview))
        .route("/console/partners/{publisher}/domain", post(claim_domain))
        .route("/console/partners/{publisher}/domain/check", post(check_domain))
        .route("/console/partners/{publisher}/statements/{period}", get(statement))
        .route("/console/partners/{publisher}/payouts/{id}", get(payout))
}

/// One plugin's row: installs from the catalog, invocations over the last 30 days.
#[derive(Debug)]
struct PluginRow {
    listing: Listing,
    invocations: i64,
}

#[derive(Template)]
#[template(path = "partner.html")]
struct PartnerPage {
    chrome: Chrome,
    publisher: String,
    plugins: Vec<PluginRow>,
    sales: Sales,
    charts: Vec<(BarChart, String, Vec<PeriodFigures>)>,
    statements: Vec<StatementSummary>,
    payouts: Vec<Payout>,
    /// Whether the viewer claims and checks the domain (owners, admins, operators).
    manages_domain: bool,
    domain: Option<DomainState>,
    tier: Option<crate::partner_tiers::Assignment>,
    /// Per currency: what is owed, the minimum, when it is paid and why it waits.
    next_payouts: Vec<payouts::NextPayout>,
    /// The partner's own earnings by month (gross less refunds less the platform's fees).
    earnings: Vec<BarChart>,
    /// Operators: the hold on this partner's payouts (its reason), if any, and the forms.
    is_operator: bool,
    hold: Option<String>,
    /// The adjustment form's Idempotency-Key, fixed when the page is drawn.
    key: String,
    /// The month the sales table is for (all time when `None`) and the customers table's.
    period: Option<String>,
    month: String,
    customers: Vec<CustomerRow>,
    /// Installs, uninstalls, active installs and churn by month; MRR now.
    growth: crate::billing::growth::Growth,
    notice: Option<String>,
    problem: Option<String>,
}

const DAY_MS: i64 = 86_400_000;

/// GMV charts by currency: one chart and its table for each.
pub fn gmv_charts(
    figures: std::collections::BTreeMap<String, Vec<PeriodFigures>>,
    what: &str,
) -> Vec<(BarChart, String, Vec<PeriodFigures>)> {
    figures
        .into_iter()
        .map(|(currency, periods)| {
            let points: Vec<(String, i64)> = periods.iter().map(|p| (p.period.clone(), p.gmv_minor)).collect();
            let code = currency.clone();
            let chart = chart::bars(&format!("{what} in {currency}"), &points, move |v| money(v, &code));
            (chart, currency, periods)
        })
        .collect()
}

/// What a form sent back to the page: a notice or a problem.
#[derive(Debug, Default, serde::Deserialize)]
struct Said {
    notice: Option<String>,
    problem: Option<String>,
    /// `YYYY-MM`: the month of the sales and customers tables; all time without one.
    period: Option<String>,
}

/// One customer's transactions with the partner in a month and currency (Atlassian's vendor
/// report): sales and refunds, gross, the platform's fee and the partner's amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    pub tenant: String,
    pub currency: nexus_money::Currency,
    pub sales: i64,
    pub refunds: i64,
    pub gross_minor: i64,
    pub fee_minor: i64,
    pub amount_minor: i64,
}

/// Statement lines summed per customer and currency; lines without a customer (payouts,
/// adjustments) are not anyone's.
pub fn by_customer(statements: &[Statement]) -> Vec<CustomerRow> {
    let mut rows: std::collections::BTreeMap<(String, nexus_money::Currency), CustomerRow> =
        std::collections::BTreeMap::new();
    for statement in statements {
        for line in &statement.lines {
            let Some(tenant) = &line.tenant else { continue };
            let row = rows.entry((tenant.clone(), statement.currency)).or_insert_with(|| CustomerRow {
                tenant: tenant.clone(),
                currency: statement.currency,
                sales: 0,
                refunds: 0,
                gross_minor: 0,
                fee_minor: 0,
                amount_minor: 0,
            });
            match line.kind.as_str() {
                "collection" => row.sales += 1,
                _ => row.refunds += 1,
            }
            row.gross_minor += line.gross_minor;
            row.fee_minor += line.fee_minor;
            row.amount_minor += line.amount_minor;
        }
    }
    rows.into_values().collect()
}

async fn overview(
    State(state): State<AppState>,
    signed: Signed,
    Path(publisher): Path<String>,
    Query(said): Query<Said>,
) -> Result<Response, PageError> {
    let caller = &signed.0.caller;
    // The same rule as every partner route: the partner itself or an operator.
    caller.may_act_for_publisher(&publisher)?;
    let period = said.period.as_deref().map(str::trim).filter(|p| !p.is_empty()).map(String::from);
    let sales = views::sales(&state.market, caller, &publisher, period.as_deref()).await?;
    let month = period.clone().unwrap_or_else(|| super::tenant_pages::current_month(&state));
    let customers = by_customer(&statements::statements(&state.market, caller, &publisher, &month, None).await?);
    let plugins = plugin_rows(&state, &publisher).await?;
    let query = GmvQuery {
        interval: Some(Interval::Month),
        by: Some(GroupBy::Currency),
        from: Some(state.market.billing.clock.now_ms() - 365 * DAY_MS),
        publisher: Some(publisher.clone()),
        ..GmvQuery::default()
    };
    let figures = chart::by_currency(&gmv::gmv(&state.market, caller, &query).await?)?;
    let (manages_domain, domain) = domain_of(&state, caller, &publisher).await?;
    let tier = crate::partner_tiers::of(&state.market, caller, &publisher).await?;
    let earnings = earnings_charts(&figures);
    let page = PartnerPage {
        chrome: Chrome::new(format!("{publisher}: earnings and payouts"), Some(&signed.0)),
        charts: gmv_charts(figures, "GMV by month"),
        statements: statements::list(&state.market, caller, &publisher).await?,
        payouts: payouts::list(&state.market, caller, &publisher).await?,
        next_payouts: payouts::outlook(&state.market, caller, &publisher).await?,
        is_operator: caller.role() == "operator",
        hold: crate::billing::holds::current(&state.market, &publisher).await?,
        key: nexus_registry::publishers::random_hex(16)?,
        notice: said.notice,
        problem: said.problem,
        period,
        month,
        customers,
        growth: crate::billing::growth::growth(&state.market, caller, &publisher, 6).await?,
        earnings,
        publisher,
        plugins,
        sales,
        manages_domain,
        domain,
        tier,
    };
    render(&page)
}

/// The partner's plugins with their invocations over the last 30 days.
async fn plugin_rows(state: &AppState, publisher: &str) -> Result<Vec<PluginRow>, PageError> {
    let since = state.market.billing.clock.now_ms() - 30 * DAY_MS;
    let ran = crate::records::invocations_by_plugin(&state.market, publisher, since).await?;
    Ok(catalog::of_publisher(&state.market.db, publisher)
        .await?
        .into_iter()
        .map(|listing| PluginRow { invocations: ran.get(&listing.id).copied().unwrap_or(0), listing })
        .collect())
}

/// Whether the reader manages the partner's domain, and the domain's state if one is claimed.
async fn domain_of(
    state: &AppState,
    caller: &crate::accounts::Caller,
    publisher: &str,
) -> Result<(bool, Option<DomainState>), PageError> {
    match publisher_domains::state(&state.market, caller, publisher).await {
        Ok(domain) => Ok((true, Some(domain))),
        Err(crate::MarketError::NotFound(_)) => Ok((true, None)),
        // Not theirs to manage (a finance member, a token without `keys`); anything else fails the page.
        Err(crate::MarketError::Forbidden(_) | crate::MarketError::Registry(_)) => Ok((false, None)),
        Err(other) => Err(other.into()),
    }
}

/// The partner's own earnings by month, one chart per currency: gross less refunds less
/// the platform's fees.
fn earnings_charts(figures: &std::collections::BTreeMap<String, Vec<PeriodFigures>>) -> Vec<BarChart> {
    figures
        .iter()
        .map(|(currency, periods)| {
            let points: Vec<(String, i64)> = periods
                .iter()
                .map(|p| (p.period.clone(), p.gmv_minor - p.refunds_minor - p.net_revenue_minor))
                .collect();
            let code = currency.clone();
            chart::bars(&format!("Your earnings by month in {currency}"), &points, move |v| money(v, &code))
        })
        .collect()
}

/// Claims the domain written in the form.
async fn claim_domain(
    State(state): State<AppState>,
    signed: Signed,
    Path(publisher): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let domain = fields.get("domain").unwrap_or_default();
    publisher_domains::claim(&state.market, &signed.0.caller, &publisher, domain).await?;
    Ok(Redirect::to(&format!("/console/partners/{publisher}#domain")).into_response())
}

/// Checks the claimed domain now.
async fn check_domain(
    State(state): State<AppState>,
    signed: Signed,
    Path(publisher): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    publisher_domains::check(&state.market, &signed.0.caller, &publisher).await?;
    Ok(Redirect::to(&format!("/console/partners/{publisher}#domain")).into_response())
}

#[derive(Template)]
#[template(path = "statement.html")]
struct StatementPage {
    chrome: Chrome,
    publisher: String,
    period: String,
    statements: Vec<Statement>,
}

async fn statement(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, period)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (period, as_csv) = match period.strip_suffix(".csv") {
        Some(period) => (period.to_string(), true),
        None => (period, false),
    };
    let found = statements::statements(&state.market, &signed.0.caller, &publisher, &period, None).await?;
    if as_csv {
        return Ok(csv(&format!("statement-{publisher}-{period}"), statements::csv(&found)));
    }
    render(&StatementPage {
        chrome: Chrome::new(format!("Statement {period}: {publisher}"), Some(&signed.0)),
        publisher,
        period,
        statements: found,
    })
}

#[derive(Template)]
#[template(path = "payout.html")]
struct PayoutPage {
    chrome: Chrome,
    publisher: String,
    detail: PayoutDetail,
}

async fn payout(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let detail = payouts::detail(&state.market, &signed.0.caller, &publisher, &id).await?;
    render(&PayoutPage { chrome: Chrome::new(format!("Payout {id}"), Some(&signed.0)), publisher, detail })
}
