//! Revenue-share policies: the operator's default, a partner's override, or one plan's,
//! each in force from a date on (never retroactive: a policy cannot start in the past). A
//! collected charge is split under the most specific policy in force when it is collected,
//! at the partner's position in the tiers: its lifetime gross collected in the currency,
//! read and moved under a row lock, so one partner's collections in one currency are
//! serialized and a charge that crosses a boundary is split across the tiers exactly once.
//! Refunds do not move the partner's tier position back: it counts gross collected.
//!
//! With no policy stored, the app-store default applies: 0% up to 1,000,000 in the currency,
//! 15% above.

use nexus_money::Currency;
use nexus_money::share::{Policy, Tier};
use nexus_registry::{ErrorCode, PluginId};
use serde::{Deserialize, Serialize};

use super::ids::PolicyId;
use super::money_error;
use crate::accounts::Caller;
use crate::error::{MarketError, storage};
use crate::market::Market;

/// A tier as policies are written: the rate applies up to `up_to` whole units of the
/// currency (1,000,000 is 1,000,000.00 EUR or 1,000,000 JPY), the last without a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    #[serde(default)]
    pub up_to: Option<i64>,
    /// Basis points: 1500 is 15%.
    pub rate_bp: i64,
}

/// `POST /v1/revenue-share/policies`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// A partner's override; absent for the default.
    #[serde(default)]
    pub publisher: Option<String>,
    /// With `plan`: one plan's override (`publisher/name`).
    #[serde(default)]
    pub plugin: Option<String>,
    #[serde(default)]
    pub plan: Option<String>,
    pub tiers: Vec<TierSpec>,
    /// Milliseconds since the epoch; default now. Never in the past.
    #[serde(default)]
    pub effective_from: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SharePolicy {
    #[schema(value_type = String)]
    pub id: PolicyId,
    pub publisher: Option<String>,
    pub plugin: Option<String>,
    pub plan: Option<String>,
    pub tiers: Vec<TierSpec>,
    pub effective_from: i64,
    pub created_at: i64,
}

/// The app-store default, in whole units.
pub fn default_tiers() -> Vec<TierSpec> {
    vec![TierSpec { up_to: Some(1_000_000), rate_bp: 0 }, TierSpec { up_to: None, rate_bp: 1500 }]
}

/// The policy of `tiers` in a currency's minor units.
pub fn policy_in(tiers: &[TierSpec], currency: Currency) -> Result<Policy, MarketError> {
    let tiers = tiers
        .iter()
        .map(|t| {
            let up_to = t
                .up_to
                .map(|whole| whole.checked_mul(currency.minor_per_major()).ok_or(nexus_money::MoneyError::Overflow))
                .transpose()?;
            Ok(Tier { up_to, rate_bp: t.rate_bp })
        })
        .collect::<Result<Vec<_>, nexus_money::MoneyError>>()
        .map_err(money_error)?;
    Policy::new(tiers).map_err(money_error)
}

const COLUMNS: &str = "id, publisher, plugin_id, plan_key, tiers, effective_from, created_at";

/// A row of [`COLUMNS`], its tiers still JSON.
#[derive(sqlx::FromRow)]
struct PolicyRow {
    id: PolicyId,
    publisher: Option<String>,
    plugin_id: Option<String>,
    plan_key: Option<String>,
    tiers: String,
    effective_from: i64,
    created_at: i64,
}

impl TryFrom<PolicyRow> for SharePolicy {
    type Error = MarketError;

    fn try_from(row: PolicyRow) -> Result<Self, MarketError> {
        Ok(SharePolicy {
            id: row.id,
            publisher: row.publisher,
            plugin: row.plugin_id,
            plan: row.plan_key,
            tiers: serde_json::from_str(&row.tiers).map_err(|e| storage(format!("stored tiers: {e}")))?,
            effective_from: row.effective_from,
            created_at: row.created_at,
        })
    }
}

