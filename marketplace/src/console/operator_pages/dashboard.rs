//! The operator's dashboard: this month's headline figures against last month's, GMV, fees
//! and take rate by period and currency, top plugins and partners, payout runs, listings to
//! feature or delist, and the revenue-share policies.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use nexus_registry::ErrorCode;
use serde::Deserialize;

use super::DAY_MS;
use super::words::{interval_name, percent};
use crate::audit::{self, AuditEntry, AuditQuery};
use crate::billing::gmv::{self, EcosystemQuery, GmvQuery, GroupBy, Interval, Ranked};
use crate::billing::share::{self, SharePolicy};
use crate::catalog::{self, Listing, SearchQuery};
use crate::console::catalog_pages::Choice;
use crate::console::chart::{self, BarChart, PeriodFigures};
use crate::console::partner_pages::gmv_charts;
use crate::console::session::Signed;
use crate::console::{Chrome, PageError, money, render};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/console/operator", get(dashboard))
}

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
    let (interval, days) = interval_window(form.interval.as_deref())?;
    let now = state.market.billing.clock.now_ms();
    let from = now - days * DAY_MS;
    let query =
        GmvQuery { interval: Some(interval), by: Some(GroupBy::Currency), from: Some(from), ..GmvQuery::default() };
    let figures = chart::by_currency(&gmv::gmv(&state.market, caller, &query).await?)?;
    let fee_charts = fee_charts(&figures);
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

/// The dashboard's interval (by month unless asked) and the days its charts span.
fn interval_window(asked: Option<&str>) -> Result<(Interval, i64), PageError> {
    match asked.unwrap_or("month") {
        "day" => Ok((Interval::Day, 365)),
        "week" => Ok((Interval::Week, 52 * 7)),
        "month" => Ok((Interval::Month, 365)),
        other => Err(PageError::bad_request(
            ErrorCode::InvalidQuery,
            format!("interval `{other}` is not day, week or month"),
        )),
    }
}

/// Per currency, the platform's fees and its take rate by period.
fn fee_charts(figures: &BTreeMap<String, Vec<PeriodFigures>>) -> Vec<BarChart> {
    let mut charts = Vec::new();
    for (currency, periods) in figures {
        let fees: Vec<(String, i64)> = periods.iter().map(|p| (p.period.clone(), p.net_revenue_minor)).collect();
        let code = currency.clone();
        charts.push(chart::bars(&format!("Platform fees in {currency}"), &fees, move |v| money(v, &code)));
        let rates: Vec<(String, i64)> = periods.iter().map(|p| (p.period.clone(), p.take_rate_bp)).collect();
        charts.push(chart::bars(&format!("Take rate in {currency}"), &rates, percent));
    }
    charts
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
    let months = Months { this: this_month, last: gmv::period_start(this_month - 1, Interval::Month)? };
    let query = GmvQuery {
        interval: Some(Interval::Month),
        by: Some(GroupBy::Currency),
        from: Some(months.last),
        ..GmvQuery::default()
    };
    let figures = chart::by_currency(&gmv::gmv(&state.market, caller, &query).await?)?;
    let mut lines = Vec::new();
    for (currency, periods) in &figures {
        lines.extend(money_headlines(currency, periods, months));
    }
    let ecosystem = gmv::ecosystem(
        &state.market,
        caller,
        &EcosystemQuery { interval: Some(Interval::Month), from: Some(months.last), to: None },
    )
    .await?;
    lines.extend(count_headlines(&ecosystem, months));
    Ok(lines)
}

/// The starts of this month and last month.
#[derive(Debug, Clone, Copy)]
struct Months {
    this: i64,
    last: i64,
}

/// One currency's GMV, net revenue and take rate this month against last month.
fn money_headlines(currency: &str, periods: &[PeriodFigures], months: Months) -> Vec<Headline> {
    let of = |start: &str| periods.iter().find(|p| p.period == start).cloned();
    let (now_f, before_f) = (of(&gmv::label(months.this)), of(&gmv::label(months.last)));
    let pick = |f: &Option<PeriodFigures>, get: fn(&PeriodFigures) -> i64| f.as_ref().map_or(0, get);
    let code = currency.to_string();
    let amount = move |v: i64| money(v, &code);
    let mut lines = Vec::new();
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
    lines.push(Headline {
        label: format!("Take rate in {currency}"),
        value: percent(rate),
        change: rate_change(rate, before),
    });
    lines
}

/// The change of a take rate in points: `+1.50 points on last month (10.00%)`.
fn rate_change(rate: i64, before: i64) -> String {
    let points = rate - before;
    if points == 0 {
        "no change on last month".into()
    } else {
        format!(
            "{}{} points on last month ({})",
            if points > 0 { "+" } else { "-" },
            percent(points.abs()).trim_end_matches('%'),
            percent(before)
        )
    }
}

/// Paying tenants, active partners, new installs and uninstalls this month against last month.
fn count_headlines(ecosystem: &[gmv::EcosystemPeriod], months: Months) -> Vec<Headline> {
    let period = |start: i64| ecosystem.iter().find(|p| p.period_start == start);
    let (now_p, before_p) = (period(months.this), period(months.last));
    type Count = fn(&gmv::EcosystemPeriod) -> i64;
    let counts: [(&str, Count); 4] = [
        ("Paying tenants", |p| p.paying_tenants),
        ("Active partners", |p| p.active_partners),
        ("New installs", |p| p.installs),
        ("Uninstalls", |p| p.uninstalls),
    ];
    counts
        .into_iter()
        .map(|(label, get)| {
            let (value, before) = (now_p.map_or(0, get), before_p.map_or(0, get));
            Headline { label: label.into(), value: value.to_string(), change: change(value, before, |v| v.to_string()) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn changes_read_against_last_month() {
        let shown = |v: i64| v.to_string();
        assert_eq!(super::change(90, 80, shown), "+12.5% on last month (80)");
        assert_eq!(super::change(40, 80, shown), "-50.0% on last month (80)");
        assert_eq!(super::change(5, 0, shown), "new this month");
        assert_eq!(super::change(7, 7, shown), "no change on last month");
    }
}
