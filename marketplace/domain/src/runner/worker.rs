//! The delivery workers: every node claims due deliveries of asynchronous events
//! (`queue.rs`), runs them through the same path as a synchronous event (`deliver.rs`: the
//! tenant's limits, the circuit breaker, the record as the commit point) and settles them.
//!
//! - **Claims** are one statement: due rows move to `running` with this process's id and a
//!   lease (`LEASE_MS`), skipping rows other nodes hold (`FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL; on SQLite the one writer orders claims, and a row claimed by another
//!   process is one whose process died, since one server holds a file, so it is taken at
//!   once). A node that dies mid-run leaves its claims to lapse and be taken again.
//! - **Exactly once**: a delivery whose event already applied to the install (an earlier
//!   attempt that committed before its node died, or a synchronous resend) is settled from
//!   the applied record and nothing runs again; two racing runs are decided by the
//!   applied-once index, as for synchronous events.
//! - **Retries**: a transient failure (the plugin's `upstream`, a time limit, `load_failed`,
//!   the host busy) is tried again after `wait_before(attempt)`: 30 s doubling per attempt
//!   up to 8 h, each wait ±20 % at random, 16 attempts in all, about 48 hours. Then the
//!   delivery is `dead` with the last error, until someone replays it. Other failures end
//!   it `failed` at once. An install that is paused or waiting for payment counts as a
//!   failed attempt (it may be resumed meanwhile); an uninstalled one cancels the delivery.
//! - **Order**: an install whose version asks for ordered delivery is offered one delivery
//!   at a time, the earliest queued, and a retrying one holds back those after it.
//!
//! Nothing here holds a transaction across a run: claim (one statement), run, settle (one
//! transaction for the whole batch).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nexus_host::Event;
use nexus_registry::db::{Backend, process_id};

use super::deliver::{self, Refusal};
use crate::accounts::TenantId;
use crate::error::MarketError;
use crate::ids::{DeliveryId, InstallId, InvocationId};
use crate::installs::{self, InstallStatus, Target};
use crate::market::Market;
pub(crate) use crate::outbox::jittered;
pub use crate::outbox::{FIRST_WAIT_MS, LEASE_MS, MAX_ATTEMPTS, MAX_WAIT_MS, wait_before};
use crate::records;
use crate::webhooks::WebhookKind;

/// Deliveries one claim takes.
const BATCH: i64 = 64;
/// How often an idle worker looks for work it was not told about (other nodes' events,
/// retries coming due).
const POLL: Duration = Duration::from_secs(1);
/// How long a delivery the tenant's limits refused waits; not counted as an attempt.
const LIMITED_WAIT_MS: i64 = 1_000;

/// A claimed delivery and the event it carries.
struct Claimed {
    id: DeliveryId,
    tenant: TenantId,
    install: InstallId,
    attempts: i64,
    event: Event,
}

/// How an attempt ends.
enum Settle {
    Applied {
        invocation: InvocationId,
    },
    /// A transient failure: retried on the schedule, or dead once attempts run out.
    Retry {
        outcome: String,
        error: String,
        invocation: Option<InvocationId>,
    },
    Failed {
        outcome: String,
        error: String,
        invocation: InvocationId,
    },
    Cancelled {
        reason: String,
    },
    /// Not attempted (the tenant's limits): due again shortly, the attempt not counted.
    Later,
}

/// Fires due schedules, runs due deliveries, posts due webhooks and sends due mail until the
/// task is dropped:
/// at once when this node queued some, otherwise every [`POLL`].
pub fn keep_delivering(market: Arc<Market>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut swept = std::time::Instant::now();
        loop {
            if swept.elapsed() >= super::retention::SWEEP_EVERY {
                swept = std::time::Instant::now();
                if let Err(error) = super::retention::sweep(&market).await {
                    tracing::warn!(%error, "removing finished deliveries");
                }
            }
            if let Err(error) = super::schedules::fire_due(&market).await {
                tracing::warn!(%error, "firing schedules");
            }
            let delivered = deliver_due(&market).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "delivering queued events");
                0
            });
            let sent = crate::webhooks::sender::send_due(&market).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "sending webhooks");
                0
            });
            let mailed = crate::mail::send_due(&market).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "sending mail");
                0
            });
            if delivered + sent + mailed > 0 {
                continue;
            }
            let _ = tokio::time::timeout(POLL, market.runner.queue_wake.notified()).await;
        }
    })
}

