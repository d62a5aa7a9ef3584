//! The operator's pages: GMV, fees and take rate by period and currency; top plugins and
//! partners; payout runs and their results (from the audit log) and running one; listings
//! to feature, delist or relist; the revenue-share policies; the audit log; the ledger check.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use nexus_registry::ErrorCode;
use serde::Deserialize;

use super::catalog_pages::Choice;
use super::chart::{self, BarChart, PeriodFigures};
use super::partner_pages::gmv_charts;
use super::session::Signed;
use super::{Chrome, Fields, PageError, render};
use crate::audit::{self, AuditEntry, AuditQuery};
use crate::billing::gmv::{self, EcosystemQuery, GmvQuery, GroupBy, Interval, Ranked};
use crate::billing::ledger::{self, LedgerReport};
use crate::billing::payouts;
use crate::billing::share::{self, SharePolicy};
use crate::catalog::{self, Listing, SearchQuery};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/operator", get(dashboard))
        .route("/console/operator/audit", get(audit_log))
        .route("/console/operator/tenants", get(tenant_directory))
        .route("/console/operator/partners", get(partner_directory))
        .route("/console/operator/ledger", get(ledger_check))
        .route("/console/operator/payouts/run", post(run_payouts))
        .route("/console/operator/listings/{publisher}/{name}/{action}", post(mark_listing))
}

const DAY_MS: i64 = 86_400_000;

#[derive(Template)]
#[template(path = "operator.html")]
struct Dashboard {
    chrome: Chrome,
    /// This month's headline figures against last month's.
    headline: Vec<Headline>,
    interval_choices: Vec<Choice>,
    charts: Vec<(BarChart, String, Vec<PeriodFigures>)>,
    fee_charts: Vec<BarChart>,
    top_plugins: Vec<Ranked>,
    top_partners: Vec<Ranked>,
    runs: Vec<AuditEntry>,
    listings: Vec<Listing>,
    delisted: Vec<Listing>,
    policies: Vec<SharePolicy>,
    notice: Option<String>,
    problem: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DashboardForm {
    interval: Option<String>,
    notice: Option<String>,
    problem: Option<String>,
}

async fn dashboard(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<DashboardForm>,
) -> Result<Response, PageError> {
    let caller = &signed.0.caller;
    caller.require_operator()?;
    let (interval, days) = match form.interval.as_deref().unwrap_or("month") {
        "day" => (Interval::Day, 365),
        "week" => (Interval::Week, 52 * 7),
        "month" => (Interval::Month, 365),
        other => {
            return Err(PageError::bad_request(
                ErrorCode::InvalidQuery,
                format!("interval `{other}` is not day, week or month"),
            ));
        }
    };
    let now = state.market.billing.clock.now_ms();
    let from = now - days * DAY_MS;
    let query =
        GmvQuery { interval: Some(interval), by: Some(GroupBy::Currency), from: Some(from), ..GmvQuery::default() };
    let figures = chart::by_currency(&gmv::gmv(&state.market, caller, &query).await?)?;
    let mut fee_charts = Vec::new();
    for (currency, periods) in &figures {
        let fees: Vec<(String, i64)> = periods.iter().map(|p| (p.period.clone(), p.net_revenue_minor)).collect();
        let code = currency.clone();
        fee_charts.push(chart::bars(&format!("Platform fees in {currency}"), &fees, move |v| super::money(v, &code)));
        let rates: Vec<(String, i64)> = periods.iter().map(|p| (p.period.clone(), p.take_rate_bp)).collect();
        fee_charts.push(chart::bars(&format!("Take rate in {currency}"), &rates, percent));
    }
    // Top plugins and partners over the whole window: one ecosystem period spanning it.
    let ecosystem = gmv::ecosystem(
        &state.market,
        caller,
        &EcosystemQuery { interval: Some(Interval::Month), from: Some(now - 31 * DAY_MS), to: None },
    )
    .await?;
    let latest = ecosystem.into_iter().last();
    let runs = audit::list(
        &state.market.db,
        &AuditQuery { action: Some("payouts.run".into()), per_page: Some(10), ..AuditQuery::default() },
    )
    .await?
    .items;
    let page = Dashboard {
        chrome: Chrome::new("Operator", Some(&signed.0)),
        headline: headline(&state, caller, now).await?,
        interval_choices: Choice::of(
            &[("day", "by day"), ("week", "by week"), ("month", "by month")],
            interval_name(interval),
        ),
        charts: gmv_charts(figures, &format!("GMV by {}", interval_name(interval))),
        fee_charts,
        top_plugins: latest.as_ref().map(|p| p.top_plugins.clone()).unwrap_or_default(),
        top_partners: latest.map(|p| p.top_partners).unwrap_or_default(),
        runs,
        listings: catalog::search(&state.market.db, &SearchQuery { per_page: Some(100), ..SearchQuery::default() })
            .await?
            .items,
        delisted: catalog::delisted(&state.market.db, caller).await?,
        policies: share::list(&state.market, caller, None).await?,
        notice: form.notice,
        problem: form.problem,
    };
    render(&page)
}

/// A headline figure: this month's value and its change against last month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headline {
    pub label: String,
    pub value: String,
    pub change: String,
}

