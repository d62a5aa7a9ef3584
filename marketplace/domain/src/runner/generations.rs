//! The generations every event checks its cached views against (`views.rs`), read for many
//! events at once. Each event asks one task on its node; the task reads the generations of
//! every tenant that asked meanwhile in one statement and answers them all. The statement
//! starts after each of its events asked, so it sees every change committed before that
//! event arrived (on any node): a revocation still reaches every node at its next event.
//! What it saves is the per-event round trip to the database (on SQLite a hand-off to a
//! connection thread and back, and a health check of the pooled connection on the way in
//! and on the way out): under load one read serves every event that arrived during the
//! previous one.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use nexus_registry::Db;
use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::TenantId;
use crate::error::{MarketError, storage};

/// Events waiting for a read before askers wait for room.
const QUEUE: usize = 4096;
/// Tenants read in one statement at most (their ids are its parameters).
const MAX_TENANTS: usize = 256;
/// How long the task keeps its reading connection after the last event: under load it is
/// never given back (no health check per read); when events pause, the pool has it again
/// (soon, as a small pool may have no other connection for the other reads).
const IDLE_AFTER: Duration = Duration::from_millis(100);
/// Before it reads, the task lets the tasks that can run go first, again while that brings
/// more events, at most this many times: events a few microseconds apart share the read.
const GATHER_TURNS: usize = 4;

/// The generations a cached copy was read at. Both only grow, so a copy read at
/// generations at least as new as the ones an event saw is current for that event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generations {
    /// The marketplace's `cache_generation`: key revocations, delistings, operator tokens.
    pub global: i64,
    /// The tenant's `tenants.generation` (-1 for a tenant that does not exist).
    pub tenant: i64,
}

impl Generations {
    pub fn covers(self, seen: Self) -> bool {
        self.global >= seen.global && self.tenant >= seen.tenant
    }
}

type Ask = (TenantId, oneshot::Sender<Result<Generations, String>>);

/// The handle events ask through; cheap to clone.
#[derive(Clone)]
pub struct GenerationReads {
    sender: mpsc::Sender<Ask>,
}

impl GenerationReads {
    /// Starts the reading task on the current runtime; it ends when every handle is dropped.
    pub fn start(db: Db) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(serve(db, receiver));
        Self { sender }
    }

    /// The generations now: read by a statement that started after this call.
    pub async fn current(&self, tenant: &TenantId) -> Result<Generations, MarketError> {
        let (answer, answered) = oneshot::channel();
        let stopped = || storage("the generation reader has stopped");
        self.sender.send((tenant.clone(), answer)).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?.map_err(MarketError::Storage)
    }
}

async fn serve(db: Db, mut receiver: mpsc::Receiver<Ask>) {
    let mut asks = Vec::with_capacity(MAX_TENANTS);
    let mut held: Option<PoolConnection<sqlx::Any>> = None;
    loop {
        let received = match held {
            Some(_) => match tokio::time::timeout(IDLE_AFTER, receiver.recv_many(&mut asks, MAX_TENANTS)).await {
                Ok(received) => received,
                Err(_) => {
                    held = None;
                    continue;
                }
            },
            None => receiver.recv_many(&mut asks, MAX_TENANTS).await,
        };
        if received == 0 {
            return;
        }
        for _ in 0..GATHER_TURNS {
            tokio::task::yield_now().await;
            let before = asks.len();
            while asks.len() < MAX_TENANTS
                && let Ok(ask) = receiver.try_recv()
            {
                asks.push(ask);
            }
            if asks.len() == before {
                break;
            }
        }
        let outcome = async {
            let connection = match &mut held {
                Some(connection) => connection,
                None => held.insert(db.pool.acquire().await?),
            };
            let tenants: BTreeSet<&TenantId> = asks.iter().map(|(tenant, _)| tenant).collect();
            tracing::debug!(events = asks.len(), tenants = tenants.len(), "event generations to read");
            read(connection, &tenants).await
        }
        .await;
        let outcome = outcome.map_err(|error| {
            // A connection that failed is not trusted again: the next read takes another.
            held = None;
            tracing::error!(%error, "event generations not read");
            error.to_string()
        });
        for (tenant, answer) in asks.drain(..) {
            let generations = outcome.as_ref().map_err(Clone::clone).map(|(global, tenants)| Generations {
                global: *global,
                tenant: tenants.get(tenant.as_str()).copied().unwrap_or(-1),
            });
            // An event that gave up (its request was dropped) no longer listens.
            let _ = answer.send(generations);
        }
    }
}

/// The marketplace's generation and those of `tenants` (absent ones are left out), in one
/// statement: the global row is the one with an empty id, which no tenant has.
async fn read(
    connection: &mut sqlx::AnyConnection,
    tenants: &BTreeSet<&TenantId>,
) -> Result<(i64, HashMap<String, i64>), sqlx::Error> {
    let slots: Vec<String> = (1..=tenants.len()).map(|n| format!("${n}")).collect();
    let statement = nexus_registry::db::backend_of(connection).positional(format!(
        "SELECT '' AS id, generation FROM cache_generation WHERE id = 1 \
         UNION ALL SELECT id, generation FROM tenants WHERE id IN ({})",
        slots.join(", ")
    ));
    let mut query = sqlx::query_as::<_, (String, i64)>(&statement);
    for tenant in tenants {
        query = query.bind(tenant.as_str());
    }
    let mut rows: HashMap<String, i64> = query.fetch_all(connection).await?.into_iter().collect();
    let global = rows.remove("").ok_or_else(|| sqlx::Error::RowNotFound)?;
    Ok((global, rows))
}
