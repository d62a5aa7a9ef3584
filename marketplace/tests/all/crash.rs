//! Exactly once, whatever happens to the process: a real `nexus serve` is killed with
//! SIGKILL while events that write KV are in flight, restarted, and sent every event again.
//! Each event then applied to the install exactly once: one applied invocation row per event
//! id, its KV effect present exactly when its row is, and one billable usage row each.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row;

use super::common::{issued_token as token, nexus, serve};

const EVENTS: usize = 80;

async fn send(client: &reqwest::Client, url: &str, tenant: &str, n: usize) -> reqwest::Result<(u16, Value)> {
    let order = json!({ "order_id": format!("o-{n}"), "amount_minor": 1000, "currency": "EUR", "region": "DE" });
    let event = json!({ "id": format!("evt-{n}"), "type": "order.created", "payload": order });
    let response = client.post(format!("{url}/v1/events")).bearer_auth(tenant).json(&event).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[test]
fn a_killed_server_applies_every_event_exactly_once_after_a_retry() {
    super::common::runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_dir = data.to_str().unwrap();
        let operator = token(&nexus(&["operator", "token", "--data-dir", data_dir], &[]));
        let publisher = token(&nexus(&["publisher", "create", "nexus-labs", "--data-dir", data_dir], &[]));
        let mut server = serve(&data);
        let url = server.url.clone();
        let (_, component, _) =
            nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == "tax-calculator").unwrap();
        let manifest =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-plugins/tax-calculator/nexus.toml");
        let env = [("NEXUS_REGISTRY", url.as_str()), ("NEXUS_TOKEN", publisher.as_str())];
        let published = nexus(&["publish", component, "--manifest", manifest.to_str().unwrap(), "--no-sign"], &env);
        assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));

        let client = reqwest::Client::new();
        let created: Value = client
            .post(format!("{url}/v1/tenants"))
            .bearer_auth(&operator)
            .json(&json!({ "id": "globex", "display_name": "Globex" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tenant = created["secret"].as_str().unwrap().to_string();
        let consent = json!({ "capabilities": ["log", "config", "kv", "usage"], "hosts": [] });
        let install: Value = client
            .post(format!("{url}/v1/installs"))
            .bearer_auth(&tenant)
            .json(
                &json!({ "plugin": "nexus-labs/tax-calculator", "consent": consent, "config": { "rates": "DE=1900" } }),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let install = install["id"].as_str().unwrap().to_string();

        // Eight clients send the events; the server is killed once a quarter have answered.
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut clients = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let (client, url, tenant, answered) = (client.clone(), url.clone(), tenant.clone(), answered.clone());
            clients.spawn(async move {
                for n in (worker..EVENTS).step_by(8) {
                    if send(&client, &url, &tenant, n).await.is_err() {
                        return;
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        while answered.load(std::sync::atomic::Ordering::SeqCst) < EVENTS / 4 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        while clients.join_next().await.is_some() {}
        let before_restart = answered.load(std::sync::atomic::Ordering::SeqCst);
        assert!(before_restart < EVENTS, "the kill landed after every event had answered");

        // Right after the crash, before any retry: KV effects and applied rows match.
        {
            let db = nexus_registry::Db::sqlite_in(&data).await.unwrap();
            let (rows, seen) = (applied_events(&db, &install).await, seen_events(&db, &install).await);
            assert_eq!(rows, seen, "a KV effect without its record, or a record without its effect");
            db.pool.close().await;
        }

        // The client retries everything; each answer is the applied delivery.
        let restarted = serve(&data);
        for n in 0..EVENTS {
            let (status, receipt) = send(&client, &restarted.url, &tenant, n).await.unwrap();
            assert_eq!(status, 200, "{receipt}");
            assert_eq!(receipt["deliveries"][0]["outcome"], "ok", "{receipt}");
        }
        drop(restarted);

        let db = nexus_registry::Db::sqlite_in(&data).await.unwrap();
        let applied: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM invocations WHERE install_id = $1 AND outcome = 'ok' ORDER BY event_id",
        )
        .bind(&install)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let expected: BTreeSet<String> = (0..EVENTS).map(|n| format!("evt-{n}")).collect();
        assert_eq!(applied.len(), EVENTS, "one applied row per event");
        assert_eq!(applied.iter().cloned().collect::<BTreeSet<_>>(), expected);
        let seen: BTreeSet<String> =
            sqlx::query("SELECT key FROM kv_entries WHERE install_id = $1 AND key LIKE 'seen/%'")
                .bind(&install)
                .fetch_all(&db.pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>("key").trim_start_matches("seen/").to_string())
                .collect();
        assert_eq!(seen, expected, "a KV effect exists exactly for each applied row");
        let total: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM kv_entries WHERE install_id = $1 AND key = 'total/DE/EUR'")
                .bind(&install)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(String::from_utf8(total).unwrap(), (EVENTS * 190).to_string());
        let billable: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(u.units), 0) AS BIGINT) FROM invocation_usage u JOIN invocations i ON i.id = u.invocation_id \
             WHERE i.install_id = $1 AND u.meter = 'tax-calculations'",
        )
        .bind(&install)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(billable, EVENTS as i64, "each applied event billed once");
    })
}

async fn applied_events(db: &nexus_registry::Db, install: &str) -> BTreeSet<String> {
    sqlx::query_scalar("SELECT event_id FROM invocations WHERE install_id = $1 AND outcome = 'ok'")
        .bind(install)
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The events the tax calculator's KV says it applied (`seen/<event id>` keys).
async fn seen_events(db: &nexus_registry::Db, install: &str) -> BTreeSet<String> {
    sqlx::query("SELECT key FROM kv_entries WHERE install_id = $1 AND key LIKE 'seen/%'")
        .bind(install)
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("key").trim_start_matches("seen/").to_string())
        .collect()
}
