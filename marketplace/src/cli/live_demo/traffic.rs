//! The events the demo's tenants send, in turn, for as long as the server runs, and the
//! running tally it prints of deliveries and money.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::market::Market;

/// How often each tenant sends an event.
const EVENT_EVERY: Duration = Duration::from_millis(700);

/// Events both tenants send, in turn, for as long as the server runs.
const PRIORITIES: [&str; 3] = ["low", "normal", "high"];

pub(super) fn next_event(n: u64) -> Value {
    let region = ["DE", "FR", "US-CA"][(n % 3) as usize];
    match n % 4 {
        0 | 1 => json!({ "type": "order.created", "payload": {
            "order_id": format!("o-{n}"), "amount_minor": 1000 + (n % 17) * 250, "currency": "EUR", "region": region } }),
        2 => json!({ "type": "ticket.created", "payload": {
            "ticket_id": format!("T-{n}"), "subject": "Refund", "priority": PRIORITIES[(n % 3) as usize],
            "body": format!("call me on +49 30 1234 {n:04} or mail jo{n}@example.com") } }),
        _ => json!({ "type": "order.refunded", "payload": {
            "order_id": format!("o-{}", n - 2), "amount_minor": 1000, "currency": "EUR", "region": region } }),
    }
}

pub(super) async fn traffic(url: String, tenants: Vec<(String, String)>, market: Arc<Market>) {
    let client = reqwest::Client::new();
    let mut ticker = tokio::time::interval(EVENT_EVERY);
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for n in 0u64.. {
        ticker.tick().await;
        let (tenant, token) = &tenants[(n % tenants.len() as u64) as usize];
        let sent = client.post(format!("{url}/v1/events")).bearer_auth(token).json(&next_event(n)).send().await;
        match sent {
            Ok(response) => {
                let receipt: Value = response.json().await.unwrap_or_default();
                for delivery in receipt["deliveries"].as_array().into_iter().flatten() {
                    let key = format!(
                        "{} {}",
                        delivery["plugin"].as_str().unwrap_or("?"),
                        delivery["outcome"].as_str().unwrap_or("?")
                    );
                    *outcomes.entry(key).or_default() += 1;
                }
            }
            Err(error) => tracing::warn!(%error, %tenant, "demo event not sent"),
        }
        if n % 20 == 19 {
            let recorded: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM invocations").fetch_one(&market.db.pool).await.unwrap_or(0);
            let tally: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!("events sent {}, invocations recorded {recorded} — {}", n + 1, tally.join(", "));
            for totals in crate::billing::views::totals(&market).await.unwrap_or_default() {
                println!("  money {}: {}", totals.currency, totals.describe());
            }
        }
    }
}
