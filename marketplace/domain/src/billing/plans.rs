//! Managing plans: a publisher adds revisions and retires keys (`put`, `retire`), and a
//! manifest's `[[pricing]]` seeds them (`seed`, `backfill`); each change reprices the listing
//! in its transaction. The model and its reads are [`crate::plans`], re-exported here.

use nexus_money::period::Interval;
use nexus_registry::{ErrorCode, PluginId};

mod manifest;

pub use manifest::{backfill, check_manifest, seed};

use super::ids::PlanId;
use crate::accounts::Caller;
use crate::error::MarketError;
use crate::market::Market;
use crate::plans::COLUMNS;
pub use crate::plans::*;

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
