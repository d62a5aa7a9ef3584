//! The marketplace's success in its own terms, from the ledger: GMV (gross collected from
//! tenants), refunds, net revenue (the platform's fees, net of fees refunds returned) and the
//! take rate, by day, week (ISO, from Monday) or month, per currency (never mixed) and by
//! plugin, partner or category; and the ecosystem: active partners, listings, installs and
//! uninstalls, paying tenants, invocations, the top plugins and partners by GMV, and growth
//! against the period before.
//!
//! A plugin in several categories counts in each of them: by category, the rows of one
//! currency add up to more than its GMV.
//!
//! The figures are the ledger's, read from the money rollups ([`figures`]): a report costs
//! the same over a year of charges as over a day of them.

use std::collections::BTreeMap;

use nexus_money::{Currency, period};
use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};

use super::money_error;
use crate::accounts::Caller;
use crate::error::MarketError;
use crate::market::Market;

mod ecosystem;
mod figures;

pub use ecosystem::{CurrencyGmv, EcosystemPeriod, EcosystemQuery, Ranked, ecosystem};
use figures::Grouping;

const DAY_MS: i64 = super::DAY_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Interval {
    Day,
    Week,
    #[default]
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GroupBy {
    /// One row per period and currency.
    #[default]
    Currency,
    Plugin,
    Partner,
    Category,
}

/// `GET /v1/metrics/gmv`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GmvQuery {
    /// `day`, `week` or `month` (default).
    pub interval: Option<Interval>,
    /// `currency` (default), `plugin`, `partner` or `category`.
    pub by: Option<GroupBy>,
    /// Milliseconds since the epoch; default 90 days before `to`.
    pub from: Option<i64>,
    /// Default now.
    pub to: Option<i64>,
    /// Partners see their own (and must name themselves); operators may name one.
    pub publisher: Option<String>,
    /// `csv` or `json`.
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GmvRow {
    /// The period's first day (`2026-11-01`) and its bounds.
    pub period: String,
    pub period_start: i64,
    pub period_end: i64,
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    /// The plugin, partner or category; empty when grouped by currency.
    pub group: String,
    pub gmv_minor: i64,
    pub refunds_minor: i64,
    /// The platform's fees less the fees refunds returned.
    pub net_revenue_minor: i64,
    /// Net revenue / GMV in basis points (half up); 0 without GMV.
    pub take_rate_bp: i64,
    pub charges: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Gmv {
    pub interval: Interval,
    pub by: GroupBy,
    pub from: i64,
    pub to: i64,
    pub rows: Vec<GmvRow>,
}

/// The start of the period containing `at`.
pub fn period_start(at: i64, interval: Interval) -> Result<i64, MarketError> {
    let day = at.div_euclid(DAY_MS) * DAY_MS;
    Ok(match interval {
        Interval::Day => day,
        // 1970-01-01 was a Thursday: Monday is 3 days before it.
        Interval::Week => (day + 3 * DAY_MS).div_euclid(7 * DAY_MS) * 7 * DAY_MS - 3 * DAY_MS,
        Interval::Month => period::parse_month(&period::month_label(at)).map_err(money_error)?.start_ms,
    })
}

/// The end of the period starting at `start` (the next one's start).
pub fn period_end(start: i64, interval: Interval) -> Result<i64, MarketError> {
    Ok(match interval {
        Interval::Day => start + DAY_MS,
        Interval::Week => start + 7 * DAY_MS,
        Interval::Month => period::add_months(start, 1).map_err(money_error)?,
    })
}

/// A period's label: the date it starts on, `2026-11-03`.
pub fn label(start: i64) -> String {
    let (year, month, day) = period::civil(start);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Who may read whose figures: operators anyone's or all; a partner its own only.
fn scope(caller: &Caller, publisher: Option<&str>) -> Result<Option<String>, MarketError> {
    match (caller, publisher) {
        (Caller::Operator { .. }, named) => Ok(named.map(String::from)),
        (Caller::Publisher(credential), named) => {
            let own = credential.publisher.as_str();
            match named {
                Some(named) if named != own => caller.may_act_for_publisher(named).map(|()| None),
                _ => Ok(Some(own.to_string())),
            }
        }
        (Caller::Tenant { .. }, _) => Err(MarketError::Forbidden("GMV is for operators and partners".into())),
    }
}

/// The latest moment a query may name: 2100-01-01.
const LATEST_MS: i64 = 4_102_444_800_000;

/// The window of a query: `from` to `to` (within 1970–2100), at most 400 days of days, 10
/// years of weeks or months.
fn window(query: &GmvQuery, now: i64) -> Result<(i64, i64), MarketError> {
    let to = query.to.unwrap_or(now);
    let from = query.from.unwrap_or(to.saturating_sub(90 * DAY_MS));
    if !(0..=LATEST_MS).contains(&from) || !(0..=LATEST_MS).contains(&to) {
        return Err(MarketError::invalid(
            ErrorCode::InvalidQuery,
            "`from` and `to` are milliseconds between 1970 and 2100",
        ));
    }
    if from >= to {
        return Err(MarketError::invalid(ErrorCode::InvalidQuery, "`from` must be before `to`"));
    }
    let days = (to - from) / DAY_MS;
    let most = match query.interval.unwrap_or_default() {
        Interval::Day => 400,
        Interval::Week | Interval::Month => 3_660,
    };
    if days > most {
        return Err(MarketError::invalid(ErrorCode::InvalidQuery, format!("at most {most} days at this interval")));
    }
    Ok((from, to))
}

/// Each listed plugin's categories.
async fn categories(market: &Market) -> Result<BTreeMap<String, Vec<String>>, MarketError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT plugin_id, categories FROM listings").fetch_all(&market.db.pool).await?;
    let mut out = BTreeMap::new();
    for (plugin, text) in rows {
        let list = text.split(',').filter(|c| !c.is_empty()).map(String::from).collect();
        out.insert(plugin, list);
    }
    Ok(out)
}

/// Take rate in basis points, half up: fees over GMV (0 without GMV).
pub fn take_rate(fees: i64, gmv: i64) -> Result<i64, MarketError> {
    if gmv <= 0 {
        return Ok(0);
    }
    nexus_money::round_half_up(i128::from(fees), 10_000, i128::from(gmv)).map_err(money_error)
}

pub async fn gmv(market: &Market, caller: &Caller, query: &GmvQuery) -> Result<Gmv, MarketError> {
    let publisher = scope(caller, query.publisher.as_deref())?;
    let (from, to) = window(query, market.billing.clock.now_ms())?;
    let interval = query.interval.unwrap_or_default();
    let by = query.by.unwrap_or_default();
    let grouping =
        Grouping { plugin: matches!(by, GroupBy::Plugin | GroupBy::Category), publisher: by == GroupBy::Partner };
    let buckets = figures::read(market, from, to, interval == Interval::Month, grouping, publisher.as_deref()).await?;
    let categories = if by == GroupBy::Category { categories(market).await? } else { BTreeMap::new() };
    let mut rows: BTreeMap<(i64, Currency, String), GmvRow> = BTreeMap::new();
    for ((bucket_start, currency, plugin, partner), amounts) in buckets {
        let start = period_start(bucket_start, interval)?;
        let groups = match by {
            GroupBy::Currency => vec![String::new()],
            GroupBy::Plugin => vec![plugin],
            GroupBy::Partner => vec![partner],
            GroupBy::Category => categories.get(&plugin).cloned().unwrap_or_else(|| vec!["uncategorized".into()]),
        };
        for group in groups {
            let key = (start, currency, group.clone());
            let row = match rows.entry(key) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => entry.insert(GmvRow {
                    period: label(start),
                    period_start: start,
                    period_end: period_end(start, interval)?,
                    currency,
                    group,
                    gmv_minor: 0,
                    refunds_minor: 0,
                    net_revenue_minor: 0,
                    take_rate_bp: 0,
                    charges: 0,
                }),
            };
            row.gmv_minor += amounts.gmv;
            row.refunds_minor += amounts.refunds;
            row.net_revenue_minor += amounts.fees;
            row.charges += amounts.charges;
        }
    }
    let mut rows: Vec<GmvRow> = rows.into_values().collect();
    for row in &mut rows {
        row.take_rate_bp = take_rate(row.net_revenue_minor, row.gmv_minor)?;
    }
    Ok(Gmv { interval, by, from, to, rows })
}

pub fn gmv_csv(gmv: &Gmv) -> String {
    let mut out = String::from(
        "period,period_start,period_end,currency,group,gmv_minor,refunds_minor,net_revenue_minor,take_rate_bp,charges,\
         gmv,refunds,net_revenue\n",
    );
    let (iso, decimal) = (super::views::iso, super::views::decimal);
    for r in &gmv.rows {
        out.push_str(&super::views::csv_row(&[
            &r.period,
            &iso(r.period_start),
            &iso(r.period_end),
            r.currency.code(),
            &r.group,
            &r.gmv_minor.to_string(),
            &r.refunds_minor.to_string(),
            &r.net_revenue_minor.to_string(),
            &r.take_rate_bp.to_string(),
            &r.charges.to_string(),
            &decimal(r.gmv_minor, r.currency),
            &decimal(r.refunds_minor, r.currency),
            &decimal(r.net_revenue_minor, r.currency),
        ]));
    }
    out
}
