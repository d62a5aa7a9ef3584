//! A tenant's whole journey through the API: consent, install, settings and secrets,
//! events, invocation records, the circuit breaker, upgrades with and without new
//! capabilities, uninstall. On SQLite and PostgreSQL.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::common::{Env, consent_for, on_both};

#[test]
fn install_needs_consent_to_every_requested_capability_and_host() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tenant = env.tenant("globex").await;
        let (status, preview) = env.get("/v1/catalog/nexus-labs/chat-notifier/consent", &tenant).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(preview["version"], "0.1.0");
        let capabilities: Vec<&str> =
            preview["capabilities"].as_array().unwrap().iter().map(|c| c["capability"].as_str().unwrap()).collect();
        assert_eq!(capabilities, ["log", "config", "secrets", "http", "usage"]);
        assert_eq!(preview["capabilities"][3]["hosts"][0]["host"], "hooks.slack.com");
        assert_eq!(preview["capabilities"][3]["hosts"][0]["reason"], "Slack incoming webhooks");

        // No consent, then consent without the hosts: refused with what to consent to.
        let (status, body) = env.post("/v1/installs", &tenant, json!({ "plugin": "nexus-labs/chat-notifier" })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("consent_required")));
        assert_eq!(body["error"]["details"], preview);
        let partial = json!({ "capabilities": ["log", "config", "secrets", "http", "usage"], "hosts": [] });
        let (status, body) = env
            .post("/v1/installs", &tenant, json!({ "plugin": "nexus-labs/chat-notifier", "consent": partial }))
            .await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("consent_required")));
        let (status, listed) = env.get("/v1/installs", &tenant).await;
        assert_eq!((status, listed), (StatusCode::OK, json!([])), "nothing half-installed");

        let body = json!({
            "plugin": "nexus-labs/chat-notifier", "consent": consent_for(&preview), "plan": "per-message",
            "config": { "channel": "#sales" }, "secrets": { "webhook_url": "https://hooks.slack.com/services/T0/B0/SECRET" },
        });
        let (status, install) = env.post("/v1/installs", &tenant, body).await;
        assert_eq!(status, StatusCode::CREATED, "{install}");
        assert_eq!(install["status"], "active");
        assert_eq!(install["plan"], "per-message");
        assert_eq!(install["version"], "0.1.0");
        assert_eq!(install["secret_names"], json!(["webhook_url"]));
        assert_eq!(install["grants"]["allowed_hosts"], json!(["hooks.slack.com", "*.webhook.office.com"]));
        assert!(!install.to_string().contains("SECRET"), "secrets are never returned");
        let sealed: Option<String> =
            sqlx::query_scalar("SELECT secrets_sealed FROM installs").fetch_one(&env.market.db.pool).await.unwrap();
        assert!(sealed.as_deref().is_some_and(|s| s.starts_with("v1:") && !s.contains("SECRET")));

        let (status, body) = env
            .post(
                "/v1/installs",
                &tenant,
                json!({ "plugin": "nexus-labs/chat-notifier", "consent": consent_for(&preview) }),
            )
            .await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("already_installed")));
        let (_, listing) = env.get("/v1/catalog/nexus-labs/chat-notifier", &tenant).await;
        assert_eq!(listing["install_count"], 1);
    });
}

