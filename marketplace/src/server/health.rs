//! Liveness and readiness, for load balancers and orchestrators, and the Prometheus
//! metrics.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;

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

/// Request, invocation and event counters and latencies, plus the plugin host's gauges.
async fn metrics(State(state): State<AppState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let runner = &state.market.runner;
    let host = runner.host().metrics();
    let text = runner.metrics.render(&[
        ("nexus_host_component_loads_memory_total", "Component loads served from memory", host.loads_memory as f64),
        ("nexus_host_component_loads_disk_total", "Component loads served from the disk cache", host.loads_disk as f64),
        ("nexus_host_component_compiles_total", "Components compiled", host.compiles as f64),
        ("nexus_host_fuel_used_total", "Fuel used by all invocations", host.fuel_used as f64),
        (
            "nexus_live_nodes",
            "Live nodes the per-tenant and publish limits are divided among",
            f64::from(runner.live_nodes()),
        ),
        (
            "nexus_tenant_burst_share",
            "This node's share of each tenant's event burst",
            f64::from(runner.limits().burst),
        ),
    ]);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
