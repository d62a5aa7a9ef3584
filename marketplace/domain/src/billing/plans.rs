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
use nexus_registry::manifest::{Manifest, PricingModel};
use nexus_registry::{ErrorCode, PluginId, RegistryError};
use serde::{Deserialize, Serialize};

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

fn invalid(message: impl Into<String>) -> MarketError {
    MarketError::invalid(ErrorCode::InvalidPlan, message)
}

/// Checks a request against the model's rules; amounts are integers (a float is refused by
/// the JSON reader), never negative.
pub fn check(request: &PlanRequest) -> Result<(), MarketError> {
    let key_ok = (1..=32).contains(&request.key.len())
        && request.key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !key_ok {
        return Err(invalid(format!("plan key `{}` must be 1 to 32 of a-z, 0-9 and '-'", request.key)));
    }
    MarketError::check_text(ErrorCode::InvalidPlan, "name", &request.name, 64)?;
    if request.price_minor < 0 {
        return Err(MarketError::invalid(ErrorCode::InvalidAmount, "price_minor cannot be negative"));
    }
    let amounts = [
        Some(request.price_minor),
        request.usage.as_ref().map(|u| u.unit_minor),
        request.usage.as_ref().and_then(|u| u.cap_minor),
    ];
    if amounts.into_iter().flatten().any(|minor| minor > MAX_AMOUNT_MINOR) {
        return Err(MarketError::invalid(
            ErrorCode::InvalidAmount,
            format!("amounts are at most {MAX_AMOUNT_MINOR} minor units"),
        ));
    }
    if request.trial_days > MAX_TRIAL_DAYS {
        return Err(invalid(format!("trial_days is at most {MAX_TRIAL_DAYS}")));
    }
    let currency = request.currency.as_deref().map(Currency::from_code).transpose().map_err(money_error)?;
    let model = request.model;
    let refuse = |what: &str| Err(invalid(format!("a {model} plan {what}")));
    match model {
        PlanModel::Free => {
            if currency.is_some() || request.price_minor != 0 || request.interval.is_some() {
                return refuse("has no currency, price or interval");
            }
        }
        PlanModel::OneTime => {
            if request.price_minor == 0 || request.interval.is_some() {
                return refuse("has a price above zero and no interval");
            }
        }
        PlanModel::Subscription => {
            if request.interval.is_none() {
                return refuse("needs an interval: month or year");
            }
            if request.price_minor == 0 && request.usage.is_none() {
                return refuse("charges a base fee, usage, or both");
            }
        }
        PlanModel::Usage => {
            if request.usage.is_none() || request.price_minor != 0 {
                return refuse("needs `usage` terms and no base price (use a subscription for base + usage)");
            }
        }
    }
    if model != PlanModel::Free && currency.is_none() {
        return refuse("needs a currency");
    }
    if request.trial_days > 0 && model != PlanModel::Subscription {
        return Err(invalid("only subscriptions have trial days"));
    }
    if request.usage.is_some() && !matches!(model, PlanModel::Subscription | PlanModel::Usage) {
        return refuse("has no usage terms");
    }
    if let (Some(usage), Some(currency)) = (&request.usage, currency) {
        if !nexus_host::capability::usage::valid_meter(&usage.meter) {
            return Err(invalid(format!("meter `{}` must be 1 to 64 of a-z, 0-9 and '-'", usage.meter)));
        }
        let money = |minor| nexus_money::Money::new(minor, currency);
        UsagePrice::new(money(usage.unit_minor), usage.included_units, usage.cap_minor.map(money))
            .map_err(money_error)?;
    }
    Ok(())
}

const COLUMNS: &str = "id, plugin_id, plan_key, revision, name, model, currency, price_minor, billing_interval, \
                       trial_days, meter, unit_minor, included_units, cap_minor, created_at, retired_at";

/// A row of [`COLUMNS`], as stored.
#[derive(sqlx::FromRow)]
struct PlanRow {
    id: String,
    plugin_id: String,
    plan_key: String,
    revision: i64,
    name: String,
    model: String,
    currency: Option<String>,
    price_minor: i64,
    billing_interval: Option<String>,
    trial_days: i64,
    meter: Option<String>,
    unit_minor: Option<i64>,
    included_units: Option<i64>,
    cap_minor: Option<i64>,
    created_at: i64,
    retired_at: Option<i64>,
}

