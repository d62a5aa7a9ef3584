//! {{name}}: posts each `order.created` and `order.paid` to a webhook (`webhook` template).
//!
//! The request is a POST to the install's secret `webhook-url`, with `content-type:
//! application/json` and the body `{"event": <event type>, "id": <event id>, "order":
//! <payload>}`. The event id stays the same when the marketplace retries an event, so the
//! receiver can use it to drop duplicates.
//!
//! - A 2xx answer: data `{"delivered": true, "status": <status>}`.
//! - Any other status: `upstream` naming the status, so the event may be retried. A
//!   transport failure is `upstream` too (the SDK maps it).
//! - The secret `webhook-url` not set (or empty): `invalid-config`.
//! - A payload that is not a JSON object: `invalid-payload`.
//!
//! The payload is checked before the secret is read, and nothing is sent on an error. The
//! URL is never logged: webhook URLs often carry an access token.

use nexus_plugin_sdk::http::{Method, Request, send};
use nexus_plugin_sdk::{Event, Guest, Info, Outcome, PluginError, config, log, payload};
use serde_json::json;

const EVENT_TYPES: &[&str] = &["order.created", "order.paid"];

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        // The crate's name and version are nexus.toml's: `nexus plugin check` compares them.
        Info {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            event_types: EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn handle(event: Event) -> Result<Outcome, PluginError> {
        match event.event_type.as_str() {
            "order.created" | "order.paid" => on_order(&event),
            other => Err(PluginError::unsupported_event(other, EVENT_TYPES)),
        }
    }
}

fn on_order(event: &Event) -> Result<Outcome, PluginError> {
    let order = payload::object(&event.payload)?;
    let url = config::secret("webhook-url")?
        .filter(|url| !url.is_empty())
        .ok_or_else(|| PluginError::invalid_config("secret webhook-url is not set"))?;

    let body = json!({ "event": event.event_type, "id": event.id, "order": order });
    let request = Request {
        method: Method::Post,
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(body.to_string().into_bytes()),
    };
    let status = send(&request)?.status;
    log::info(&format!("{} {}: the webhook answered {status}", event.event_type, event.id));
    if !(200..300).contains(&status) {
        return Err(PluginError::upstream(format!("the webhook answered HTTP {status}")));
    }
    Ok(Outcome { data: Some(json!({ "delivered": true, "status": status }).to_string()), actions: vec![] })
}

nexus_plugin_sdk::export!(Plugin);