/// Sets a policy from `effective_from` on (operators only).
pub async fn put(market: &Market, caller: &Caller, request: PolicyRequest) -> Result<SharePolicy, MarketError> {
    caller.require_operator()?;
    check_tiers(&request.tiers)?;
    let plugin = request
        .plugin
        .as_deref()
        .map(str::parse::<PluginId>)
        .transpose()
        .map_err(|e| MarketError::invalid(ErrorCode::InvalidPolicy, format!("plugin: {e}")))?;
    let publisher = match (&request.publisher, &plugin) {
        (Some(named), Some(plugin)) if named != plugin.publisher.as_str() => {
            return Err(MarketError::invalid(
                ErrorCode::InvalidPolicy,
                format!("{plugin} is not published by {named}"),
            ));
        }
        (named, plugin) => named.clone().or_else(|| plugin.as_ref().map(|p| p.publisher.to_string())),
    };
    if plugin.is_some() != request.plan.is_some() {
        return Err(MarketError::invalid(ErrorCode::InvalidPolicy, "a plan's policy names both `plugin` and `plan`"));
    }
    if let Some(publisher) = &publisher {
        publisher
            .parse::<nexus_registry::PublisherName>()
            .map_err(|e| MarketError::invalid(ErrorCode::InvalidPolicy, e.to_string()))?;
    }
    let now = market.billing.clock.now_ms();
    let effective_from = request.effective_from.unwrap_or(now);
    if effective_from < now {
        return Err(MarketError::invalid(
            ErrorCode::RetroactivePolicy,
            format!(
                "effective_from {effective_from} is in the past (now is {now}): a policy never applies retroactively"
            ),
        ));
    }
    let mut tx = market.db.write_tx().await?;
    let scope = Scope { publisher: publisher.as_deref(), plugin: plugin.as_ref(), plan: request.plan.as_deref() };
    let id = insert(&mut tx, scope, &request.tiers, effective_from, now, &caller.actor()).await?;
    tx.commit().await?;
    let row = sqlx::query_as::<_, PolicyRow>(&format!("SELECT {COLUMNS} FROM share_policies WHERE id = $1"))
        .bind(id.as_str())
        .fetch_one(&market.db.pool)
        .await?;
    SharePolicy::try_from(row)
}

/// What a policy applies to: everything (no publisher), a partner, or one plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    pub publisher: Option<&'a str>,
    pub plugin: Option<&'a PluginId>,
    pub plan: Option<&'a str>,
}

