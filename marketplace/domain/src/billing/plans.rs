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

use std::fmt;
use std::str::FromStr;

use nexus_money::Currency;
use nexus_money::period::Interval;
use nexus_money::rating::UsagePrice;
use nexus_registry::{ErrorCode, PluginId};
use serde::{Deserialize, Serialize};

mod manifest;
mod price;
mod row;
mod rules;

pub use manifest::{backfill, check_manifest, seed};
pub use price::{PriceFrom, price_from};
use row::PlanRow;
pub use rules::check;

use super::ids::PlanId;
use super::money_error;
use crate::accounts::Caller;
use crate::error::MarketError;
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
    pub id: String,
    pub plugin: String,
    pub key: String,
    pub revision: i64,
    pub name: String,
    pub model: PlanModel,
    pub currency: Option<String>,
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
    pub fn id(&self) -> Result<PlanId, MarketError> {
        self.id.parse()
    }

    pub fn currency(&self) -> Result<Option<Currency>, MarketError> {
        self.currency.as_deref().map(Currency::from_code).transpose().map_err(money_error)
    }

    /// The usage price, if the plan bills usage.
    pub fn usage_price(&self) -> Result<Option<UsagePrice>, MarketError> {
        let (Some(usage), Some(currency)) = (&self.usage, self.currency()?) else { return Ok(None) };
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

const COLUMNS: &str = "id, plugin_id, plan_key, revision, name, model, currency, price_minor, billing_interval, \
                       trial_days, meter, unit_minor, included_units, cap_minor, created_at, retired_at";

/// Inserts revision `revision` of a checked request; `None` if that revision exists (another
/// request, or another node seeding the same manifest, wrote it first).
async fn insert(
    conn: &mut sqlx::AnyConnection,
    plugin: &str,
    request: &PlanRequest,
    revision: i64,
    actor: &str,
    now: i64,
) -> Result<Option<PlanId>, MarketError> {
    let id = PlanId::random()?;
    let interval = match request.model {
        PlanModel::Usage => Some(request.interval.unwrap_or(Interval::Month)),
        _ => request.interval,
    };
    let usage = request.usage.as_ref();
    let inserted = sqlx::query(&format!(
        "INSERT INTO plans ({COLUMNS}, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         $15, NULL, $16) ON CONFLICT (plugin_id, plan_key, revision) DO NOTHING"
    ))
    .bind(id.as_str())
    .bind(plugin)
    .bind(&request.key)
    .bind(revision)
    .bind(&request.name)
    .bind(request.model.as_str())
    .bind(request.currency.as_deref())
    .bind(request.price_minor)
    .bind(interval.map(Interval::as_str))
    .bind(i64::from(request.trial_days))
    .bind(usage.map(|u| u.meter.as_str()))
    .bind(usage.map(|u| u.unit_minor))
    .bind(usage.map(|u| i64::try_from(u.included_units).unwrap_or(i64::MAX)))
    .bind(usage.and_then(|u| u.cap_minor))
    .bind(now)
    .bind(actor)
    .execute(&mut *conn)
    .await?;
    Ok((inserted.rows_affected() == 1).then_some(id))
}

pub(crate) async fn plugin_exists(market: &Market, plugin: &PluginId) -> Result<(), MarketError> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM plugins WHERE id = $1")
        .bind(plugin.to_string())
        .fetch_optional(&market.db.pool)
        .await?;
    found.map(|_| ()).ok_or_else(|| MarketError::NotFound(format!("plugin {plugin}")))
}

/// Plans are their publisher's to manage (with the `publish` scope); operators moderate
/// listings instead.
fn may_manage(caller: &Caller, plugin: &PluginId) -> Result<(), MarketError> {
    match caller {
        Caller::Publisher(credential) => {
            caller.may_act_for_publisher(plugin.publisher.as_str())?;
            Ok(credential.require(nexus_registry::publishers::Scope::Publish)?)
        }
        other => Err(MarketError::Forbidden(format!(
            "plans are managed by the plugin's publisher; this is a {} token",
            other.role()
        ))),
    }
}

/// Adds a plan, or a new revision of the plan with the same key (the previous revision stops
/// being offered; installs on it keep it).
pub async fn put(
    market: &Market,
    caller: &Caller,
    plugin: &PluginId,
    request: PlanRequest,
) -> Result<Plan, MarketError> {
    may_manage(caller, plugin)?;
    check(&request)?;
    plugin_exists(market, plugin).await?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let latest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(revision) FROM plans WHERE plugin_id = $1 AND plan_key = $2")
            .bind(plugin.to_string())
            .bind(&request.key)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query("UPDATE plans SET retired_at = $3 WHERE plugin_id = $1 AND plan_key = $2 AND retired_at IS NULL")
        .bind(plugin.to_string())
        .bind(&request.key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let inserted =
        insert(&mut tx, &plugin.to_string(), &request, latest.unwrap_or(0) + 1, &caller.actor(), now).await?;
    let Some(id) = inserted else {
        return Err(MarketError::conflict(
            ErrorCode::PlanChanged,
            "another revision of this plan was just added; retry",
        ));
    };
    let detail =
        serde_json::json!({ "plugin": plugin.to_string(), "key": request.key, "revision": latest.unwrap_or(0) + 1 });
    crate::audit::record(&mut *tx, &caller.actor(), "plan.revised", id.as_str(), detail).await?;
    crate::catalog::reprice(&mut tx, &plugin.to_string()).await?;
    tx.commit().await?;
    get(market, &id).await
}

/// Stops offering a plan key to new installs; installs on it keep paying it.
pub async fn retire(market: &Market, caller: &Caller, plugin: &PluginId, key: &str) -> Result<(), MarketError> {
    may_manage(caller, plugin)?;
    let offered = offered(market, plugin).await?;
    if !offered.iter().any(|p| p.key == key) {
        return Err(MarketError::NotFound(format!("plan {key} of {plugin}")));
    }
    if offered.len() == 1 {
        return Err(MarketError::conflict(
            ErrorCode::LastPlan,
            format!("{plugin} must keep offering at least one plan"),
        ));
    }
    let mut tx = market.db.write_tx().await?;
    sqlx::query("UPDATE plans SET retired_at = $3 WHERE plugin_id = $1 AND plan_key = $2 AND retired_at IS NULL")
        .bind(plugin.to_string())
        .bind(key)
        .bind(market.billing.clock.now_ms())
        .execute(&mut *tx)
        .await?;
    let detail = serde_json::json!({ "plugin": plugin.to_string(), "key": key });
    crate::audit::record(&mut *tx, &caller.actor(), "plan.retired", &plugin.to_string(), detail).await?;
    crate::catalog::reprice(&mut tx, &plugin.to_string()).await?;
    tx.commit().await?;
    Ok(())
}

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
