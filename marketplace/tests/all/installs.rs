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
        assert_eq!(
            (status, &listed["items"], &listed["total"]),
            (StatusCode::OK, &json!([]), &json!(0)),
            "nothing half-installed"
        );

        // The settings it declares are in the preview; a required one must be given.
        assert_eq!(
            preview["settings"][0],
            json!({ "name": "webhook-url", "description": "The incoming webhook URL your chat gives you (Slack or Teams)",
                    "secret": true, "required": true })
        );
        let names: Vec<&str> =
            preview["settings"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["webhook-url", "channel", "username"]);
        for secrets in
            [json!({}), json!({ "webhook-url": "  " }), json!({ "webhook_url": "https://hooks.slack.com/x" })]
        {
            let body =
                json!({ "plugin": "nexus-labs/chat-notifier", "consent": consent_for(&preview), "secrets": secrets });
            let (status, body) = env.post("/v1/installs", &tenant, body).await;
            assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_settings")));
            assert_eq!(
                body["error"]["message"],
                "nexus-labs/chat-notifier@0.1.0 needs the secret `webhook-url` (The incoming webhook URL your chat gives you \
                 (Slack or Teams)); send it in `secrets`"
            );
        }
        assert_eq!(env.get("/v1/installs", &tenant).await.1["total"], 0, "nothing installed");

        let body = json!({
            "plugin": "nexus-labs/chat-notifier", "consent": consent_for(&preview), "plan": "per-message",
            "config": { "channel": "#sales" }, "secrets": { "webhook-url": "https://hooks.slack.com/services/T0/B0/SECRET" },
        });
        let (status, install) = env.post("/v1/installs", &tenant, body).await;
        assert_eq!(status, StatusCode::CREATED, "{install}");
        assert_eq!(install["status"], "active");
        assert_eq!(install["plan"], "per-message");
        assert_eq!(install["version"], "0.1.0");
        assert_eq!(install["secret_names"], json!(["webhook-url"]));
        assert_eq!(install["grants"]["allowed_hosts"], json!(["hooks.slack.com", "*.webhook.office.com"]));
        assert!(!install.to_string().contains("SECRET"), "secrets are never returned");
        let sealed: Option<String> =
            sqlx::query_scalar("SELECT secrets_sealed FROM installs").fetch_one(&env.market.db.pool).await.unwrap();
        assert!(sealed.as_deref().is_some_and(|s| s.starts_with("v1:") && !s.contains("SECRET")));

        let (status, body) = env
            .post(
                "/v1/installs",
                &tenant,
                json!({ "plugin": "nexus-labs/chat-notifier", "consent": consent_for(&preview),
                        "secrets": { "webhook-url": "https://hooks.slack.com/services/T0/B0/OTHER" } }),
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
        let line = json!({ "kind": "invoice.tax-line",
            "payload": r#"{"currency":"EUR","direction":"charged","order_id":"o-1","region":"DE","tax_minor":190}"# });
        assert_eq!(delivery(&receipt, &tax)["actions"], json!([line]), "{receipt}");
        // Sent again, the event has already applied to both installs: nothing runs, the
        // applied invocations are the answer, with what they answered the first time.
        let (_, again) = env.post("/v1/events", &tenant, second).await;
        for install in [&echo, &tax] {
            let mut first = delivery(&receipt, install);
            first["replayed"] = json!(true);
            assert_eq!(delivery(&again, install), first);
            // And the record says the same.
            let (id, invocation) = (install["id"].as_str().unwrap(), first["invocation"].as_str().unwrap());
            let (status, record) = env.get(&format!("/v1/installs/{id}/invocations/{invocation}"), &tenant).await;
            assert_eq!(status, StatusCode::OK, "{record}");
            assert_eq!((&record["data"], &record["actions"]), (&first["data"], &first["actions"]), "{record}");
        }
        let third = json!({ "id": "evt-3", "type": "order.created", "payload": order });
        let (_, receipt) = env.post("/v1/events", &tenant, third).await;
        let taxed: Value = serde_json::from_str(delivery(&receipt, &tax)["data"].as_str().unwrap()).unwrap();
        assert_eq!(taxed["region_tax_total_minor"].as_i64(), Some(570), "the resend did not move the total");

        // Not handled by anything: no deliveries.
        let (status, receipt) = env.post("/v1/events", &tenant, json!({ "type": "nobody.cares", "payload": {} })).await;
        assert_eq!(status, StatusCode::OK);
        assert!(receipt["deliveries"].as_array().is_some_and(|d| d.len() == 1), "echo handles every type: {receipt}");

        // The other tenant's echo saw nothing.
        let (_, others) = env.get("/v1/installs", &other).await;
        let other_echo = others["items"][0]["id"].as_str().unwrap();
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
                json!({ "type": "x.y", "payload": { "say": "hi" } }),
            )
            .await;
        assert_eq!(
            (status, delivery["outcome"].as_str(), delivery["data"].as_str()),
            (StatusCode::OK, Some("ok"), Some("> {\"say\":\"hi\"}"))
        );
        // The payload is a JSON object, as the schema says.
        for payload in [json!("hi"), json!(1), json!(null), json!([1])] {
            let (status, body) = env.post("/v1/events", &tenant, json!({ "type": "x.y", "payload": payload })).await;
            assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_event")));
            assert_eq!(body["error"]["message"], "`payload` must be a JSON object");
        }
    });
}