/// The change from `before` to `now` in words: `+12.5% on last month (80)`, `new`, `no change`.
fn change(now: i64, before: i64, shown: impl Fn(i64) -> String) -> String {
    if now == before {
        return "no change on last month".to_string();
    }
    if before == 0 {
        return "new this month".to_string();
    }
    let permille = (i128::from(now) - i128::from(before)) * 1000 / i128::from(before).abs();
    let sign = if permille >= 0 { "+" } else { "-" };
    format!("{sign}{}.{}% on last month ({})", permille.abs() / 10, permille.abs() % 10, shown(before))
}

/// The operator's headline figures for this month against last month: GMV, net revenue and
/// take rate per currency; paying tenants, active partners and installs.
async fn headline(state: &AppState, caller: &crate::accounts::Caller, now: i64) -> Result<Vec<Headline>, PageError> {
    let this_month = gmv::period_start(now, Interval::Month)?;
    let last_month = gmv::period_start(this_month - 1, Interval::Month)?;
    let query = GmvQuery {
        interval: Some(Interval::Month),
        by: Some(GroupBy::Currency),
        from: Some(last_month),
        ..GmvQuery::default()
    };
    let figures = chart::by_currency(&gmv::gmv(&state.market, caller, &query).await?)?;
    let mut lines = Vec::new();
    for (currency, periods) in &figures {
        let of = |start: &str| periods.iter().find(|p| p.period == start).cloned();
        let (now_f, before_f) = (of(&gmv::label(this_month)), of(&gmv::label(last_month)));
        let pick = |f: &Option<PeriodFigures>, get: fn(&PeriodFigures) -> i64| f.as_ref().map_or(0, get);
        let code = currency.clone();
        let amount = move |v: i64| super::money(v, &code);
        for (label, get) in [
            ("GMV", (|f: &PeriodFigures| f.gmv_minor) as fn(&PeriodFigures) -> i64),
            ("Net revenue", |f: &PeriodFigures| f.net_revenue_minor),
        ] {
            let (value, before) = (pick(&now_f, get), pick(&before_f, get));
            lines.push(Headline {
                label: format!("{label} in {currency}"),
                value: amount(value),
                change: change(value, before, &amount),
            });
        }
        let (rate, before) = (pick(&now_f, |f| f.take_rate_bp), pick(&before_f, |f| f.take_rate_bp));
        let points = rate - before;
        lines.push(Headline {
            label: format!("Take rate in {currency}"),
            value: percent(rate),
            change: if points == 0 {
                "no change on last month".into()
            } else {
                format!(
                    "{}{} points on last month ({})",
                    if points > 0 { "+" } else { "-" },
                    percent(points.abs()).trim_end_matches('%'),
                    percent(before)
                )
            },
        });
    }
    let ecosystem = gmv::ecosystem(
        &state.market,
        caller,
        &EcosystemQuery { interval: Some(Interval::Month), from: Some(last_month), to: None },
    )
    .await?;
    let period = |start: i64| ecosystem.iter().find(|p| p.period_start == start);
    let (now_p, before_p) = (period(this_month), period(last_month));
    type Count = fn(&gmv::EcosystemPeriod) -> i64;
    let counts: [(&str, Count); 4] = [
        ("Paying tenants", |p| p.paying_tenants),
        ("Active partners", |p| p.active_partners),
        ("New installs", |p| p.installs),
        ("Uninstalls", |p| p.uninstalls),
    ];
    for (label, get) in counts {
        let (value, before) = (now_p.map_or(0, get), before_p.map_or(0, get));
        lines.push(Headline {
            label: label.into(),
            value: value.to_string(),
            change: change(value, before, |v| v.to_string()),
        });
    }
    Ok(lines)
}

