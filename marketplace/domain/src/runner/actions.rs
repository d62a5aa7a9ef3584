//! A plugin's actions as webhook messages: queued from the applied invocation's record. Here,
//! not in `webhooks`, because it reads the record (`records`), which sits above webhooks.

use serde_json::json;

use crate::error::MarketError;
use crate::market::Market;
use crate::records::InvocationRecord;
use crate::webhooks::{WebhookKind, enqueue, listening};

/// Queues a plugin's actions from an applied invocation: message `msg_<invocation>_<n>` per
/// action. Called after the record is durable, and again for every answer from the applied
/// record (a resend, a retry, a worker taking over a killed node's delivery), so an action is
/// queued once even if the process died between the record and this.
pub async fn enqueue_actions(market: &Market, record: &InvocationRecord) -> Result<(), MarketError> {
    if record.actions.is_empty() || !listening(market, &record.tenant, WebhookKind::PluginAction).await? {
        return Ok(());
    }
    let mut tx = market.db.write_tx().await?;
    for (n, action) in record.actions.iter().enumerate() {
        let data = json!({
            "install": record.install, "plugin": record.plugin, "version": record.version,
            "event_id": record.event_id, "invocation": record.id,
            "action": { "kind": action.kind, "payload": action.payload },
        });
        let message = format!("msg_{}_{n}", record.id);
        enqueue(&mut tx, market.billing.clock.now_ms(), &record.tenant, WebhookKind::PluginAction, &message, data)
            .await?;
    }
    tx.commit().await?;
    market.runner.wake_workers();
    Ok(())
}
