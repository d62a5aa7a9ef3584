//! Money-moving requests from many clients at once, on both backends: every purchase answers
//! 201 with its install active and its one charge collected, a retry under the same key
//! (sent while the first still runs) gets the first answer, a declined card leaves the
//! install `pending_payment` and out of event delivery until the charge is collected, and
//! the ledger balances. Exact counts, no timings.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nexus_marketplace::billing::{BillingConfig, DAY_MS, ManualClock, SandboxProvider, Scripted};
use serde_json::{Value, json};

use super::common::{Env, Options, consent_for, on_both};

/// 2026-11-01T00:00:00Z.
const NOV_1: i64 = 1_793_491_200_000;
/// Tenants buying at once.
const BUYERS: usize = 24;

struct Market {
    env: Arc<Env>,
    clock: Arc<ManualClock>,
    sandbox: Arc<SandboxProvider>,
}

impl Market {
    async fn new(postgres: bool) -> Self {
        let clock = Arc::new(ManualClock::at(NOV_1));
        let sandbox = Arc::new(SandboxProvider::default());
        let billing = BillingConfig::sandboxed(clock.clone(), sandbox.clone());
        let env = Arc::new(Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await);
        let once = json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time", "currency": "EUR", "price_minor": 4900 });
        let (status, body) = env.post("/v1/plugins/nexus-labs/echo/plans", &env.publisher, once).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let monthly = json!({ "key": "pro", "name": "Pro", "model": "subscription", "currency": "USD",
                              "price_minor": 900, "interval": "month" });
        let (status, body) = env.post("/v1/plugins/nexus-labs/pii-redactor/plans", &env.publisher, monthly).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Self { env, clock, sandbox }
    }
}

