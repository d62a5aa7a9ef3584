//! The synchronous event path: `POST /v1/events` fans an event out to the tenant's installs
//! that handle it and answers with every delivery; `POST /v1/installs/{id}/invoke` runs one.

use nexus_registry::ErrorCode;

use super::views::EventCaller;
use super::{BUSY_RETRY_AFTER, Delivery, EventReceipt, EventRequest, Skipped, deliver, event};
use crate::accounts::{Caller, TenantScope};
use crate::error::{BusyReason, MarketError};
use crate::ids::InstallId;
use crate::installs::{self, InstallStatus};
use crate::market::Market;
use crate::records;

/// The caller of `token` for `POST /v1/events`, from this node's cache when the tenant has
/// not changed since (`runner/views.rs`).
pub async fn event_caller(market: &Market, token: &str) -> Result<EventCaller, MarketError> {
    market.runner.views.caller(market, token).await
}

/// Delivers an event to every live install of the calling tenant that handles its type.
pub async fn send_event(market: &Market, caller: &Caller, request: EventRequest) -> Result<EventReceipt, MarketError> {
    send_event_as(market, &EventCaller::fresh(caller.clone()), request).await
}

/// [`send_event`] for a caller of [`event_caller`]: the tenant's installs come from this
/// node's cache when they were read at the generations the caller saw.
pub async fn send_event_as(
    market: &Market,
    who: &EventCaller,
    request: EventRequest,
) -> Result<EventReceipt, MarketError> {
    let tenant = who.caller.tenant(TenantScope::Events)?;
    let (event, from_client) = event(request)?;
    let runner = &market.runner;
    let _permit = runner.admit(tenant).await?;
    // A resent event (after a crash, a timeout, a busy answer) runs only where it has not
    // applied yet; where it has, the applied record is the answer.
    let mut applied = if from_client { records::applied(market, tenant, &event.id).await? } else { Default::default() };
    let mut deliveries = Vec::new();
    let mut skipped = Vec::new();
    let mut runs = Vec::new();
    for target in runner.views.targets(market, who, tenant).await? {
        if !target.handles(&event.event_type) {
            continue;
        }
        if let Some(record) = applied.remove(&target.id) {
            deliveries.push(deliver::answered(market, record).await?);
            continue;
        }
        if let Some(reason) = not_running(&target) {
            runner.metrics.record_skipped(target.status.as_str());
            skipped.push(Skipped { install: target.id.clone(), plugin: target.plugin.clone(), reason });
            continue;
        }
        runs.push(deliver::run(market, target, &event));
    }
    let mut busy = Vec::new();
    for delivery in futures_util::future::join_all(runs).await {
        match delivery {
            Ok(delivery) => deliveries.push(delivery),
            Err(deliver::Refusal::Busy { install, reason }) => busy.push((install, reason)),
            Err(deliver::Refusal::Failed(error)) => return Err(error),
        }
    }
    runner.metrics.record_event(deliveries.len());
    if !busy.is_empty() {
        // Back-pressure, not failed deliveries: the installs named never ran. The receipt of
        // what did run goes along so the client can see it.
        // Compiling only when that is all it is: any install short of capacity says so.
        let reason = if busy.iter().all(|(_, reason)| *reason == BusyReason::Compiling) {
            BusyReason::Compiling
        } else {
            BusyReason::Capacity
        };
        let installs: Vec<InstallId> = busy.into_iter().map(|(install, _)| install).collect();
        let receipt = EventReceipt { event_id: event.id, deliveries, skipped };
        let details = serde_json::json!({ "busy_installs": installs, "receipt": receipt });
        return Err(MarketError::HostBusy { retry_after: BUSY_RETRY_AFTER, reason, details: Some(details) });
    }
    Ok(EventReceipt { event_id: event.id, deliveries, skipped })
}

/// Why an install that handles an event does not run it: paused, or waiting for payment.
pub(super) fn not_running(target: &installs::Target) -> Option<String> {
    match target.status {
        InstallStatus::Paused => Some(format!("paused: {}", target.status_reason.clone().unwrap_or_default())),
        InstallStatus::PendingPayment => Some("pending_payment: the charge due at install is not collected yet".into()),
        InstallStatus::Active | InstallStatus::Uninstalled => None,
    }
}

/// Runs one install of the calling tenant on an event, whatever its event types.
pub async fn invoke_install(
    market: &Market,
    caller: &Caller,
    install: &InstallId,
    request: EventRequest,
) -> Result<Delivery, MarketError> {
    let target = installs::target_of(market, caller, install).await?;
    match target.status {
        InstallStatus::Paused => {
            return Err(MarketError::conflict(
                ErrorCode::InstallPaused,
                format!("install {install} is paused ({}); resume it first", target.status_reason.unwrap_or_default()),
            ));
        }
        InstallStatus::PendingPayment => {
            return Err(MarketError::conflict(
                ErrorCode::InstallPendingPayment,
                format!("install {install} runs once the charge due at its install or plan change is collected"),
            ));
        }
        InstallStatus::Active | InstallStatus::Uninstalled => {}
    }
    let (event, from_client) = event(request)?;
    let tenant = caller.tenant(TenantScope::Events)?;
    let _permit = market.runner.admit(tenant).await?;
    if from_client && let Some(record) = records::applied(market, tenant, &event.id).await?.remove(&target.id) {
        return deliver::answered(market, record).await;
    }
    deliver::run(market, target, &event).await.map_err(|refusal| match refusal {
        deliver::Refusal::Busy { install, reason } => MarketError::HostBusy {
            retry_after: BUSY_RETRY_AFTER,
            reason,
            details: Some(serde_json::json!({ "busy_installs": [install] })),
        },
        deliver::Refusal::Failed(error) => error,
    })
}