/// A policy's tiers in words. Bounds are whole units of whichever currency the partner's
/// lifetime gross is in (`50` is 50.00 USD and 50 JPY), not minor units.
pub fn tiers_in_words(tiers: &[share::TierSpec]) -> Vec<String> {
    let whole = |units: i64| {
        let digits = units.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        grouped
    };
    let mut words = Vec::with_capacity(tiers.len());
    let mut below: Option<i64> = None;
    for tier in tiers {
        let fee = format!("{} fee", percent(tier.rate_bp));
        words.push(match (below, tier.up_to) {
            (None, Some(up_to)) => format!("{fee} on the first {} of lifetime gross in each currency", whole(up_to)),
            (Some(from), Some(up_to)) => format!("{fee} from {} to {}", whole(from), whole(up_to)),
            (Some(from), None) => format!("{fee} above {}", whole(from)),
            (None, None) => format!("{fee} on all gross"),
        });
        below = tier.up_to;
    }
    words
}

/// Who made an audit entry, as people read it: the person (their email) with the actor in
/// brackets, the maker of a token, or the actor itself (`system:payout-schedule`).
pub fn who(entry: &AuditEntry) -> String {
    match (&entry.person, &entry.token_created_by) {
        (Some(person), _) => format!("{person} ({})", entry.actor),
        (None, Some(maker)) => format!("{} (a token made by {maker})", entry.actor),
        (None, None) if entry.actor == payouts::SCHEDULED_ACTOR => "the payout schedule".to_string(),
        (None, None) => entry.actor.clone(),
    }
}

/// A payout run's amounts: `120.00 USD, 5000 JPY`, or `nothing`.
fn paid_amounts(detail: &serde_json::Value) -> String {
    let amounts: Vec<String> = detail["paid_minor"]
        .as_object()
        .map(|paid| paid.iter().map(|(currency, minor)| super::money(minor.as_i64().unwrap_or(0), currency)).collect())
        .unwrap_or_default();
    if amounts.is_empty() { "nothing".to_string() } else { amounts.join(", ") }
}

/// Basis points as a percentage: `1500` is `15.00%`.
fn percent(bp: i64) -> String {
    format!("{}{}.{:02}%", if bp < 0 { "-" } else { "" }, bp.abs() / 100, bp.abs() % 100)
}

fn interval_name(interval: Interval) -> &'static str {
    match interval {
        Interval::Day => "day",
        Interval::Week => "week",
        Interval::Month => "month",
    }
}

async fn run_payouts(
    State(state): State<AppState>,
    signed: Signed,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    signed.check(&Fields(fields))?;
    let report = payouts::run_for(&state.market, &signed.0.caller).await?;
    let notice = format!(
        "Payout run for {}: {} paid, {} failed, {} pending",
        report.period, report.paid, report.failed, report.pending
    );
    Ok(Redirect::to(&format!("/console/operator?notice={}", super::catalog_pages::urlencode(&notice))).into_response())
}

