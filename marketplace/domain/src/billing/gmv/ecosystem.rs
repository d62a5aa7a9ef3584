//! The ecosystem period by period: GMV and its growth, the top plugins and partners, and
//! counts of partners, listings, installs and use.

use std::collections::{BTreeMap, BTreeSet};

use nexus_money::Currency;
use serde::{Deserialize, Serialize};

use super::figures::{self, Amounts, Bucket, Grouping};
use super::{GmvQuery, Interval, label, period_end, period_start, window};
use crate::accounts::Caller;
use crate::billing::money_error;
use crate::error::MarketError;
use crate::market::Market;

/// One period of the ecosystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EcosystemPeriod {
    pub period: String,
    pub period_start: i64,
    pub period_end: i64,
    /// Partners with a sale collected in the period.
    pub active_partners: i64,
    /// Partners and listings that exist at the period's end.
    pub partners: i64,
    pub listings: i64,
    pub installs: i64,
    pub uninstalls: i64,
    /// Tenants with a charge collected in the period.
    pub paying_tenants: i64,
    pub invocations: i64,
    /// Per currency: GMV and its growth over the period before (basis points; absent
    /// without GMV before).
    pub gmv: Vec<CurrencyGmv>,
    /// Per currency, the five plugins and partners with the most GMV.
    pub top_plugins: Vec<Ranked>,
    pub top_partners: Vec<Ranked>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CurrencyGmv {
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub gmv_minor: i64,
    pub growth_bp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ranked {
    #[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Currency,
    pub id: String,
    pub gmv_minor: i64,
}

/// `GET /v1/metrics/ecosystem`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EcosystemQuery {
    pub interval: Option<Interval>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// A count over `[$1, $2)`.
async fn count(market: &Market, sql: &str, from: i64, to: i64) -> Result<i64, MarketError> {
    Ok(sqlx::query_scalar(sql).bind(from).bind(to).fetch_one(&market.db.pool).await?)
}

/// A count of what exists before `$1`.
async fn count_before(market: &Market, sql: &str, end: i64) -> Result<i64, MarketError> {
    Ok(sqlx::query_scalar(sql).bind(end).fetch_one(&market.db.pool).await?)
}

/// The ecosystem period by period (operators).
pub async fn ecosystem(
    market: &Market,
    caller: &Caller,
    query: &EcosystemQuery,
) -> Result<Vec<EcosystemPeriod>, MarketError> {
    caller.require_operator()?;
    let window_query = GmvQuery { interval: query.interval, from: query.from, to: query.to, ..GmvQuery::default() };
    let (from, to) = window(&window_query, market.billing.clock.now_ms())?;
    let interval = query.interval.unwrap_or_default();
    let mut periods = Vec::new();
    let mut start = period_start(from, interval)?;
    // The period before the first, for its growth.
    let mut previous: BTreeMap<Currency, i64> = BTreeMap::new();
    let first_previous = period_start(start - 1, interval)?;
    let months = interval == Interval::Month;
    let everything = Grouping { plugin: true, publisher: true };
    for ((_, currency, _, _), amounts) in figures::read(market, first_previous, start, months, everything, None).await?
    {
        *previous.entry(currency).or_default() += amounts.gmv;
    }
    while start < to {
        let end = period_end(start, interval)?;
        let buckets = figures::read(market, start, end, months, everything, None).await?;
        let sums = Sums::of(&buckets);
        let gmv = gmv_rows(&sums.gmv, &previous)?;
        let counts = Counts::read(market, start, end).await?;
        periods.push(EcosystemPeriod {
            period: label(start),
            period_start: start,
            period_end: end,
            active_partners: sums.active.len() as i64,
            partners: counts.partners,
            listings: counts.listings,
            installs: counts.installs,
            uninstalls: counts.uninstalls,
            paying_tenants: counts.paying_tenants,
            invocations: counts.invocations,
            gmv,
            top_plugins: top(sums.plugins),
            top_partners: top(sums.partners),
        });
        previous = sums.gmv;
        start = end;
    }
    Ok(periods)
}

/// What a period counts: partners and listings at its end, installs, uninstalls, paying
/// tenants and invocations in it.
struct Counts {
    partners: i64,
    listings: i64,
    installs: i64,
    uninstalls: i64,
    paying_tenants: i64,
    invocations: i64,
}

impl Counts {
    /// The counts of `[start, end)`, one query each.
    async fn read(market: &Market, start: i64, end: i64) -> Result<Self, MarketError> {
        Ok(Self {
            partners: count_before(market, "SELECT COUNT(*) FROM publishers WHERE created_at < $1", end).await?,
            listings: count_before(market, "SELECT COUNT(*) FROM listings WHERE created_at < $1", end).await?,
            installs: count(
                market,
                "SELECT COUNT(*) FROM installs WHERE created_at >= $1 AND created_at < $2",
                start,
                end,
            )
            .await?,
            uninstalls: count(
                market,
                "SELECT COUNT(*) FROM installs WHERE uninstalled_at >= $1 AND uninstalled_at < $2",
                start,
                end,
            )
            .await?,
            paying_tenants: count(
                market,
                "SELECT COUNT(DISTINCT tenant_id) FROM charges WHERE status = 'collected' AND collected_at >= $1 \
                 AND collected_at < $2",
                start,
                end,
            )
            .await?,
            invocations: count(
                market,
                "SELECT COUNT(*) FROM invocations WHERE started_at >= $1 AND started_at < $2",
                start,
                end,
            )
            .await?,
        })
    }
}

/// One period's GMV summed per currency, per plugin and per partner, and its active partners.
#[derive(Default)]
struct Sums {
    gmv: BTreeMap<Currency, i64>,
    plugins: BTreeMap<(Currency, String), i64>,
    partners: BTreeMap<(Currency, String), i64>,
    active: BTreeSet<String>,
}

impl Sums {
    fn of(buckets: &BTreeMap<Bucket, Amounts>) -> Self {
        let mut sums = Self::default();
        for ((_, currency, plugin, publisher), amounts) in buckets {
            *sums.gmv.entry(*currency).or_default() += amounts.gmv;
            *sums.plugins.entry((*currency, plugin.clone())).or_default() += amounts.gmv;
            *sums.partners.entry((*currency, publisher.clone())).or_default() += amounts.gmv;
            if amounts.gmv > 0 {
                sums.active.insert(publisher.clone());
            }
        }
        sums
    }
}

/// A period's GMV per currency, with its growth over `previous` (basis points; absent
/// without GMV before).
fn gmv_rows(
    gmv: &BTreeMap<Currency, i64>,
    previous: &BTreeMap<Currency, i64>,
) -> Result<Vec<CurrencyGmv>, MarketError> {
    let growth = |currency: &Currency, now: i64| -> Result<Option<i64>, MarketError> {
        match previous.get(currency).copied().filter(|before| *before > 0) {
            Some(before) => nexus_money::round_half_up(i128::from(now - before), 10_000, i128::from(before))
                .map(Some)
                .map_err(money_error),
            None => Ok(None),
        }
    };
    gmv.iter()
        .map(|(currency, minor)| {
            Ok(CurrencyGmv { currency: *currency, gmv_minor: *minor, growth_bp: growth(currency, *minor)? })
        })
        .collect::<Result<Vec<_>, MarketError>>()
}

/// The five largest per currency, largest first, ties by id.
fn top(totals: BTreeMap<(Currency, String), i64>) -> Vec<Ranked> {
    let mut by_currency: BTreeMap<Currency, Vec<(String, i64)>> = BTreeMap::new();
    for ((currency, id), minor) in totals {
        by_currency.entry(currency).or_default().push((id, minor));
    }
    let mut out = Vec::new();
    for (currency, mut list) in by_currency {
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out.extend(list.into_iter().take(5).map(|(id, gmv_minor)| Ranked { currency, id, gmv_minor }));
    }
    out
}