/// A keyed `POST`: status, whether it was a replay, body.
async fn keyed(env: &Env, uri: &str, token: &str, key: &str, body: &Value) -> (StatusCode, bool, Value) {
    let request = Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, headers, bytes) = env.raw(request).await;
    (status, headers.contains_key("idempotent-replayed"), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn purchase(env: &Env, token: &str, plugin: &str, plan: &str) -> Value {
    let (status, consent) = env.get(&format!("/v1/catalog/{plugin}/consent"), token).await;
    assert_eq!(status, StatusCode::OK, "{consent}");
    json!({ "plugin": plugin, "plan": plan, "consent": consent_for(&consent) })
}

#[test]
fn many_purchases_at_once_each_answer_once_and_charge_once() {
    on_both(|postgres| async move {
        let market = Market::new(postgres).await;
        let env = &market.env;
        let mut tokens = Vec::new();
        for n in 0..BUYERS {
            tokens.push(env.tenant(&format!("buyer-{n}")).await);
        }
        // Every buyer buys echo (one-time) and pii-redactor (monthly) at once; every other
        // buyer's client also retries each purchase under the same key while it runs.
        let mut sends = tokio::task::JoinSet::new();
        for (n, token) in tokens.iter().enumerate() {
            for (plugin, plan) in [("nexus-labs/echo", "lifetime"), ("nexus-labs/pii-redactor", "pro")] {
                let body = purchase(env, token, plugin, plan).await;
                let copies = if n % 2 == 0 { 2 } else { 1 };
                for _ in 0..copies {
                    let (env, token, body) = (env.clone(), token.clone(), body.clone());
                    let key = format!("buy-{n}-{plan}");
                    sends.spawn(async move { (n, plan, keyed(&env, "/v1/installs", &token, &key, &body).await) });
                }
            }
        }
        let mut answers = BTreeMap::<(usize, &str), Vec<(bool, Value)>>::new();
        while let Some(answer) = sends.join_next().await {
            let (n, plan, (status, replayed, body)) = answer.unwrap();
            assert_eq!(status, StatusCode::CREATED, "buyer {n} {plan}: {body}");
            answers.entry((n, plan)).or_default().push((replayed, body));
        }
        assert_eq!(answers.len(), BUYERS * 2);
        for ((n, plan), copies) in &answers {
            // One answer ran; its copies replayed it byte for byte.
            assert_eq!(copies.iter().filter(|(replayed, _)| !replayed).count(), 1, "buyer {n} {plan}");
            assert!(copies.iter().all(|(_, body)| *body == copies[0].1), "buyer {n} {plan}: {copies:?}");
            assert_eq!(copies[0].1["status"], "active", "paid before it answered: {}", copies[0].1);
        }

        // One charge per purchase, every one collected, at its price.
        let mut collected = BTreeMap::<(String, i64), usize>::new();
        for n in 0..BUYERS {
            let (status, page) = env.get(&format!("/v1/charges?tenant=buyer-{n}&per_page=100"), &env.operator).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            for charge in page["items"].as_array().unwrap() {
                assert_eq!(charge["status"], "collected", "{charge}");
                let key = (charge["currency"].as_str().unwrap().to_string(), charge["amount_minor"].as_i64().unwrap());
                *collected.entry(key).or_default() += 1;
            }
        }
        assert_eq!(
            collected,
            BTreeMap::from([(("EUR".to_string(), 4900), BUYERS), (("USD".to_string(), 900), BUYERS)])
        );
        let (status, report) = env.get("/v1/ledger/verify", &env.operator).await;
        assert_eq!((status, &report["ok"]), (StatusCode::OK, &json!(true)), "{report}");

        // A second purchase of what a buyer has, under a new key, is refused and keeps nothing:
        // the same key again runs again (and is refused again), not replayed.
        let body = purchase(env, &tokens[0], "nexus-labs/echo", "lifetime").await;
        for _ in 0..2 {
            let (status, replayed, answer) = keyed(env, "/v1/installs", &tokens[0], "again", &body).await;
            assert_eq!(
                (status, replayed, answer["error"]["code"].as_str()),
                (StatusCode::CONFLICT, false, Some("already_installed"))
            );
        }
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE key = 'again'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(kept, 0);
    })
}

#[test]
fn a_declined_purchase_waits_for_payment_and_receives_no_events() {
    on_both(|postgres| async move {
        let market = Market::new(postgres).await;
        let env = &market.env;
        let token = env.tenant("globex").await;
        market.sandbox.script(&"globex".parse().unwrap(), [Scripted::Refuse("card_declined".into())]);
        let body = purchase(env, &token, "nexus-labs/echo", "lifetime").await;
        let (status, _, install) = keyed(env, "/v1/installs", &token, "k1", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{install}");
        assert_eq!(install["status"], "pending_payment", "{install}");
        let id = install["id"].as_str().unwrap();

        // Events skip it, saying why; a direct invocation is refused.
        let event = json!({ "id": "evt-1", "type": "echo", "payload": { "n": 1 } });
        let (status, receipt) = env.post("/v1/events", &token, event).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["deliveries"], json!([]), "{receipt}");
        assert_eq!(receipt["skipped"][0]["install"], id, "{receipt}");
        assert!(receipt["skipped"][0]["reason"].as_str().unwrap().starts_with("pending_payment"), "{receipt}");
        let (status, refused) =
            env.post(&format!("/v1/installs/{id}/invoke"), &token, json!({ "type": "echo", "payload": {} })).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("install_pending_payment"))
        );

        // The billing run's retry collects it, and the install runs.
        market.clock.set(NOV_1 + DAY_MS);
        let (status, report) = env.post("/v1/billing/runs", &env.operator, json!({})).await;
        assert_eq!((status, report["collected"].as_i64()), (StatusCode::OK, Some(1)), "{report}");
        let (_, install) = env.get(&format!("/v1/installs/{id}"), &token).await;
        assert_eq!(install["status"], "active", "{install}");
        let event = json!({ "id": "evt-2", "type": "echo", "payload": { "n": 2 } });
        let (status, receipt) = env.post("/v1/events", &token, event).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["deliveries"][0]["outcome"], "ok", "{receipt}");
    })
}

#[test]
fn a_plan_change_retried_at_once_under_one_key_changes_once() {
    on_both(|postgres| async move {
        let market = Market::new(postgres).await;
        let env = &market.env;
        let token = env.tenant("globex").await;
        let body = purchase(env, &token, "nexus-labs/pii-redactor", "pro").await;
        let (status, _, install) = keyed(env, "/v1/installs", &token, "buy", &body).await;
        assert_eq!((status, install["status"].as_str()), (StatusCode::CREATED, Some("active")), "{install}");
        let id = install["id"].as_str().unwrap().to_string();

        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (env, token, uri) = (env.clone(), token.clone(), format!("/v1/installs/{id}/plan"));
            sends.spawn(async move {
                let request = Request::put(uri)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .header("idempotency-key", "upgrade")
                    .body(Body::from(json!({ "plan": "team" }).to_string()))
                    .unwrap();
                let (status, headers, bytes) = env.raw(request).await;
                (status, headers.contains_key("idempotent-replayed"), String::from_utf8(bytes).unwrap())
            });
        }
        let mut answers = Vec::new();
        while let Some(answer) = sends.join_next().await {
            answers.push(answer.unwrap());
        }
        assert!(
            answers.iter().all(|(status, _, body)| *status == StatusCode::OK && *body == answers[0].2),
            "{answers:?}"
        );
        assert_eq!(answers.iter().filter(|(_, replayed, _)| !replayed).count(), 1, "{answers:?}");
        let changed: Value = serde_json::from_str(&answers[0].2).unwrap();
        assert_eq!(changed["plan"], "team");
        let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plan_changes WHERE install_id = $1")
            .bind(&id)
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(changes, 1);
    })
}