/// Claims a batch of due deliveries, runs them concurrently and settles them; returns how
/// many it claimed.
pub async fn deliver_due(market: &Market) -> Result<usize, MarketError> {
    let claimed = claim(market).await?;
    let count = claimed.len();
    if count == 0 {
        return Ok(0);
    }
    crate::pause::at("deliveries.after_claim").await;
    // What every attempt reads first, read once for the batch: the installs, and whether an
    // earlier attempt (or a synchronous send of the same id) already applied the event.
    let mut ids: Vec<&str> = claimed.iter().map(|claimed| claimed.install.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let targets = installs::targets_by_ids(market, &ids).await?;
    let pairs: Vec<(&str, &str)> =
        claimed.iter().map(|claimed| (claimed.install.as_str(), claimed.event.id.as_str())).collect();
    let mut applied = records::applied_to(market, &pairs).await?;
    let attempts = claimed.iter().map(|claimed| {
        let target = targets.get(&claimed.install).cloned();
        let applied = applied.remove(&(claimed.install.clone(), claimed.event.id.clone()));
        attempt(market, claimed, target, applied)
    });
    let settled = futures_util::future::join_all(attempts).await;
    crate::pause::at("deliveries.before_settle").await;
    settle(market, claimed.iter().zip(settled)).await?;
    Ok(count)
}

/// A delivery as its claim returns it.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: DeliveryId,
    tenant_id: String,
    event_id: String,
    install_id: InstallId,
    attempts: i64,
}

async fn claim(market: &Market) -> Result<Vec<Claimed>, MarketError> {
    let now = market.billing.clock.now_ms();
    let (skip_locked, lapsed_elsewhere) = match market.db.backend {
        Backend::Postgres => (" FOR UPDATE SKIP LOCKED", "0 = 1"),
        Backend::Sqlite => ("", "(d.state = 'running' AND d.claimed_by <> $1)"),
    };
    let rows = sqlx::query_as::<_, ClaimedRow>(&format!(
        "UPDATE deliveries SET state = 'running', attempts = attempts + 1, claimed_by = $1, \
         next_attempt_at = $2, updated_at = $3 \
         WHERE seq IN (SELECT d.seq FROM deliveries d \
            WHERE d.state IN ('queued', 'running', 'retrying') AND (d.next_attempt_at <= $3 OR {lapsed_elsewhere}) \
            AND (d.ordered = 0 OR NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.install_id = d.install_id \
                 AND e.seq < d.seq AND e.state IN ('queued', 'running', 'retrying'))) \
            ORDER BY d.next_attempt_at, d.seq LIMIT $4{skip_locked}) \
         RETURNING id, tenant_id, event_id, install_id, attempts"
    ))
    .bind(process_id())
    .bind(now + LEASE_MS)
    .bind(now)
    .bind(BATCH)
    .fetch_all(market.db.writer())
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // The events they carry, each read once.
    let mut events: HashMap<(String, String), Event> = HashMap::new();
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let ClaimedRow { id, tenant_id: tenant, event_id, install_id, attempts } = row;
        let key = (tenant.clone(), event_id.clone());
        if !events.contains_key(&key) {
            let (event_type, payload): (String, String) =
                sqlx::query_as("SELECT event_type, payload FROM queued_events WHERE tenant_id = $1 AND id = $2")
                    .bind(&tenant)
                    .bind(&event_id)
                    .fetch_one(&market.db.pool)
                    .await?;
            events.insert(key.clone(), Event { id: event_id, event_type, payload });
        }
        claimed.push(Claimed {
            id,
            tenant: tenant.parse().map_err(|e| MarketError::Storage(format!("stored tenant id: {e}")))?,
            install: install_id,
            attempts,
            event: events[&key].clone(),
        });
    }
    Ok(claimed)
}

/// One attempt at one claimed delivery of `target` (`None`: the install is gone), which
/// `applied` already applied, if it did.
async fn attempt(
    market: &Market,
    claimed: &Claimed,
    target: Option<Target>,
    applied: Option<records::InvocationRecord>,
) -> Settle {
    match try_attempt(market, claimed, target, applied).await {
        Ok(settle) => settle,
        Err(error) => {
            tracing::warn!(delivery = %claimed.id, %error, "delivery attempt failed in the marketplace");
            Settle::Retry { outcome: error.code().as_str().into(), error: error.to_string(), invocation: None }
        }
    }
}