fn echo_manifest(version: &str, extra: &str) -> String {
    let (_, _, text) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == "echo").unwrap();
    let text = text.replacen("version = \"0.1.0\"", &format!("version = \"{version}\""), 1);
    // Extra capability tables go before the pricing tables.
    text.replacen("[[pricing]]", &format!("{extra}\n[[pricing]]"), 1)
}

#[test]
fn installs_follow_new_versions_unless_they_ask_for_more() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/echo", json!({ "requirement": "^0.1" })).await;
        let id = install["id"].as_str().unwrap().to_string();
        let uri = format!("/v1/installs/{id}");

        // Same capabilities, within ^0.1: taken automatically.
        env.publish_manifest(nexus_sample_plugins::ECHO, &echo_manifest("0.1.1", "")).await.unwrap();
        assert_eq!(env.get(&uri, &tenant).await.1["version"], "0.1.1");
        // Outside the requirement: ignored.
        env.publish_manifest(nexus_sample_plugins::ECHO, &echo_manifest("0.2.0", "")).await.unwrap();
        assert_eq!(env.get(&uri, &tenant).await.1["version"], "0.1.1");

        // More capabilities: waits for consent, the old version keeps running.
        let kv = "[capabilities.kv]\nreason = \"Remembers the last payload\"\n";
        env.publish_manifest(nexus_sample_plugins::ECHO, &echo_manifest("0.1.2", kv)).await.unwrap();
        let current = env.get(&uri, &tenant).await.1;
        assert_eq!(current["version"], "0.1.1");
        assert_eq!(current["pending_upgrade"]["version"], "0.1.2");
        assert_eq!(current["pending_upgrade"]["reason"], "0.1.2 asks for more than you granted: kv");
        let (_, receipt) = env.post("/v1/events", &tenant, json!({ "type": "a.b", "payload": { "n": 1 } })).await;
        assert_eq!(receipt["deliveries"][0]["version"], "0.1.1");

        let (status, body) = env
            .post(&format!("/v1/installs/{id}/upgrade"), &tenant, json!({ "consent": { "capabilities": ["config"] } }))
            .await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("consent_required")));
        let answer = json!({ "consent": { "capabilities": ["config", "kv"] } });
        let (status, upgraded) = env.post(&format!("/v1/installs/{id}/upgrade"), &tenant, answer).await;
        assert_eq!(status, StatusCode::OK, "{upgraded}");
        assert_eq!(upgraded["version"], "0.1.2");
        assert_eq!(upgraded["pending_upgrade"], Value::Null);
        assert_eq!(upgraded["grants"]["capabilities"], json!(["config", "kv"]));

        // Yanking the running version moves the install to the best one left in its
        // requirement; yanking everything in it leaves the install where it is.
        let yank = |version: &str| format!("/v1/plugins/nexus-labs/echo/versions/{version}/yank");
        let (status, _) = env.post(&yank("0.1.2"), &env.publisher, json!({ "reason": "oops" })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(env.get(&uri, &tenant).await.1["version"], "0.1.1");
        for version in ["0.1.0", "0.1.1"] {
            env.post(&yank(version), &env.publisher, json!({ "reason": "all bad" })).await;
        }
        assert_eq!(env.get(&uri, &tenant).await.1["version"], "0.1.1");

        let (_, audit) = env.get(&format!("/v1/audit?target={id}"), &env.operator).await;
        let actions: Vec<&str> =
            audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(
            actions,
            [
                "install.version_changed",
                "install.upgrade_approved",
                "install.upgrade_pending",
                "install.version_changed",
                "install.created"
            ]
        );
    });
}

