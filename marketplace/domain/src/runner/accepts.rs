//! Group commit for accepted asynchronous events: each `POST /v1/events` with
//! `Prefer: respond-async` hands its event and deliveries to one writer task and waits for the
//! commit that holds them; the writer commits whatever queued meanwhile in one transaction
//! (as the invocation writer does for invocation rows). One transaction per event made the
//! single SQLite writer the limit of the queued path; shared, the commit is paid once per
//! batch.

use nexus_host::Event;
use nexus_registry::Db;
use tokio::sync::{mpsc, oneshot};

use super::queue::insert_event;
use crate::accounts::TenantId;
use crate::error::{MarketError, storage};
use crate::ids::DeliveryId;
use crate::installs::Target;

/// Events one transaction holds at most.
const MAX_BATCH: usize = 256;
/// Accepts waiting for the writer before senders wait for room.
const QUEUE: usize = 4096;
/// Times the writer lets other tasks run to gather more before it commits.
const GATHER_TURNS: usize = 2;

/// One event to queue: its tenant, the event, its deliveries (`(delivery id, install)`).
pub(super) struct Accept {
    pub tenant: TenantId,
    pub event: Event,
    pub targets: Vec<(DeliveryId, Target)>,
    pub now: i64,
}

type Pending = (Accept, oneshot::Sender<Result<bool, String>>);

pub(super) struct Accepts {
    sender: mpsc::Sender<Pending>,
}

impl Accepts {
    /// Starts the writer on the current runtime; it ends when the handle is dropped.
    pub fn start(db: Db) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(db, receiver));
        Self { sender }
    }

    /// Queues the event and returns once it is committed: true, or false when the tenant's
    /// event id was queued before (nothing written).
    pub async fn write(&self, accept: Accept) -> Result<bool, MarketError> {
        let (done, committed) = oneshot::channel();
        self.sender.send((accept, done)).await.map_err(|_| storage("the event queue's writer has stopped"))?;
        committed.await.map_err(|_| storage("the event queue's writer has stopped"))?.map_err(MarketError::Storage)
    }
}

async fn write_batches(db: Db, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        for _ in 0..GATHER_TURNS {
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH
                && let Ok(pending) = receiver.try_recv()
            {
                batch.push(pending);
            }
        }
        let (accepts, waiting): (Vec<Accept>, Vec<_>) = batch.drain(..).unzip();
        let written = async {
            let mut tx = db.write_tx().await?;
            let mut inserted = Vec::with_capacity(accepts.len());
            for accept in &accepts {
                let targets: Vec<(&DeliveryId, &Target)> = accept.targets.iter().map(|(id, t)| (id, t)).collect();
                inserted.push(insert_event(&mut tx, &accept.tenant, &accept.event, &targets, accept.now).await?);
            }
            tx.commit().await?;
            Ok::<_, MarketError>(inserted)
        }
        .await
        .map_err(|error| {
            tracing::error!(%error, events = accepts.len(), "queued events not written");
            error.to_string()
        });
        for (index, done) in waiting.into_iter().enumerate() {
            // A sender that gave up (its request was dropped) no longer listens.
            let _ = done.send(written.as_ref().map(|inserted| inserted[index]).map_err(Clone::clone));
        }
    }
}
