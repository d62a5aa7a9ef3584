//! Liveness and readiness, for load balancers and orchestrators, and the Prometheus
//! metrics.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use crate::metrics::{CONTENT_TYPE, ScrapeGauges};

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(live)).route("/readyz", get(ready)).route("/metrics", get(metrics))
}

/// The process answers.
async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers too; a node that cannot reach it should get no traffic.
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match sqlx::query("SELECT 1").execute(&state.market.db.pool).await {
        Ok(_) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "database unavailable" })))
        }
    }
}

/// Request, invocation and event counters and latencies, plus gauges read now: the plugin
/// host's counters, the live nodes, and the money from the ledger (the same on every node).
async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let runner = &state.market.runner;
    let host = runner.host().metrics();
    let mut gauges = ScrapeGauges::default();
    gauges.gauge("nexus_host_component_loads_memory_total", "Component loads served from memory", host.loads_memory);
    gauges.gauge(
        "nexus_host_component_loads_disk_total",
        "Component loads served from the disk cache",
        host.loads_disk,
    );
    gauges.gauge("nexus_host_component_compiles_total", "Components compiled", host.compiles);
    gauges.gauge("nexus_host_fuel_used_total", "Fuel used by all invocations", host.fuel_used);
    gauges.gauge(
        "nexus_live_nodes",
        "Live nodes the per-tenant and publish limits are divided among",
        u64::from(runner.live_nodes()),
    );
    gauges.gauge(
        "nexus_tenant_burst_share",
        "This node's share of each tenant's event burst",
        u64::from(runner.limits().burst),
    );
    match crate::billing::views::totals(&state.market).await {
        Ok(totals) => {
            type Figure = fn(&crate::billing::views::Totals) -> i64;
            let figures: [(&str, &str, Figure); 4] = [
                ("nexus_gmv_minor", "Gross collected from tenants, in minor units", |t| t.gmv_minor),
                ("nexus_refunds_minor", "Refunded to tenants, in minor units", |t| t.refunded_minor),
                ("nexus_fees_minor", "Platform fees net of refunds, in minor units", |t| t.fees_minor),
                ("nexus_payouts_paid_minor", "Paid out to partners, in minor units", |t| t.paid_out_minor),
            ];
            for (name, help, figure) in figures {
                gauges.by_currency(name, help, totals.iter().map(|t| (t.currency, figure(t))));
            }
        }
        Err(error) => tracing::warn!(%error, "money metrics not read"),
    }
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], runner.metrics.render(&gauges))
}