#[test]
fn settings_secrets_and_uninstall_keep_history_but_not_data() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tenant = env.tenant("globex").await;
        let other = env.tenant("initech").await;
        let install = env
            .install(
                &tenant,
                "nexus-labs/tax-calculator",
                json!({ "config": { "rates": "DE=1900" }, "secrets": { "api": "s3cr3t-value" } }),
            )
            .await;
        let id = install["id"].as_str().unwrap();
        let order = json!({ "order_id": "o-1", "amount_minor": 1000, "currency": "EUR", "region": "DE" });
        let (_, receipt) = env.post("/v1/events", &tenant, json!({ "type": "order.created", "payload": order })).await;
        assert_eq!(receipt["deliveries"][0]["outcome"], "ok");

        // Another tenant can neither see nor change it.
        let (status, _) = env.get(&format!("/v1/installs/{id}"), &other).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = env.call("PATCH", &format!("/v1/installs/{id}"), Some(&other), Some("{\"config\":{}}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let update = json!({ "config": { "rates": "DE=700" }, "secrets": { "api": null, "token": "t0ken-value" } });
        let (status, updated) =
            env.call("PATCH", &format!("/v1/installs/{id}"), Some(&tenant), Some(&update.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["config"], json!({ "rates": "DE=700" }));
        assert_eq!(updated["secret_names"], json!(["token"]));
        let (_, audit) = env.get(&format!("/v1/audit?target={id}"), &env.operator).await;
        let text = audit.to_string();
        assert!(!text.contains("s3cr3t-value") && !text.contains("t0ken-value"), "{text}");
        assert!(text.contains("install.secrets_changed"));

        let (status, gone) = env.call("DELETE", &format!("/v1/installs/{id}"), Some(&tenant), None).await;
        assert_eq!((status, gone["status"].as_str()), (StatusCode::OK, Some("uninstalled")));
        assert_eq!((gone["config"].clone(), gone["secret_names"].clone()), (json!({}), json!([])));
        let (_, live) = env.get("/v1/installs", &tenant).await;
        assert_eq!(live["items"], json!([]));
        let (_, all) = env.get("/v1/installs?all=true", &tenant).await;
        assert_eq!(all["items"][0]["id"], id);
        let (_, history) = env.get(&format!("/v1/installs/{id}/invocations"), &tenant).await;
        assert_eq!(history["total"], 1);
        let kv_rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM kv_entries").fetch_one(&env.market.db.pool).await.unwrap();
        assert_eq!(kv_rows, 0);
        let (_, listing) = env.get("/v1/catalog/nexus-labs/tax-calculator", &tenant).await;
        assert_eq!(listing["install_count"], 0);
        // Installing again starts afresh.
        env.install(&tenant, "nexus-labs/tax-calculator", json!({})).await;
    });
}