async fn mark_listing(
    State(state): State<AppState>,
    signed: Signed,
    Path((publisher, name, action)): Path<(String, String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(fields);
    signed.check(&fields)?;
    let id = super::catalog_pages::plugin_id(&publisher, &name)?;
    let reason = fields.text("reason");
    let db = &state.market.db;
    let caller = &signed.0.caller;
    let needs_reason =
        |what: &str| PageError::bad_request(ErrorCode::InvalidRequest, format!("say why you {what} {id}"));
    match action.as_str() {
        "feature" => {
            let note = reason.ok_or_else(|| needs_reason("feature"))?;
            crate::co_marketing::feature(&state.market, caller, &id, Some(note)).await?
        }
        "unfeature" => crate::co_marketing::feature(&state.market, caller, &id, None).await?,
        "delist" => catalog::delist(db, caller, &id, Some(reason.ok_or_else(|| needs_reason("delist"))?)).await?,
        "relist" => catalog::delist(db, caller, &id, None).await?,
        other => {
            return Err(PageError::new(
                axum::http::StatusCode::NOT_FOUND,
                ErrorCode::UnknownRoute,
                format!("`{other}` is not feature, unfeature, delist or relist"),
            ));
        }
    };
    let notice = format!("{id}: {action} done");
    Ok(Redirect::to(&format!("/console/operator?notice={}", super::catalog_pages::urlencode(&notice))).into_response())
}

#[derive(Template)]
#[template(path = "directory.html")]
struct DirectoryPage {
    chrome: Chrome,
    /// `tenants` or `partners`: the page's own path.
    kind: &'static str,
    q: String,
    tenants: Option<crate::error::Page<crate::directory::TenantEntry>>,
    partners: Option<crate::error::Page<crate::directory::PartnerEntry>>,
    /// The query string without `page`, for the next page's link.
    query: String,
}

#[derive(Debug, Deserialize)]
struct DirectoryForm {
    q: Option<String>,
    page: Option<u32>,
}

impl DirectoryForm {
    fn query(&self) -> (String, crate::error::PageQuery, String) {
        let q = self.q.as_deref().map(str::trim).unwrap_or_default().to_string();
        let link = if q.is_empty() { String::new() } else { format!("q={}&", super::catalog_pages::urlencode(&q)) };
        (q, crate::error::PageQuery { page: self.page, per_page: Some(50) }, link)
    }
}

async fn tenant_directory(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<DirectoryForm>,
) -> Result<Response, PageError> {
    let (q, page, query) = form.query();
    let found = crate::directory::tenants(&state.market, &signed.0.caller, Some(&q), &page).await?;
    render(&DirectoryPage {
        chrome: Chrome::new("Tenants", Some(&signed.0)),
        kind: "tenants",
        q,
        tenants: Some(found),
        partners: None,
        query,
    })
}

async fn partner_directory(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<DirectoryForm>,
) -> Result<Response, PageError> {
    let (q, page, query) = form.query();
    let found = crate::directory::partners(&state.market, &signed.0.caller, Some(&q), &page).await?;
    render(&DirectoryPage {
        chrome: Chrome::new("Partners", Some(&signed.0)),
        kind: "partners",
        q,
        tenants: None,
        partners: Some(found),
        query,
    })
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<AuditRow>,
    filters: AuditForm,
    total: u64,
    next: Option<String>,
}

/// An entry as the page shows it: who in words, the detail as label and value pairs.
struct AuditRow {
    entry: AuditEntry,
    who: String,
    detail: Vec<(String, String)>,
}

/// The audit page's filters, as typed: dates are `YYYY-MM-DD` (UTC), `to` inclusive.
#[derive(Debug, Default, Deserialize)]
struct AuditForm {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<i64>,
}

impl AuditForm {
    fn text(value: &Option<String>) -> Option<String> {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from)
    }

    /// The filters as a query string (without `after`), for the next page's link.
    fn query(&self) -> String {
        [
            ("action", &self.action),
            ("actor", &self.actor),
            ("target", &self.target),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .into_iter()
        .filter_map(|(key, value)| Self::text(value).map(|v| format!("{key}={}", super::catalog_pages::urlencode(&v))))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// The start of a `YYYY-MM-DD` day (UTC) in milliseconds, refused with the field's name.
pub(super) fn day_start(field: &str, text: &str) -> Result<i64, PageError> {
    let refused = || {
        PageError::bad_request(ErrorCode::InvalidQuery, format!("{field} `{text}` is not a date such as 2026-11-30"))
    };
    let (month, day) = text.rsplit_once('-').ok_or_else(refused)?;
    let day: i64 = day.parse().map_err(|_| refused())?;
    let start = nexus_money::period::parse_month(month).map_err(|_| refused())?.start_ms + (day - 1) * DAY_MS;
    if !(1..=31).contains(&day) || nexus_money::period::day_label(start) != text {
        return Err(refused());
    }
    Ok(start)
}

/// An entry's detail as label and value pairs: strings without quotes, amounts and lists as
/// compact JSON; a detail that is not an object is one pair.
pub fn readable_detail(detail: &serde_json::Value) -> Vec<(String, String)> {
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".to_string(),
        other => other.to_string(),
    };
    match detail {
        serde_json::Value::Object(fields) => {
            fields.iter().map(|(key, value)| (key.replace('_', " "), text(value))).collect()
        }
        serde_json::Value::Null => Vec::new(),
        other => vec![("detail".to_string(), text(other))],
    }
}

async fn audit_log(
    State(state): State<AppState>,
    signed: Signed,
    Query(form): Query<AuditForm>,
) -> Result<Response, PageError> {
    signed.0.caller.require_operator()?;
    let from = AuditForm::text(&form.from).map(|d| day_start("from", &d)).transpose()?;
    let to = AuditForm::text(&form.to).map(|d| day_start("to", &d).map(|start| start + DAY_MS)).transpose()?;
    let query = AuditQuery {
        action: AuditForm::text(&form.action),
        actor: AuditForm::text(&form.actor),
        target: AuditForm::text(&form.target),
        from,
        to,
        after: form.after,
        per_page: Some(50),
    };
    let page = audit::list(&state.market.db, &query).await?;
    let next = page.has_more.then_some(page.next_after).flatten().map(|after| {
        let filters = form.query();
        if filters.is_empty() { format!("after={after}") } else { format!("{filters}&after={after}") }
    });
    render(&AuditPage {
        chrome: Chrome::new("Audit log", Some(&signed.0)),
        entries: page
            .items
            .into_iter()
            .map(|entry| AuditRow { who: who(&entry), detail: readable_detail(&entry.detail), entry })
            .collect(),
        total: page.total,
        filters: form,
        next,
    })
}

#[derive(Template)]
#[template(path = "ledger.html")]
struct LedgerPage {
    chrome: Chrome,
    report: LedgerReport,
}

async fn ledger_check(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    signed.0.caller.require_operator()?;
    let report = ledger::verify(&state.market).await?;
    render(&LedgerPage { chrome: Chrome::new("Ledger check", Some(&signed.0)), report })
}

#[cfg(test)]
mod tests {
    #[test]
    fn basis_points_read_as_percentages() {
        assert_eq!(super::percent(1500), "15.00%");
        assert_eq!(super::percent(7), "0.07%");
        assert_eq!(super::percent(-250), "-2.50%");
    }

    #[test]
    fn changes_read_against_last_month() {
        let shown = |v: i64| v.to_string();
        assert_eq!(super::change(90, 80, shown), "+12.5% on last month (80)");
        assert_eq!(super::change(40, 80, shown), "-50.0% on last month (80)");
        assert_eq!(super::change(5, 0, shown), "new this month");
        assert_eq!(super::change(7, 7, shown), "no change on last month");
    }

    #[test]
    fn tiers_read_in_whole_units_of_each_currency() {
        use crate::billing::share::TierSpec;
        let tiers = [
            TierSpec { up_to: Some(50), rate_bp: 0 },
            TierSpec { up_to: Some(1_000_000), rate_bp: 1000 },
            TierSpec { up_to: None, rate_bp: 1500 },
        ];
        assert_eq!(
            super::tiers_in_words(&tiers),
            [
                "0.00% fee on the first 50 of lifetime gross in each currency",
                "10.00% fee from 50 to 1,000,000",
                "15.00% fee above 1,000,000",
            ]
        );
        assert_eq!(super::tiers_in_words(&[TierSpec { up_to: None, rate_bp: 2000 }]), ["20.00% fee on all gross"]);
    }

    #[test]
    fn payout_runs_name_their_amounts_with_currencies() {
        let detail = serde_json::json!({ "paid_minor": { "JPY": 5000, "USD": 12000 } });
        assert_eq!(super::paid_amounts(&detail), "5000 JPY, 120.00 USD");
        assert_eq!(super::paid_amounts(&serde_json::json!({ "paid_minor": {} })), "nothing");
    }
}