impl TryFrom<PlanRow> for Plan {
    type Error = MarketError;

    fn try_from(row: PlanRow) -> Result<Self, MarketError> {
        let usage = row.meter.map(|meter| UsageTerms {
            meter,
            unit_minor: row.unit_minor.unwrap_or(0),
            included_units: u64::try_from(row.included_units.unwrap_or(0)).unwrap_or(0),
            cap_minor: row.cap_minor,
        });
        Ok(Plan {
            id: row.id,
            plugin: row.plugin_id,
            key: row.plan_key,
            revision: row.revision,
            name: row.name,
            model: row.model.parse()?,
            currency: row.currency,
            price_minor: row.price_minor,
            interval: row.billing_interval.map(|i| i.parse().map_err(money_error)).transpose()?,
            trial_days: u32::try_from(row.trial_days).unwrap_or(0),
            usage,
            created_at: row.created_at,
            retired_at: row.retired_at,
        })
    }
}

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

/// The lowest price a listing asks, for its catalog card ("from 9.00 USD a month").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PriceFrom {
    pub model: PlanModel,
    pub currency: String,
    /// The one-time price, the base fee of each period, or (a plan with no base fee) the
    /// price of one unit of `meter`, in minor units.
    pub amount_minor: i64,
    #[schema(value_type = Option<String>)]
    pub interval: Option<Interval>,
    /// The meter usage is billed on (a usage plan, or a subscription with usage on top).
    pub meter: Option<String>,
}

impl PriceFrom {
    /// `49.00 EUR once`, `9.00 USD a month plus usage`, `0.02 USD per emails-sent`.
    pub fn terms(&self) -> String {
        let amount = Currency::from_code(&self.currency).map_or_else(
            |_| format!("{} {}", self.amount_minor, self.currency),
            |c| nexus_money::Money::new(self.amount_minor, c).to_string(),
        );
        let every = self.interval.map_or("month", |i| i.as_str());
        match (self.model, &self.meter) {
            (PlanModel::OneTime, _) => format!("{amount} once"),
            (PlanModel::Usage, Some(meter)) if self.amount_minor > 0 && self.interval.is_none() => {
                format!("{amount} per {meter}")
            }
            (_, Some(_)) => format!("{amount} a {every} plus usage"),
            _ => format!("{amount} a {every}"),
        }
    }
}