#[test]
fn the_sql_kv_store_refuses_a_commit_from_a_stale_revision() {
    use nexus_host::capability::kv::{KvError, KvQuota};
    use nexus_host::{KvScope, KvStore};
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let kv = nexus_marketplace::kv::SqlKv::new(env.market.db.clone());
        let scope = KvScope { tenant: "t".into(), install: "i".into() };
        let quota = KvQuota { keys: 10, bytes: 1000 };
        let write = |v: &str| vec![("total".to_string(), Some(v.as_bytes().to_vec()))];
        let base = kv.revision(&scope).await.unwrap();
        assert_eq!(base, Some(0));
        kv.commit(&scope, write("1"), quota, base).await.unwrap();
        // A second invocation that read at revision 0 (on another node) is refused.
        assert!(matches!(kv.commit(&scope, write("2"), quota, base).await, Err(KvError::Conflict)));
        assert_eq!(kv.get(&scope, "total").await.unwrap(), Some(b"1".to_vec()));
        let base = kv.revision(&scope).await.unwrap();
        assert_eq!(base, Some(1));
        kv.commit(&scope, write("12"), quota, base).await.unwrap();
        assert_eq!(kv.get(&scope, "total").await.unwrap(), Some(b"12".to_vec()));
        // The quota is checked in the same transaction.
        let big = vec![("big".to_string(), Some(vec![0u8; 2000]))];
        assert!(matches!(kv.commit(&scope, big, quota, Some(2)).await, Err(KvError::Quota(_))));
        assert_eq!(kv.usage(&scope).await.unwrap().keys, 1);
    });
}

#[test]
fn a_component_that_no_longer_verifies_is_recorded_as_load_failed_not_run() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let key = nexus_registry::SecretKey::generate().unwrap();
        env.market.registry.add_key(&env.publisher_credential, &key.public_key()).await.unwrap();
        let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
        let digest = nexus_host::Digest::of(&component);
        let manifest = echo_manifest("0.1.1", "");
        let id: nexus_registry::PluginId = "nexus-labs/echo".parse().unwrap();
        let message = nexus_registry::signature::signing_message(&id, &"0.1.1".parse().unwrap(), &digest);
        let request = nexus_registry::PublishRequest {
            manifest,
            component,
            claimed_digest: None,
            signature: Some(nexus_registry::SignedBy {
                key_fingerprint: key.public_key().fingerprint(),
                signature: key.sign(&message),
            }),
        };
        env.market.publish(&env.publisher_credential, request).await.unwrap();
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/echo", json!({})).await;
        assert_eq!(install["version"], "0.1.1");

        // The key leaks and is revoked before the component was ever loaded on this node.
        let revoke = format!("/v1/publishers/nexus-labs/keys/{}", key.public_key().fingerprint());
        let (status, _) = env.call("DELETE", &revoke, Some(&env.publisher), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, receipt) = env.post("/v1/events", &tenant, json!({ "type": "a.b", "payload": { "n": 1 } })).await;
        assert_eq!(status, StatusCode::OK, "one broken install does not fail the event");
        let delivery = &receipt["deliveries"][0];
        assert_eq!(delivery["outcome"], "load_failed");
        assert!(delivery["error"].as_str().unwrap().contains("no active signing key of this publisher"), "{delivery}");
        let (_, history) =
            env.get(&format!("/v1/installs/{}/invocations", install["id"].as_str().unwrap()), &tenant).await;
        assert_eq!(
            (history["total"].as_u64(), history["items"][0]["outcome"].as_str()),
            (Some(1), Some("load_failed"))
        );
        let (_, current) = env.get(&format!("/v1/installs/{}", install["id"].as_str().unwrap()), &tenant).await;
        assert_eq!(current["consecutive_failures"], 1);
    });
}

#[test]
fn concurrent_uninstalls_count_once() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/echo", json!({})).await;
        let uri = format!("/v1/installs/{}", install["id"].as_str().unwrap());
        let (first, second) =
            tokio::join!(env.call("DELETE", &uri, Some(&tenant), None), env.call("DELETE", &uri, Some(&tenant), None));
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::NOT_FOUND]);
        let (_, listing) = env.get("/v1/catalog/nexus-labs/echo", &tenant).await;
        assert_eq!(listing["install_count"], 0);
        let (_, audit) = env.get("/v1/audit?action=install.uninstalled", &env.operator).await;
        assert_eq!(audit["total"], 1);
    });
}