fn outcomes(receipt: &Value) -> Vec<(String, String)> {
    receipt["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["plugin"].as_str().unwrap().to_string(), d["outcome"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn events_reach_every_install_that_handles_them_and_are_recorded() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tenant = env.tenant("globex").await;
        let other = env.tenant("initech").await;
        let echo = env.install(&tenant, "nexus-labs/echo", json!({ "config": { "prefix": "> " } })).await;
        let tax = env.install(&tenant, "nexus-labs/tax-calculator", json!({ "config": { "rates": "DE=1900" } })).await;
        env.install(&other, "nexus-labs/echo", json!({})).await;

        let order = json!({ "order_id": "o-1", "amount_minor": 1000, "currency": "EUR", "region": "DE" });
        let event = json!({ "id": "evt-1", "type": "order.created", "payload": order });
        let (status, receipt) = env.post("/v1/events", &tenant, event).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["event_id"], "evt-1");
        let mut got = outcomes(&receipt);
        got.sort();
        assert_eq!(got.len(), 2, "{receipt}");
        assert_eq!(got[0], ("nexus-labs/echo".to_string(), "ok".to_string()));
        assert_eq!(got[1], ("nexus-labs/tax-calculator".to_string(), "ok".to_string()));
        let delivery = |receipt: &Value, install: &Value| {
            receipt["deliveries"].as_array().unwrap().iter().find(|d| d["install"] == install["id"]).unwrap().clone()
        };
        assert_eq!(delivery(&receipt, &echo)["data"], format!("> {order}"));
        let taxed: Value = serde_json::from_str(delivery(&receipt, &tax)["data"].as_str().unwrap()).unwrap();
        assert_eq!((taxed["tax_minor"].as_i64(), taxed["region_tax_total_minor"].as_i64()), (Some(190), Some(190)));

        // The running total lives in the SQL KV store; a replayed event id does not move it.
        let second = json!({ "id": "evt-2", "type": "order.created", "payload": order });
        let (_, receipt) = env.post("/v1/events", &tenant, second.clone()).await;
        let taxed: Value = serde_json::from_str(delivery(&receipt, &tax)["data"].as_str().unwrap()).unwrap();
        assert_eq!(taxed["region_tax_total_minor"].as_i64(), Some(380));
        let (_, receipt) = env.post("/v1/events", &tenant, second).await;
        let taxed: Value = serde_json::from_str(delivery(&receipt, &tax)["data"].as_str().unwrap()).unwrap();
        assert_eq!((taxed["region_tax_total_minor"].as_i64(), taxed["replayed"].as_bool()), (Some(380), Some(true)));

        // Not handled by anything: no deliveries.
        let (status, receipt) = env.post("/v1/events", &tenant, json!({ "type": "nobody.cares", "payload": {} })).await;
        assert_eq!(status, StatusCode::OK);
        assert!(receipt["deliveries"].as_array().is_some_and(|d| d.len() == 1), "echo handles every type: {receipt}");

        // The other tenant's echo saw nothing.
        let (_, others) = env.get("/v1/installs", &other).await;
        let other_echo = others[0]["id"].as_str().unwrap();
        let (_, history) = env.get(&format!("/v1/installs/{other_echo}/invocations"), &other).await;
        assert_eq!(history["total"], 0);

        let (status, history) =
            env.get(&format!("/v1/installs/{}/invocations", echo["id"].as_str().unwrap()), &tenant).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(history["total"], 4);
        let record = &history["items"][3];
        assert_eq!(record["event_id"], "evt-1");
        assert_eq!(record["event_type"], "order.created");
        assert_eq!(record["outcome"], "ok");
        assert_eq!(record["version"], "0.1.0");
        assert!(record["fuel_used"].as_i64().unwrap() > 0);
        let (_, history) = env.get(&format!("/v1/installs/{}/invocations", tax["id"].as_str().unwrap()), &tenant).await;
        assert_eq!(history["items"][2]["usage"], json!({ "tax-calculations": 1 }));
        assert_eq!(history["items"][2]["kv_writes"], 2);

        // Direct invocation of one install, whatever the type.
        let (status, delivery) = env
            .post(
                &format!("/v1/installs/{}/invoke", echo["id"].as_str().unwrap()),
                &tenant,
                json!({ "type": "x.y", "payload": "hi" }),
            )
            .await;
        assert_eq!(
            (status, delivery["outcome"].as_str(), delivery["data"].as_str()),
            (StatusCode::OK, Some("ok"), Some("> \"hi\""))
        );
    });
}
