//! Deliveries of queued events as tenants and operators manage them: listed by state, and
//! dead or failed ones replayed (queued again from attempt 0, audited, all or nothing).

use nexus_registry::ErrorCode;
use serde::{Deserialize, Serialize};

use super::{DELIVERY_COLUMNS, DeliveryRow, DeliveryState, QueuedDelivery, tenant_of};
use crate::accounts::{Caller, TenantId, TenantScope};
use crate::audit;
use crate::error::{CursorPage, MarketError};
use crate::market::Market;

/// `GET /v1/deliveries`: newest first.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Operators may name a tenant (default: every tenant); tenants see their own.
    pub tenant: Option<String>,
    /// Only deliveries in this state (`dead` lists what needs a replay).
    pub state: Option<DeliveryState>,
    /// The `next_after` of the previous page.
    pub after: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

pub async fn list(
    market: &Market,
    caller: &Caller,
    query: &DeliveryQuery,
) -> Result<CursorPage<QueuedDelivery>, MarketError> {
    let named = query.tenant.as_deref().map(str::parse::<TenantId>).transpose()?;
    let tenant = tenant_of(caller, named.as_ref(), TenantScope::Read)?;
    let per_page = crate::error::per_page(query.per_page, 50)?;
    let before = match &query.after {
        None => i64::MAX,
        Some(after) => {
            sqlx::query_scalar::<_, i64>("SELECT seq FROM deliveries WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)")
                .bind(after)
                .bind(tenant.as_ref().map(TenantId::as_str))
                .fetch_optional(&market.db.pool)
                .await?
                .ok_or_else(|| {
                    MarketError::invalid(ErrorCode::InvalidQuery, format!("`after` {after} is not a delivery here"))
                })?
        }
    };
    let filter = "WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR state = $2)";
    let state = query.state.map(DeliveryState::as_str);
    let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM deliveries {filter}"))
        .bind(tenant.as_ref().map(TenantId::as_str))
        .bind(state)
        .fetch_one(&market.db.pool)
        .await?;
    let rows = sqlx::query_as::<_, DeliveryRow>(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries {filter} AND seq < $3 ORDER BY seq DESC LIMIT $4"
    ))
    .bind(tenant.as_ref().map(TenantId::as_str))
    .bind(state)
    .bind(before)
    .bind(i64::from(per_page) + 1)
    .fetch_all(&market.db.pool)
    .await?;
    let items = rows.into_iter().map(QueuedDelivery::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(CursorPage::new(items, per_page, total, |delivery| delivery.id.to_string()))
}

/// The most deliveries one replay may name.
pub const MAX_REPLAY_IDS: usize = 100;

/// `POST /v1/deliveries/replay`: the deliveries named, or every delivery in a state.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Up to 100 delivery ids, each dead or failed.
    #[serde(default)]
    pub deliveries: Vec<String>,
    /// Instead of ids: every delivery in this state (`dead` or `failed`).
    pub state: Option<DeliveryState>,
    /// Operators: only this tenant's (default: every tenant's, with `state`).
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Replayed {
    /// The deliveries queued again, each from attempt 0.
    pub deliveries: Vec<String>,
}

/// Queues dead or failed deliveries again. Ids of other tenants are not found and a
/// delivery in another state is refused; either way nothing is replayed.
pub async fn replay(market: &Market, caller: &Caller, request: ReplayRequest) -> Result<Replayed, MarketError> {
    let named = request.tenant.as_deref().map(str::parse::<TenantId>).transpose()?;
    let tenant = tenant_of(caller, named.as_ref(), TenantScope::Events)?;
    check_replay(&request)?;
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    let requeue = "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = $1, claimed_by = NULL, \
                   updated_at = $1";
    let ids: Vec<String> = match request.state {
        Some(state) => {
            sqlx::query_scalar(&format!("{requeue} WHERE ($2 IS NULL OR tenant_id = $2) AND state = $3 RETURNING id"))
                .bind(now)
                .bind(tenant.as_ref().map(TenantId::as_str))
                .bind(state.as_str())
                .fetch_all(&mut *tx)
                .await?
        }
        None => {
            let mut ids = request.deliveries.clone();
            ids.sort();
            ids.dedup();
            for id in &ids {
                if let Some(refused) = not_replayable(&mut tx, market, tenant.as_ref(), id).await? {
                    // Rolled back before the answer, so the rows locked so far are free when
                    // the client hears (a dropped transaction rolls back only later).
                    tx.rollback().await?;
                    return Err(refused);
                }
                sqlx::query(&format!("{requeue} WHERE id = $2")).bind(now).bind(id).execute(&mut *tx).await?;
            }
            ids
        }
    };
    if !ids.is_empty() {
        let target = tenant.as_ref().map_or_else(|| "deliveries".to_string(), |tenant| format!("tenant:{tenant}"));
        let detail = serde_json::json!({ "count": ids.len(), "deliveries": ids.iter().take(MAX_REPLAY_IDS).collect::<Vec<_>>() });
        audit::record(&mut *tx, &caller.actor(), "deliveries.replayed", &target, detail).await?;
    }
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(Replayed { deliveries: ids })
}

/// Refuses a request that names neither deliveries nor a state, or both, a state that cannot
/// be replayed, or too many deliveries.
fn check_replay(request: &ReplayRequest) -> Result<(), MarketError> {
    let bad = |message: String| MarketError::invalid(ErrorCode::InvalidRequest, message);
    match (&request.state, request.deliveries.len()) {
        (None, 0) => Err(bad("name the deliveries to replay, or a `state` (dead or failed)".into())),
        (Some(_), 1..) => Err(bad("give either `deliveries` or `state`, not both".into())),
        (Some(state), _) if !state.replayable() => {
            Err(bad(format!("`state` {} cannot be replayed: only dead or failed", state.as_str())))
        }
        (None, n) if n > MAX_REPLAY_IDS => Err(bad(format!("at most {MAX_REPLAY_IDS} deliveries at once"))),
        _ => Ok(()),
    }
}

/// Why delivery `id` (of `tenant`, if named) cannot be replayed: not found, or not dead or
/// failed; `None` if it can. Its row is locked in `tx` until commit.
async fn not_replayable(
    tx: &mut sqlx::AnyConnection,
    market: &Market,
    tenant: Option<&TenantId>,
    id: &str,
) -> Result<Option<MarketError>, MarketError> {
    let state: Option<String> = sqlx::query_scalar(&format!(
        "SELECT state FROM deliveries WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2){}",
        market.db.for_update()
    ))
    .bind(id)
    .bind(tenant.map(TenantId::as_str))
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match state.as_deref().map(DeliveryState::stored).transpose()? {
        None => Some(MarketError::NotFound(format!("delivery {id}"))),
        Some(state) if !state.replayable() => Some(MarketError::conflict(
            ErrorCode::DeliveryNotReplayable,
            format!("delivery {id} is {}; only dead or failed deliveries can be replayed", state.as_str()),
        )),
        Some(_) => None,
    })
}