#[test]
fn an_invocation_record_keeps_what_the_plugin_wrote_for_its_tenant() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let manifest = "id = \"nexus-labs/panicker\"\nversion = \"0.1.0\"\nsummary = \"Gives up\"\n\
                        categories = [\"developer-tools\"]\nlicense = \"Apache-2.0\"\ncontract = \"1.0\"\n\
                        event-types = [\"*\"]\n\n[[pricing]]\nid = \"free\"\nname = \"Free\"\nmodel = \"free\"\n";
        env.publish_manifest(nexus_sample_plugins::PANICKER, manifest).await.unwrap();
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/panicker", json!({})).await;
        let event = json!({ "type": "a.b", "id": "evt-gives-up", "payload": {} });
        let (status, receipt) = env.post("/v1/events", &tenant, event).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        let (_, history) =
            env.get(&format!("/v1/installs/{}/invocations", install["id"].as_str().unwrap()), &tenant).await;
        let record = &history["items"][0];
        assert_eq!(record["outcome"], "panicked");
        assert_eq!(record["error"], "plugin panicked: plugin gave up on event evt-gives-up");
        let stderr = record["stderr"].as_str().unwrap();
        assert!(stderr.contains("panicked at") && stderr.contains("plugin gave up on event evt-gives-up"), "{stderr}");
        assert_eq!(record["logs"], json!([]));
    });
}

#[test]
fn kept_output_is_bounded() {
    use nexus_host::{Level, LogLine};
    let line = |n: usize| LogLine { at_micros: n as u64, level: Level::Info, message: "x".repeat(1000) };
    let lines: Vec<LogLine> = (0..20).map(line).collect();
    let kept = nexus_marketplace::records::kept_logs(&lines);
    assert_eq!(kept.len(), 8, "8 × 1000 bytes fit in 8 KiB, the ninth does not");
    assert_eq!(kept[7].at_micros, 7);
    let stderr = format!("{}é{}", "a".repeat(5000), "b".repeat(4095));
    let tail = nexus_marketplace::records::kept_stderr(&stderr);
    assert_eq!(tail, "b".repeat(4095), "the cut lands inside é, so it moves past it");
}

#[test]
fn a_tenant_sees_a_newer_major_and_moves_to_it_without_reinstalling() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/echo", json!({})).await;
        let id = install["id"].as_str().unwrap();
        assert_eq!(install["requirement"], "^0.1", "no requirement pins the newest version's major");
        let path = format!("/v1/installs/{id}");
        let secret = json!({ "secrets": { "token": "kept" } }).to_string();
        assert_eq!(env.call("PATCH", &path, Some(&tenant), Some(&secret)).await.0, StatusCode::OK);

        env.publish_sample("echo", nexus_sample_plugins::ECHO, &echo_manifest("0.2.0", ""), "0.2.0").await;
        let (_, shown) = env.get(&path, &tenant).await;
        assert_eq!((shown["version"].as_str(), shown["newer_version"].as_str()), (Some("0.1.0"), Some("0.2.0")));

        // A requirement nothing satisfies is refused and changes nothing.
        let (status, refused) =
            env.call("PATCH", &path, Some(&tenant), Some(&json!({ "requirement": "^9" }).to_string())).await;
        assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_matching_version")));
        let (status, moved) =
            env.call("PATCH", &path, Some(&tenant), Some(&json!({ "requirement": "^0.2" }).to_string())).await;
        assert_eq!(status, StatusCode::OK, "{moved}");
        assert_eq!(
            (moved["id"].as_str(), moved["version"].as_str(), moved["requirement"].as_str()),
            (Some(id), Some("0.2.0"), Some("^0.2"))
        );
        assert_eq!((moved["newer_version"].clone(), moved["secret_names"].clone()), (Value::Null, json!(["token"])));
    });
}
