//! A partner's growth, as Shopify's partner dashboard shows it: installs, uninstalls and
//! active installs month by month, monthly recurring revenue and churn.
//!
//! MRR is what the live, paying subscriptions of the partner's plugins ask per month at
//! their current plan revision (a yearly price counts a twelfth, rounded down to the minor
//! unit; installs in a trial and usage charges are not recurring revenue). Churn is a
//! month's uninstalls over the installs active when it began.

use std::collections::BTreeMap;

use nexus_money::period;
use serde::Serialize;

use super::money_error;
use crate::accounts::Caller;
use crate::error::MarketError;
use crate::market::Market;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MonthGrowth {
    /// `YYYY-MM`.
    pub month: String,
    pub installs: i64,
    pub uninstalls: i64,
    /// Installs live at the month's end (or now, for the current month).
    pub active: i64,
    /// Uninstalls over the installs active at the month's start, in basis points; `None`
    /// when none was active.
    pub churn_bp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Growth {
    pub months: Vec<MonthGrowth>,
    /// Per currency: monthly recurring revenue now, in minor units.
    pub mrr: BTreeMap<String, i64>,
}

/// The last `months` calendar months of a partner's growth, oldest first, and its MRR now.
pub async fn growth(market: &Market, caller: &Caller, publisher: &str, months: u32) -> Result<Growth, MarketError> {
    caller.may_act_for_publisher(publisher)?;
    super::holds::known_publisher(market, publisher).await?;
    let now = market.billing.clock.now_ms();
    let mut conn = market.db.pool.acquire().await?;
    let mine = "i.plugin_id IN (SELECT plugin_id FROM listings WHERE publisher = $1)";
    let spans: Vec<(i64, Option<i64>)> =
        sqlx::query_as(&format!("SELECT i.created_at, i.uninstalled_at FROM installs i WHERE {mine}"))
            .bind(publisher)
            .fetch_all(&mut *conn)
            .await?;
    let live_at = |at: i64| spans.iter().filter(|(from, to)| *from < at && to.is_none_or(|to| to >= at)).count() as i64;
    let this_month = period::parse_month(&period::month_label(now)).map_err(money_error)?.start_ms;
    let mut out = Vec::with_capacity(months as usize);
    for back in (0..i64::from(months)).rev() {
        let start = period::add_months(this_month, -back).map_err(money_error)?;
        let end = period::add_months(start, 1).map_err(money_error)?.min(now);
        let within = |at: i64| at >= start && at < end;
        let at_start = live_at(start);
        let uninstalls = spans.iter().filter(|(_, to)| to.is_some_and(within)).count() as i64;
        out.push(MonthGrowth {
            month: period::month_label(start),
            installs: spans.iter().filter(|(from, _)| within(*from)).count() as i64,
            uninstalls,
            active: live_at(end),
            churn_bp: (at_start > 0).then(|| uninstalls * 10_000 / at_start),
        });
    }
    let paying: Vec<(Option<String>, i64, Option<String>)> = sqlx::query_as(&format!(
        "SELECT p.currency, p.price_minor, p.billing_interval FROM installs i JOIN plans p ON p.id = i.plan_id \
         WHERE {mine} AND i.status <> 'uninstalled' AND p.price_minor > 0 AND p.model IN ('subscription', 'usage') \
         AND (i.trial_ends_at IS NULL OR i.trial_ends_at <= $2)"
    ))
    .bind(publisher)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut mrr = BTreeMap::new();
    for (currency, price, interval) in paying {
        let yearly = interval.as_deref() == Some("year");
        if let Some(currency) = currency {
            *mrr.entry(currency).or_insert(0) += if yearly { price / 12 } else { price };
        }
    }
    Ok(Growth { months: out, mrr })
}
