//! The nodes of one marketplace: each `nexus serve` writes a heartbeat row every
//! [`HEARTBEAT`]; nodes heard from within [`LIVE_WITHIN`] are live. Each node divides the
//! per-tenant limits and the publish rate by the number of live nodes, so the configured
//! limits hold for the whole marketplace (`runner/admission.rs` says what that trades).

use std::sync::Arc;
use std::time::Duration;

use nexus_registry::db::now_ms;
use serde::Serialize;

use crate::accounts::Caller;
use crate::error::MarketError;
use crate::ids::NodeId;
use crate::market::Market;

/// How often a node writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node not heard from for this long is no longer live: three missed heartbeats, so a
/// slow database moment does not halve everyone's limits.
pub const LIVE_WITHIN: Duration = Duration::from_secs(7);
/// Rows of nodes gone this long are removed.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A node as operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Node {
    #[schema(value_type = String)]
    pub id: NodeId,
    pub version: String,
    /// The address it serves on.
    pub listen: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Heard from within the last seven seconds.
    pub live: bool,
}

/// This node's identity in the `nodes` table.
#[derive(Debug, Clone)]
pub struct Membership {
    pub id: NodeId,
    listen: String,
    started_at: i64,
}

/// Joins: writes the first heartbeat and takes this node's share of the limits.
pub async fn join(market: &Market, listen: &str) -> Result<Membership, MarketError> {
    let membership = Membership { id: NodeId::random()?, listen: listen.into(), started_at: now_ms() };
    beat(market, &membership).await?;
    market.runner.metrics.set_node(membership.id.as_str());
    Ok(membership)
}

/// Heartbeats until the task is dropped; a failed beat is logged and retried next time.
pub fn keep_alive(market: Arc<Market>, membership: Membership) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(error) = beat(&market, &membership).await {
                tracing::warn!(%error, "node heartbeat failed");
            }
        }
    })
}

/// Leaves at shutdown, so the others take over its share at once.
pub async fn leave(market: &Market, membership: &Membership) {
    if let Err(error) =
        sqlx::query("DELETE FROM nodes WHERE id = $1").bind(&membership.id).execute(market.db.writer()).await
    {
        tracing::warn!(%error, "could not remove this node's row");
    }
}

/// Writes the heartbeat, then shares the limits among the live nodes.
async fn beat(market: &Market, membership: &Membership) -> Result<u32, MarketError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO nodes (id, version, listen, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
    )
    .bind(&membership.id)
    .bind(env!("CARGO_PKG_VERSION"))
    .bind(&membership.listen)
    .bind(membership.started_at)
    .bind(now)
    .execute(market.db.writer())
    .await?;
    sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1")
        .bind(now - millis(FORGET_AFTER))
        .execute(market.db.writer())
        .await?;
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE heartbeat_at >= $1")
        .bind(now - millis(LIVE_WITHIN))
        .fetch_one(&market.db.pool)
        .await?;
    let live = u32::try_from(live).unwrap_or(1).max(1);
    market.runner.share_among(live);
    market.registry.share_among(live);
    Ok(live)
}

/// Every node with a row, live ones first. Operators only.
pub async fn list(market: &Market, caller: &Caller) -> Result<Vec<Node>, MarketError> {
    caller.require_operator()?;
    let live_since = now_ms() - millis(LIVE_WITHIN);
    let rows = sqlx::query_as::<_, NodeRow>(
        "SELECT id, version, listen, started_at, heartbeat_at FROM nodes ORDER BY heartbeat_at DESC, id",
    )
    .fetch_all(&market.db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Node {
            id: row.id,
            version: row.version,
            listen: row.listen,
            started_at: row.started_at,
            heartbeat_at: row.heartbeat_at,
            live: row.heartbeat_at >= live_since,
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: NodeId,
    version: String,
    listen: String,
    started_at: i64,
    heartbeat_at: i64,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