/// Stores a policy (checked by the caller: valid tiers, not in the past) and audits it, in
/// the caller's transaction.
pub async fn insert(
    tx: &mut sqlx::AnyConnection,
    scope: Scope<'_>,
    tiers: &[TierSpec],
    effective_from: i64,
    now: i64,
    actor: &str,
) -> Result<PolicyId, MarketError> {
    let id = PolicyId::random()?;
    sqlx::query(&format!("INSERT INTO share_policies ({COLUMNS}, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
        .bind(id.as_str())
        .bind(scope.publisher)
        .bind(scope.plugin.map(ToString::to_string))
        .bind(scope.plan)
        .bind(serde_json::to_string(tiers).map_err(storage)?)
        .bind(effective_from)
        .bind(now)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
    let detail = serde_json::json!({ "publisher": scope.publisher, "plugin": scope.plugin.map(ToString::to_string),
                                     "plan": scope.plan, "tiers": tiers, "effective_from": effective_from });
    crate::audit::record(&mut *tx, actor, "revenue_share.policy_set", id.as_str(), detail).await?;
    Ok(id)
}

/// Checks that `tiers` make a policy in every currency, the one with the most minor units
/// (KWD: 3) included.
pub fn check_tiers(tiers: &[TierSpec]) -> Result<(), MarketError> {
    for code in ["JPY", "EUR", "KWD"] {
        policy_in(tiers, Currency::from_code(code).map_err(money_error)?)?;
    }
    Ok(())
}

/// Every policy (operators), or those that apply to a partner (the partner itself).
pub async fn list(market: &Market, caller: &Caller, publisher: Option<&str>) -> Result<Vec<SharePolicy>, MarketError> {
    match publisher {
        Some(publisher) => caller.may_act_for_publisher(publisher)?,
        None => caller.require_operator()?,
    }
    let rows = sqlx::query_as::<_, PolicyRow>(&format!(
        "SELECT {COLUMNS} FROM share_policies WHERE $1 IS NULL OR publisher IS NULL OR publisher = $1 \
         ORDER BY effective_from, id"
    ))
    .bind(publisher)
    .fetch_all(&market.db.pool)
    .await?;
    rows.into_iter().map(SharePolicy::try_from).collect()
}

/// The policy that splits a charge of `plugin`'s plan `plan_key` collected at `at`: the
/// newest in force of the most specific scope (plan, then partner, then the default).
pub async fn in_force(
    conn: &mut sqlx::AnyConnection,
    publisher: &str,
    plugin: &str,
    plan_key: &str,
    at: i64,
) -> Result<(Vec<TierSpec>, Option<String>), MarketError> {
    let row = sqlx::query_as::<_, PolicyRow>(&format!(
        "SELECT {COLUMNS} FROM share_policies WHERE effective_from <= $4 AND \
         ((plugin_id = $2 AND plan_key = $3) OR (publisher = $1 AND plugin_id IS NULL) OR publisher IS NULL) \
         ORDER BY CASE WHEN plan_key IS NOT NULL THEN 2 WHEN publisher IS NOT NULL THEN 1 ELSE 0 END DESC, \
         effective_from DESC, created_at DESC LIMIT 1"
    ))
    .bind(publisher)
    .bind(plugin)
    .bind(plan_key)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => {
            let found = SharePolicy::try_from(row)?;
            Ok((found.tiers, Some(found.id.into())))
        }
        None => Ok((default_tiers(), None)),
    }
}

/// Locks a partner's lifetime gross in a currency (creating it at zero) and returns it.
pub async fn lock_lifetime(
    conn: &mut sqlx::AnyConnection,
    backend: nexus_registry::Backend,
    publisher: &str,
    currency: Currency,
) -> Result<i64, MarketError> {
    sqlx::query(
        "INSERT INTO partner_totals (publisher, currency, lifetime_gross_minor) VALUES ($1, $2, 0) \
         ON CONFLICT (publisher, currency) DO NOTHING",
    )
    .bind(publisher)
    .bind(currency.code())
    .execute(&mut *conn)
    .await?;
    let lock = nexus_registry::db::for_update(backend);
    let lifetime: i64 = sqlx::query_scalar(&format!(
        "SELECT lifetime_gross_minor FROM partner_totals WHERE publisher = $1 AND currency = $2{lock}"
    ))
    .bind(publisher)
    .bind(currency.code())
    .fetch_one(&mut *conn)
    .await?;
    Ok(lifetime)
}

/// Locks the lifetime rows of several partners and currencies (creating them at zero), in one
/// order whatever the caller's, so that two batches (or a batch and one collection) never wait
/// for each other in a cycle. SQLite's write transaction already holds the whole database.
pub async fn lock_lifetimes(
    conn: &mut sqlx::AnyConnection,
    backend: nexus_registry::Backend,
    partners: &[(String, Currency)],
) -> Result<(), MarketError> {
    let mut keys: Vec<(&str, &str)> = partners.iter().map(|(p, c)| (p.as_str(), c.code())).collect();
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(500) {
        let pairs: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect();
        let zeros: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, ${}, 0)", 2 * i + 1, 2 * i + 2)).collect();
        let insert = format!(
            "INSERT INTO partner_totals (publisher, currency, lifetime_gross_minor) VALUES {} \
             ON CONFLICT (publisher, currency) DO NOTHING",
            zeros.join(", ")
        );
        let lock = format!(
            "SELECT publisher FROM partner_totals WHERE (publisher, currency) IN ({}) ORDER BY publisher, currency \
             FOR UPDATE",
            pairs.join(", ")
        );
        let statements: &[&str] =
            if backend == nexus_registry::Backend::Postgres { &[&insert, &lock] } else { &[&insert] };
        for sql in statements {
            let mut query = sqlx::query(sql);
            for (publisher, currency) in chunk {
                query = query.bind(*publisher).bind(*currency);
            }
            query.fetch_all(&mut *conn).await?;
        }
    }
    Ok(())
}
