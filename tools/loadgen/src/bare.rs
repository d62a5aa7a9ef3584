//! `nexus-loadgen server --bare`: the comparator for `run --vs-bare`. One axum route,
//! `POST /v1/events`, that parses the body into a `serde_json::Value` and answers an
//! [`EventReceipt`] of the real one's shape and size (one delivery of an echo install, the
//! payload as its data, ids of the same lengths), serialized by the same type. No token, no
//! admission, no plugin, no database, no middleware: what HTTP and JSON alone cost on this
//! machine, served from the same binary and runtime as the real server.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use nexus_marketplace::ids::{GeneratedEventId, InstallId, InvocationId};
use nexus_marketplace::runner::{Delivery, EventReceipt};
use serde_json::Value;

/// What the echo install's delivery names, at the lengths the seeded server's ids have.
const INSTALL: &str = "ins_0123456789abcdef";
const PLUGIN: &str = "bench/echo";
const VERSION: &str = "0.1.0";

/// Serves the bare route on an ephemeral loopback port until `shutdown` completes; announces
/// the URL (and placeholder tokens) as `server` does.
pub async fn run(shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    crate::serve::announce(&format!("http://{}", listener.local_addr()?), "bare", "bare", "bare")?;
    axum::serve(listener, app()).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

fn app() -> Router {
    Router::new().route("/v1/events", post(send_event))
}

/// Parses the event as the real route's body is parsed (JSON into a value) and answers its
/// receipt. A body that is not a JSON object with a `payload` is a 400, as it would be there.
async fn send_event(body: Bytes) -> Result<Json<EventReceipt>, StatusCode> {
    let event: Value = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let payload = event.get("payload").filter(|p| p.is_object()).ok_or(StatusCode::BAD_REQUEST)?;
    // Made as the marketplace makes them (`ids.rs`): milliseconds, then 8 random bytes.
    let ids = (GeneratedEventId::ordered(), InvocationId::ordered(), INSTALL.parse::<InstallId>(), PLUGIN.parse());
    let (Ok(event_id), Ok(invocation), Ok(install), Ok(plugin)) = ids else {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let delivery = Delivery {
        invocation,
        install,
        plugin,
        version: VERSION.into(),
        outcome: "ok".into(),
        duration_us: 100,
        data: Some(payload.to_string()),
        actions: Vec::new(),
        error: None,
        paused: false,
        retryable: false,
        replayed: false,
    };
    Ok(Json(EventReceipt { event_id: event_id.into(), deliveries: vec![delivery], skipped: Vec::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_a_receipt_of_the_real_shape() {
        let body = Bytes::from_static(br#"{"type":"bench.ping","payload":{"n":7}}"#);
        let Json(receipt) = send_event(body).await.unwrap();
        let text = serde_json::to_string(&receipt).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["deliveries"][0]["data"], r#"{"n":7}"#);
        assert_eq!(value["deliveries"][0]["outcome"], "ok");
        assert_eq!(value["event_id"].as_str().unwrap().len(), "evt_".len() + 28);
        assert_eq!(value["skipped"], serde_json::json!([]));
        assert_eq!(send_event(Bytes::from_static(b"{\"type\":1}")).await.err(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(send_event(Bytes::from_static(b"not json")).await.err(), Some(StatusCode::BAD_REQUEST));
    }
}