/// The lowest paid price among `offered` (in the currency of the first paid plan; prices in
/// different currencies are not compared), or `None` when every plan is free.
pub fn price_from(offered: &[Plan]) -> Option<PriceFrom> {
    let paid: Vec<&Plan> = offered.iter().filter(|p| p.model != PlanModel::Free && p.currency.is_some()).collect();
    let currency = paid.first()?.currency.clone()?;
    let quote = |p: &Plan| -> PriceFrom {
        let (amount_minor, interval) = if p.price_minor > 0 || p.model == PlanModel::Subscription {
            (
                p.price_minor,
                if p.model == PlanModel::OneTime { None } else { Some(p.interval.unwrap_or(Interval::Month)) },
            )
        } else {
            (p.usage.as_ref().map_or(0, |u| u.unit_minor), None)
        };
        PriceFrom {
            model: p.model,
            currency: currency.clone(),
            amount_minor,
            interval,
            meter: p.usage.as_ref().map(|u| u.meter.clone()),
        }
    };
    paid.iter()
        .filter(|p| p.currency.as_deref() == Some(currency.as_str()))
        .map(|p| quote(p))
        .min_by_key(|q| q.amount_minor)
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

/// The manifest's `[[pricing]]` as plan requests.
fn from_manifest(manifest: &Manifest) -> Vec<PlanRequest> {
    manifest
        .pricing
        .iter()
        .map(|p| {
            let base = PlanRequest {
                key: p.id.clone(),
                name: p.name.clone(),
                model: PlanModel::Free,
                currency: None,
                price_minor: 0,
                interval: None,
                trial_days: 0,
                usage: None,
            };
            match &p.model {
                PricingModel::Free => base,
                PricingModel::Subscription { amount_minor, currency, interval, trial_days } => PlanRequest {
                    model: PlanModel::Subscription,
                    currency: Some(currency.to_string()),
                    price_minor: *amount_minor,
                    trial_days: *trial_days,
                    interval: Some(match interval {
                        nexus_registry::manifest::Interval::Month => Interval::Month,
                        nexus_registry::manifest::Interval::Year => Interval::Year,
                    }),
                    ..base
                },
                PricingModel::Usage { meter, unit_amount_minor, currency, included_units, cap_minor } => PlanRequest {
                    model: PlanModel::Usage,
                    currency: Some(currency.to_string()),
                    usage: Some(UsageTerms {
                        meter: meter.clone(),
                        unit_minor: *unit_amount_minor,
                        included_units: *included_units,
                        cap_minor: *cap_minor,
                    }),
                    ..base
                },
                PricingModel::OneTime { amount_minor, currency } => PlanRequest {
                    model: PlanModel::OneTime,
                    currency: Some(currency.to_string()),
                    price_minor: *amount_minor,
                    ..base
                },
            }
        })
        .collect()
}

/// Checks that a manifest's pricing makes valid plans (before anything is stored at
/// publish): a currency without minor units, say, is refused here.
pub fn check_manifest(manifest: &Manifest) -> Result<(), MarketError> {
    from_manifest(manifest).iter().try_for_each(check)
}

/// Seeds plans from a published manifest: each `[[pricing]]` key the plugin has no plan for
/// yet becomes revision 1. Keys the publisher already manages are left as they are.
pub async fn seed(market: &Market, plugin: &PluginId, manifest: &Manifest, actor: &str) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    for request in from_manifest(manifest) {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT revision FROM plans WHERE plugin_id = $1 AND plan_key = $2 LIMIT 1")
                .bind(plugin.to_string())
                .bind(&request.key)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() && check(&request).is_ok() {
            insert(&mut tx, &plugin.to_string(), &request, 1, actor, now).await?;
        }
    }
    crate::catalog::reprice(&mut tx, &plugin.to_string()).await?;
    tx.commit().await?;
    Ok(())
}

/// Gives plans to plugins published before plans existed (from their newest manifest), and
/// binds installs made before billing to their plan key's offered revision. Such installs
/// start paying from now: nothing before billing existed is charged.
pub async fn backfill(market: &Market) -> Result<(), MarketError> {
    let unpriced: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT plugin_id FROM installs WHERE plan_id IS NULL \
         UNION SELECT id FROM plugins WHERE id NOT IN (SELECT plugin_id FROM plans)",
    )
    .fetch_all(&market.db.pool)
    .await?;
    for plugin in unpriced {
        let id: PluginId = plugin.parse().map_err(RegistryError::from)?;
        let versions = match market.registry.versions(&id).await {
            // Development versions only (`dev_versions.rs`): their publishes seed plans.
            Err(RegistryError::NotFound(_)) => continue,
            other => other?,
        };
        if let Some(newest) = versions.iter().max_by(|a, b| a.version.cmp(&b.version)) {
            seed(market, &id, &newest.manifest, "system:backfill").await?;
        }
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT id, plan FROM installs WHERE plugin_id = $1 AND plan_id IS NULL",
        )
        .bind(&plugin)
        .fetch_all(&market.db.pool)
        .await?;
        for (install, key) in rows {
            let chosen = match choose(market, &id, Some(&key)).await {
                Ok(plan) => plan,
                Err(_) => match choose(market, &id, None).await {
                    Ok(plan) => plan,
                    Err(_) => continue,
                },
            };
            let now = market.billing.clock.now_ms();
            sqlx::query(
                "UPDATE installs SET plan_id = $2, plan = $3, billing_anchor = $4, paid_through = $4, \
                 usage_billed_until = $4 WHERE id = $1 AND plan_id IS NULL",
            )
            .bind(&install)
            .bind(&chosen.id)
            .bind(&chosen.key)
            .bind(now)
            .execute(market.db.writer())
            .await?;
        }
    }
    Ok(())
}
