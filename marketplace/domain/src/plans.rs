//! Plans: what a listing's installs pay, managed by its publisher (API, CLI, or seeded from
//! the manifest's `[[pricing]]` at publish). A plan key (`team`) has revisions; changing a
//! price adds a revision and retires the previous one for new installs, while every install
//! keeps paying the revision it agreed to until its tenant moves it (`PUT
//! /v1/installs/{id}/plan`): a price change never changes what an install pays without its
//! tenant's consent.
//!
//! Models: `free`; `one-time` (charged at install); `subscription` (a base fee per month
//! or year, in advance, optionally with trial days, optionally with usage on top: base +
//! usage); `usage` (a price per unit of a meter, in arrears, with included units and an
//! optional cap per period).
//!
//! The model and its reads live here, below the catalog (a listing sells its plans) and
//! installs (an install takes one); managing plans (`put`, `retire`, seeding from a manifest)
//! is `billing::plans`, which re-exports all of this.

use std::fmt;
use std::str::FromStr;

use nexus_money::Currency;
use nexus_money::period::Interval;
use nexus_money::rating::UsagePrice;
use nexus_registry::{ErrorCode, PluginId};
use serde::{Deserialize, Serialize};

mod price;
mod row;
mod rules;

pub use price::{PriceFrom, price_from};
use row::PlanRow;
pub use rules::check;

use crate::error::{MarketError, money_error};
use crate::ids::PlanId;
use crate::market::Market;

/// The largest amount a plan may name (a price, a unit price, a cap): 10^12 minor units,
/// ten billion in a two-decimal currency, so sums of many charges stay far inside i64.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// The longest trial a plan may offer.
pub const MAX_TRIAL_DAYS: u32 = nexus_registry::manifest::MAX_TRIAL_DAYS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PlanModel {
    Free,
    OneTime,
    Subscription,
    Usage,
}

impl PlanModel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::OneTime => "one-time",
            Self::Subscription => "subscription",
            Self::Usage => "usage",
        }
    }
}

impl FromStr for PlanModel {
    type Err = MarketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Free, Self::OneTime, Self::Subscription, Self::Usage]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| crate::error::storage(format!("stored plan model `{s}`")))
    }
}

impl fmt::Display for PlanModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The usage part of a plan: a price per unit of `meter`, `included_units` free each
/// period, and at most `cap_minor` per period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageTerms {
    pub meter: String,
    pub unit_minor: i64,
    #[serde(default)]
    pub included_units: u64,
    #[serde(default)]
    pub cap_minor: Option<i64>,
}

/// `POST /v1/plugins/{publisher}/{name}/plans`: a plan, or a new revision of one.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// 1 to 32 of a-z, 0-9 and '-'.
    pub key: String,
    pub name: String,
    pub model: PlanModel,
    /// ISO 4217; required unless free.
    #[serde(default)]
    pub currency: Option<String>,
    /// The one-time price or the base fee of each period, in minor units.
    #[serde(default)]
    pub price_minor: i64,
    /// `month` or `year`; subscriptions need it, usage defaults to `month`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub interval: Option<Interval>,
    #[serde(default)]
    pub trial_days: u32,
    #[serde(default)]
    pub usage: Option<UsageTerms>,
}

/// A plan revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    #[schema(value_type = String)]
    pub id: PlanId,
    pub plugin: String,
    pub key: String,
    pub revision: i64,
    pub name: String,
    pub model: PlanModel,
    #[schema(value_type = Option<String>, pattern = "^[A-Z]{3}$", example = "EUR")]
    pub currency: Option<Currency>,
    pub price_minor: i64,
    #[schema(value_type = Option<String>)]
    pub interval: Option<Interval>,
    pub trial_days: u32,
    pub usage: Option<UsageTerms>,
    pub created_at: i64,
    /// When a newer revision (or retiring the key) stopped offering it to new installs.
    pub retired_at: Option<i64>,
}

impl Plan {
    /// The usage price, if the plan bills usage.
    pub fn usage_price(&self) -> Result<Option<UsagePrice>, MarketError> {
        let (Some(usage), Some(currency)) = (&self.usage, self.currency) else { return Ok(None) };
        let money = |minor| nexus_money::Money::new(minor, currency);
        UsagePrice::new(money(usage.unit_minor), usage.included_units, usage.cap_minor.map(money))
            .map(Some)
            .map_err(money_error)
    }

    /// Whether a base fee is charged each period, in advance.
    pub fn charges_periods(&self) -> bool {
        self.model == PlanModel::Subscription && self.price_minor > 0
    }
}

pub(crate) const COLUMNS: &str = "id, plugin_id, plan_key, revision, name, model, currency, price_minor, billing_interval, \
                       trial_days, meter, unit_minor, included_units, cap_minor, created_at, retired_at";

pub async fn get(market: &Market, id: &PlanId) -> Result<Plan, MarketError> {
    let mut conn = market.db.pool.acquire().await?;
    get_in(&mut conn, id).await
}

/// [`get`] through a connection the caller holds (its write transaction: a transaction
/// never waits for a second pooled connection).
pub async fn get_in(conn: &mut sqlx::AnyConnection, id: &PlanId) -> Result<Plan, MarketError> {
    let row = sqlx::query_as::<_, PlanRow>(&format!("SELECT {COLUMNS} FROM plans WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("plan {id}")))?;
    Plan::try_from(row)
}

/// The plans a new install may choose, in the order they were first offered.
pub async fn offered(market: &Market, plugin: &PluginId) -> Result<Vec<Plan>, MarketError> {
    let mut conn = market.db.pool.acquire().await?;
    offered_in(&mut conn, &plugin.to_string()).await
}

/// [`offered`] through a connection the caller holds (a write transaction repricing the
/// listing in the same commit as the plan change).
pub async fn offered_in(conn: &mut sqlx::AnyConnection, plugin: &str) -> Result<Vec<Plan>, MarketError> {
    let rows = sqlx::query_as::<_, PlanRow>(&format!(
        "SELECT {COLUMNS} FROM plans p WHERE plugin_id = $1 AND retired_at IS NULL ORDER BY \
         (SELECT MIN(created_at) FROM plans q WHERE q.plugin_id = p.plugin_id AND q.plan_key = p.plan_key), plan_key"
    ))
    .bind(plugin)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(Plan::try_from).collect()
}

/// Every revision of a plugin's plans, newest first per key (what the publisher manages).
pub async fn all(market: &Market, plugin: &PluginId) -> Result<Vec<Plan>, MarketError> {
    let rows = sqlx::query_as::<_, PlanRow>(&format!(
        "SELECT {COLUMNS} FROM plans WHERE plugin_id = $1 ORDER BY plan_key, revision DESC"
    ))
    .bind(plugin.to_string())
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter().map(Plan::try_from).collect()
}

/// The offered plan a new install takes: `key`, or the first offered.
pub async fn choose(market: &Market, plugin: &PluginId, key: Option<&str>) -> Result<Plan, MarketError> {
    let offered = offered(market, plugin).await?;
    match key {
        Some(key) => offered.iter().find(|p| p.key == key).cloned().ok_or_else(|| {
            let keys: Vec<&str> = offered.iter().map(|p| p.key.as_str()).collect();
            MarketError::invalid(
                ErrorCode::UnknownPlan,
                format!("{plugin} has no plan `{key}`; its plans are: {}", keys.join(", ")),
            )
        }),
        None => offered
            .into_iter()
            .next()
            .ok_or_else(|| MarketError::conflict(ErrorCode::NoPlan, format!("{plugin} offers no plan to install"))),
    }
}
