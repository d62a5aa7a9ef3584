//! Queued events survive the server being killed (issue #23): a real `nexus serve` queues
//! events (`Prefer: respond-async`), is killed with SIGKILL where its worker stops (after
//! claiming deliveries, or after running them and before recording that), and restarts.
//! Every event then applies exactly once: one applied invocation per event, its KV effect
//! once, every delivery `applied`, none run a second time; and the tenant's webhook receiver
//! (on loopback) gets each event's action at least once, under one message id.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::{RealMarket, runtime};
use super::webhooks::Receiver;

/// Plugins' outbound calls and webhooks may reach the receiver on loopback.
const LOOPBACK: [&str; 2] = ["--allow-private-network", "127.0.0.0/8"];

const EVENTS: usize = 40;

/// A tenant with tax-calculator installed and a webhook endpoint for its actions, on a
/// server that is stopped again.
async fn tenant_with_tax_calculator(market: &RealMarket, client: &reqwest::Client, hook: &str) -> (String, String) {
    let server = market.serve(&LOOPBACK, &[]);
    market.publish(&server.url, "tax-calculator");
    let consent = json!({ "capabilities": ["log", "config", "kv", "usage"], "hosts": [] });
    let (tenant, install) = market
        .tenant_with_install(&server.url, "globex", "nexus-labs/tax-calculator", consent, json!({ "rates": "DE=1900" }))
        .await;
    let endpoint = json!({ "url": hook, "kinds": ["plugin.action"] });
    let created =
        client.post(format!("{}/v1/webhooks", server.url)).bearer_auth(&tenant).json(&endpoint).send().await.unwrap();
    assert_eq!(created.status().as_u16(), 201, "{}", created.text().await.unwrap());
    (tenant, install)
}

fn killed_while_delivering(point: &str) {
    runtime().block_on(async {
        let market = RealMarket::new();
        let client = reqwest::Client::new();
        let receiver = Receiver::start().await;
        let (tenant, install) = tenant_with_tax_calculator(&market, &client, &receiver.url).await;

        let mut server = market.serve(&LOOPBACK, &[("NEXUS_TEST_PAUSE_AT", point)]);
        for n in 0..EVENTS {
            let order =
                json!({ "order_id": format!("o-{n}"), "amount_minor": 1000, "currency": "EUR", "region": "DE" });
            let event = json!({ "id": format!("evt-{n}"), "type": "order.created", "payload": order });
            let response = client
                .post(format!("{}/v1/events", server.url))
                .bearer_auth(&tenant)
                .header("prefer", "respond-async")
                .json(&event)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 202, "{}", response.text().await.unwrap());
        }
        server.wait_for_line(&format!("paused at {point}"));
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();

        // The restarted server's worker takes over what the killed one had claimed.
        let restarted = market.serve(&LOOPBACK, &[]);
        let started = Instant::now();
        loop {
            let page: Value = client
                .get(format!("{}/v1/deliveries?state=applied&per_page=1", restarted.url))
                .bearer_auth(&tenant)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if page["total"].as_u64() == Some(EVENTS as u64) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "not every delivery applied: {page}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every action reached the receiver, each under one message id.
        let ids = loop {
            let ids: std::collections::BTreeSet<String> = receiver.received().into_iter().map(|r| r.id).collect();
            if ids.len() >= EVENTS {
                break ids;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{} of {EVENTS} actions posted", ids.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(ids.len(), EVENTS, "one message id per action: {ids:?}");
        drop(restarted);

        let db = nexus_registry::Db::sqlite_in(&market.data).await.unwrap();
        let ran: Vec<(String, String)> =
            sqlx::query_as("SELECT event_id, outcome FROM invocations WHERE install_id = $1 ORDER BY event_id")
                .bind(&install)
                .fetch_all(&db.pool)
                .await
                .unwrap();
        let mut expected: Vec<(String, String)> = (0..EVENTS).map(|n| (format!("evt-{n}"), "ok".to_string())).collect();
        expected.sort();
        assert_eq!(ran, expected, "each event ran once and applied");
        let total: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM kv_entries WHERE install_id = $1 AND key = 'total/DE/EUR'")
                .bind(&install)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(String::from_utf8(total).unwrap(), (EVENTS * 190).to_string());
        let (applied, taken_over): (i64, i64) = sqlx::query_as(
            "SELECT CAST(SUM(CASE WHEN state = 'applied' THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN attempts = 2 THEN 1 ELSE 0 END) AS BIGINT) FROM deliveries",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(applied, EVENTS as i64);
        assert!(taken_over >= 1, "the killed worker's claims were taken over");
        db.close().await;
    })
}

#[test]
fn deliveries_claimed_by_a_killed_server_run_once_after_the_restart() {
    killed_while_delivering("deliveries.after_claim");
}

#[test]
fn deliveries_run_by_a_killed_server_are_not_run_again_after_the_restart() {
    killed_while_delivering("deliveries.before_settle");
}