async fn try_attempt(
    market: &Market,
    claimed: &Claimed,
    target: Option<Target>,
    applied: Option<records::InvocationRecord>,
) -> Result<Settle, MarketError> {
    let Some(target) = target else {
        return Ok(Settle::Cancelled { reason: format!("install {} no longer exists", claimed.install) });
    };
    if let Some(record) = applied {
        super::actions::enqueue_actions(market, &record).await?;
        return Ok(Settle::Applied { invocation: record.id });
    }
    match target.status {
        InstallStatus::Uninstalled => {
            return Ok(Settle::Cancelled { reason: format!("install {} was uninstalled", target.id) });
        }
        InstallStatus::Paused | InstallStatus::PendingPayment => {
            let reason = super::not_running(&target).unwrap_or_default();
            return Ok(Settle::Retry { outcome: "install_not_running".into(), error: reason, invocation: None });
        }
        InstallStatus::Active => {}
    }
    let _permit = match market.runner.admit(&claimed.tenant).await {
        Ok(permit) => permit,
        Err(MarketError::RateLimited { .. } | MarketError::Busy(_)) => return Ok(Settle::Later),
        Err(error) => return Err(error),
    };
    market.runner.metrics.record_delivered();
    Ok(match deliver::run(market, target, &claimed.event).await {
        Ok(delivery) if delivery.outcome == "ok" => Settle::Applied { invocation: delivery.invocation },
        Ok(delivery) if delivery.retryable => Settle::Retry {
            outcome: delivery.outcome,
            error: delivery.error.unwrap_or_default(),
            invocation: Some(delivery.invocation),
        },
        Ok(delivery) => Settle::Failed {
            outcome: delivery.outcome,
            error: delivery.error.unwrap_or_default(),
            invocation: delivery.invocation,
        },
        Err(Refusal::Busy { reason, .. }) => {
            Settle::Retry { outcome: "host_busy".into(), error: reason.message().into(), invocation: None }
        }
        Err(Refusal::Failed(error)) => return Err(error),
    })
}

/// Writes the batch's outcomes in one transaction. Each update names this process's claim,
/// so a claim that lapsed and was taken by another node is left to that node.
async fn settle<'a>(market: &Market, batch: impl Iterator<Item = (&'a Claimed, Settle)>) -> Result<(), MarketError> {
    let now = market.billing.clock.now_ms();
    let mut tx = market.db.write_tx().await?;
    for (claimed, settle) in batch {
        let (state, attempts, due, outcome, error, invocation) = match settle {
            Settle::Applied { invocation } => {
                ("applied", claimed.attempts, now, Some("ok".into()), None, Some(invocation))
            }
            Settle::Retry { outcome, error, invocation } if claimed.attempts >= MAX_ATTEMPTS => {
                ("dead", claimed.attempts, now, Some(outcome), Some(error), invocation)
            }
            Settle::Retry { outcome, error, invocation } => {
                let due = now + jittered(wait_before(claimed.attempts));
                ("retrying", claimed.attempts, due, Some(outcome), Some(error), invocation)
            }
            Settle::Failed { outcome, error, invocation } => {
                ("failed", claimed.attempts, now, Some(outcome), Some(error), Some(invocation))
            }
            Settle::Cancelled { reason } => {
                ("cancelled", claimed.attempts, now, Some("cancelled".into()), Some(reason), None)
            }
            Settle::Later => ("retrying", claimed.attempts - 1, now + LIMITED_WAIT_MS, None, None, None),
        };
        if state == "dead" {
            let data = serde_json::json!({ "delivery": claimed.id, "event_id": claimed.event.id,
                "install": claimed.install, "attempts": attempts, "last_outcome": outcome, "last_error": error });
            let message = format!("msg_dead_{}_{now}", claimed.id);
            crate::webhooks::enqueue(&mut tx, now, &claimed.tenant, WebhookKind::DeliveryDead, &message, data).await?;
        }
        sqlx::query(
            "UPDATE deliveries SET state = $1, attempts = $2, next_attempt_at = $3, \
             last_outcome = COALESCE($4, last_outcome), last_error = CASE WHEN $4 IS NULL THEN last_error ELSE $5 END, \
             invocation_id = COALESCE($6, invocation_id), claimed_by = NULL, updated_at = $7 \
             WHERE id = $8 AND state = 'running' AND claimed_by = $9",
        )
        .bind(state)
        .bind(attempts)
        .bind(due)
        .bind(outcome)
        .bind(error)
        .bind(invocation)
        .bind(now)
        .bind(&claimed.id)
        .bind(process_id())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
