//! Tenants' webhooks (issue #23): a real HTTP receiver on loopback gets a plugin's actions
//! and the platform's notices, signed as Standard Webhooks describes; the signatures are
//! checked by an independent implementation (the `standardwebhooks` package from PyPI,
//! where installed; `.ci/run` installs it) as well as against the specification's example
//! (a unit test of `webhooks/sender.rs`). Failed posts are retried with the same message id;
//! rotation signs with both secrets during the overlap.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{HeaderMap, StatusCode};
use nexus_host::{Host, HostConfig, OutboundPolicy};
use nexus_marketplace::billing::{BillingConfig, Clock, ManualClock, SandboxProvider, Scripted};
use nexus_marketplace::people::{self, Role};
use nexus_marketplace::runner::worker::MAX_WAIT_MS;
use nexus_marketplace::webhooks::sender;
use serde_json::{Value, json};

use super::common::{Env, Options, on_both};

/// A host whose outbound policy allows loopback (as `--allow-private-network 127.0.0.0/8`
/// would), shared by this file's tests so each component compiles once.
pub(super) fn loopback_host() -> Arc<Host> {
    static HOST: OnceLock<Arc<Host>> = OnceLock::new();
    HOST.get_or_init(|| {
        let outbound = OutboundPolicy::allowing(["127.0.0.0/8".parse().unwrap()]);
        Arc::new(Host::new(HostConfig { outbound, ..HostConfig::default() }).unwrap())
    })
    .clone()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// An HTTP receiver on loopback: records what it gets and answers the statuses queued in
/// `answers` (then 200).
pub(super) struct Receiver {
    pub(super) url: String,
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(super) async fn start() -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let (store, script) = (got.clone(), answers.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let (store, script) = (store.clone(), script.clone());
                async move {
                    let header =
                        |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                    store.lock().unwrap().push(Received {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body,
                    });
                    let status = script.lock().unwrap().pop_front().unwrap_or(200);
                    (StatusCode::from_u16(status).unwrap(), "thanks")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url: format!("http://{address}/hook"), got, answers, _task: task }
    }

    pub(super) fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Checks each message with the `standardwebhooks` package against every secret in
/// `secrets`; skipped with a note where the package is missing (outside CI).
fn verified_independently(messages: &[Received], secrets: &[&str]) {
    let have = std::process::Command::new("python3").args(["-c", "import standardwebhooks"]).status();
    if !have.is_ok_and(|status| status.success()) {
        assert!(std::env::var_os("NEXUS_REQUIRE_GUEST_TOOLCHAINS").is_none(), "standardwebhooks is not installed");
        eprintln!("skipping standardwebhooks: `python3 -m pip install standardwebhooks` to run it");
        return;
    }
    let cases: Vec<Value> = messages
        .iter()
        .flat_map(|m| {
            secrets.iter().map(move |secret| {
                json!({ "secret": secret, "body": m.body, "headers": {
                    "webhook-id": m.id, "webhook-timestamp": m.timestamp, "webhook-signature": m.signature } })
            })
        })
        .collect();
    let script = "import json, sys\nfrom standardwebhooks import Webhook\n\
                  for case in json.load(sys.stdin):\n    Webhook(case['secret']).verify(case['body'], case['headers'])\n\
                  print('verified')\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::to_string(&cases).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "standardwebhooks refused a signature: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "verified");
}

async fn count(env: &Env, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.market.db.pool).await.unwrap()
}

#[test]
fn actions_and_notices_reach_the_tenants_endpoint_signed_retried_and_rotated() {
    on_both(|postgres| async move {
        let clock = Arc::new(ManualClock::at(nexus_registry::db::now_ms()));
        let sandbox = Arc::new(SandboxProvider::default());
        let billing = BillingConfig::sandboxed(clock.clone(), sandbox.clone());
        let options = Options { host: Some(loopback_host()), billing: Some(billing), ..Options::default() };
        let env = Env::with(postgres, options).await;
        let receiver = Receiver::start().await;
        let tenant = env.tenant("globex").await;
        env.install(&tenant, "nexus-labs/tax-calculator", json!({ "config": { "rates": "DE=1900" } })).await;

        // Bad endpoints are refused with the field named, and nothing is written.
        for (url, code) in [
            ("ftp://127.0.0.1/hook", "invalid_webhook_url"),
            ("http://example.com/hook", "invalid_webhook_url"),
            ("https://169.254.169.254/latest", "invalid_webhook_url"),
            ("https://user:pw@example.com/hook", "invalid_webhook_url"),
            ("not a url", "invalid_webhook_url"),
        ] {
            let (status, body) =
                env.post("/v1/webhooks", &tenant, json!({ "url": url, "kinds": ["plugin.action"] })).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{url}: {body}"
            );
        }
        let (status, body) = env.post("/v1/webhooks", &tenant, json!({ "url": receiver.url, "kinds": [] })).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{body}"
        );
        let (status, body) =
            env.post("/v1/webhooks", &tenant, json!({ "url": receiver.url, "kinds": ["bill.paid"] })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(count(&env, "SELECT COUNT(*) FROM webhook_endpoints").await, 0);

        let kinds = json!(["plugin.action", "install.paused", "delivery.dead"]);
        let (status, created) = env.post("/v1/webhooks", &tenant, json!({ "url": receiver.url, "kinds": kinds })).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let secret = created["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
        let endpoint = created["endpoint"]["id"].as_str().unwrap().to_string();
        let (status, shown) = env.get(&format!("/v1/webhooks/{endpoint}"), &tenant).await;
        assert_eq!(
            (status, shown["kinds"].clone()),
            (StatusCode::OK, json!(["delivery.dead", "install.paused", "plugin.action"]))
        );
        assert!(!shown.to_string().contains(&secret[6..]), "the secret is shown once: {shown}");
        let (_, listed) = env.get("/v1/webhooks", &tenant).await;
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        let other = env.tenant("initech").await;
        let (status, _) = env.get(&format!("/v1/webhooks/{endpoint}"), &other).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // A plugin's action goes out once, however often the event is sent again.
        let order = json!({ "order_id": "o-1", "amount_minor": 1000, "currency": "EUR", "region": "DE" });
        let event = json!({ "id": "evt-w1", "type": "order.created", "payload": order });
        for _ in 0..2 {
            let (status, receipt) = env.post("/v1/events", &tenant, event.clone()).await;
            assert_eq!(status, StatusCode::OK, "{receipt}");
        }
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 1);
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 0);
        let first = receiver.received();
        assert_eq!(first.len(), 1);
        let body: Value = serde_json::from_str(&first[0].body).unwrap();
        assert_eq!(body["type"], "plugin.action");
        assert_eq!(body["data"]["event_id"], "evt-w1");
        assert_eq!(body["data"]["action"]["kind"], "invoice.tax-line");
        assert_eq!(first[0].id, format!("msg_{}_0", body["data"]["invocation"].as_str().unwrap()));
        assert_eq!(
            first[0].signature,
            sender::signature(&[&secret], &first[0].id, first[0].timestamp.parse().unwrap(), &first[0].body).unwrap()
        );

        // The receiver fails once: the same message comes again after the wait, with its id.
        receiver.answers.lock().unwrap().push_back(503);
        let event = json!({ "id": "evt-w2", "type": "order.created", "payload": order });
        env.post("/v1/events", &tenant, event).await;
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 1);
        let (_, log) = env.get(&format!("/v1/webhooks/{endpoint}/deliveries"), &tenant).await;
        let failed = &log["items"][0];
        assert_eq!(
            (failed["state"].as_str(), failed["attempts"].as_i64(), failed["last_status"].as_i64()),
            (Some("retrying"), Some(1), Some(503)),
            "{log}"
        );
        assert!(failed["last_error"].as_str().unwrap().starts_with("answered 503: thanks"), "{failed}");
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 0, "not due yet");
        clock.advance(MAX_WAIT_MS);
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 1);
        let (_, log) = env.get(&format!("/v1/webhooks/{endpoint}/deliveries"), &tenant).await;
        assert_eq!(
            (log["total"].as_i64(), log["items"][0]["state"].as_str(), log["items"][0]["attempts"].as_i64()),
            (Some(2), Some("delivered"), Some(2)),
            "{log}"
        );
        assert!(log["items"][0]["last_latency_ms"].is_i64(), "{log}");
        let got = receiver.received();
        assert_eq!((got.len(), &got[1].id), (3, &got[2].id), "a retry carries the message's id");

        // Rotation: for the overlap, messages carry a signature by each secret.
        let (status, rotated) =
            env.post(&format!("/v1/webhooks/{endpoint}/rotate-secret"), &tenant, json!({ "overlap_hours": 1 })).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new_secret, secret);
        assert!(rotated["endpoint"]["previous_secret_until"].is_i64(), "{rotated}");
        // An install paused by its circuit breaker is a notice too.
        let echo = env.install(&tenant, "nexus-labs/echo", json!({ "config": { "fail-with": "internal" } })).await;
        for n in 0..5 {
            let (status, receipt) = env
                .post(
                    &format!("/v1/installs/{}/invoke", echo["id"].as_str().unwrap()),
                    &tenant,
                    json!({ "id": format!("evt-p{n}"), "type": "t.x", "payload": {} }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{receipt}");
        }
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 1);
        let paused = receiver.received().pop().unwrap();
        let notice: Value = serde_json::from_str(&paused.body).unwrap();
        assert_eq!(
            (notice["type"].as_str(), notice["data"]["cause"].as_str()),
            (Some("install.paused"), Some("failures")),
            "{notice}"
        );
        assert_eq!(paused.signature.split(' ').count(), 2, "{}", paused.signature);
        verified_independently(&receiver.received()[..3], &[&secret]);
        verified_independently(std::slice::from_ref(&paused), &[&secret, &new_secret]);
        // A declined payment is a notice for an endpoint that subscribes to it.
        let kinds = json!(["plugin.action", "install.paused", "payment.failed", "plugin.delisted", "bill.issued"]);
        let (status, patched) = env
            .call(
                "PATCH",
                &format!("/v1/webhooks/{endpoint}"),
                Some(&tenant),
                Some(&json!({ "kinds": kinds }).to_string()),
            )
            .await;
        assert_eq!((status, patched["kinds"].as_array().map(Vec::len)), (StatusCode::OK, Some(5)), "{patched}");
        let plan = json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time", "currency": "EUR", "price_minor": 6000 });
        let (status, body) = env.post("/v1/plugins/nexus-labs/chat-notifier/plans", &env.publisher, plan).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // The tenant's finance member is mailed about the decline.
        let finance = ("tenant", "globex");
        people::add_confirmed_member(
            &env.market,
            "fin@globex.example",
            "Fin",
            "long-enough-password-1",
            finance,
            Role::Finance,
        )
        .await
        .unwrap();
        sandbox.script(&"globex".parse().unwrap(), [Scripted::Refuse("card_declined".into())]);
        let bought = env.install(&tenant, "nexus-labs/chat-notifier", json!({ "plan": "lifetime", "secrets": { "webhook-url": "https://hooks.slack.com/services/T0/B0/test" } })).await;
        assert_eq!(bought["status"], "pending_payment", "{bought}");
        // The charge was issued, then declined: two messages.
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 2);
        let mut last_two: Vec<Value> =
            receiver.received().iter().rev().take(2).map(|r| serde_json::from_str(&r.body).unwrap()).collect();
        last_two.sort_by_key(|m| m["type"].as_str().unwrap().to_string());
        let (issued, declined) = (last_two[0].clone(), last_two[1].clone());
        assert_eq!(
            (issued["type"].as_str(), issued["data"]["amount_minor"].as_i64(), issued["data"]["currency"].as_str()),
            (Some("bill.issued"), Some(6000), Some("EUR")),
            "{issued}"
        );
        assert_eq!(issued["data"]["charge"], declined["data"]["charge"]);
        assert_eq!(
            (declined["type"].as_str(), declined["data"]["reason"].as_str()),
            (Some("payment.failed"), Some("card_declined")),
            "{declined}"
        );
        assert_eq!(
            (declined["data"]["install"].as_str(), declined["data"]["attempt"].as_i64()),
            (bought["id"].as_str(), Some(1))
        );
        assert!(declined["data"]["next_attempt_at"].is_i64(), "a retry is scheduled: {declined}");
        let mailed: (String, String) =
            sqlx::query_as("SELECT recipient, body FROM mail_outbox WHERE kind = 'payment-failed'")
                .fetch_one(&env.market.db.pool)
                .await
                .unwrap();
        assert_eq!(mailed.0, "fin@globex.example");
        assert!(
            mailed.1.contains("60.00 EUR for nexus-labs/chat-notifier") && mailed.1.contains("card_declined"),
            "{}",
            mailed.1
        );
        // So is a delisting of a plugin the tenant has installed.
        let delist = json!({ "reason": "its webhook host is gone" });
        let (status, body) = env.post("/v1/catalog/nexus-labs/chat-notifier/delist", &env.operator, delist).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 1);
        let delisted: Value = serde_json::from_str(&receiver.received().pop().unwrap().body).unwrap();
        assert_eq!(
            (delisted["type"].as_str(), delisted["data"]["install"].as_str()),
            (Some("plugin.delisted"), bought["id"].as_str())
        );
        assert_eq!(delisted["data"]["reason"], "its webhook host is gone");
        // After the overlap only the new secret signs.
        clock.advance(3_600_001);
        env.post("/v1/events", &tenant, json!({ "id": "evt-w3", "type": "order.created", "payload": order })).await;
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 1);
        let last = receiver.received().pop().unwrap();
        assert_eq!(
            last.signature,
            sender::signature(&[&new_secret], &last.id, last.timestamp.parse().unwrap(), &last.body).unwrap()
        );

        // Deleted, an endpoint gets nothing more.
        let (status, _) = env.call("DELETE", &format!("/v1/webhooks/{endpoint}"), Some(&tenant), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        env.post("/v1/events", &tenant, json!({ "id": "evt-w4", "type": "order.created", "payload": order })).await;
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 0);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM webhook_deliveries WHERE state <> 'delivered'").await, 0);
        let audited = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'webhook.%'").await;
        assert_eq!(audited, 4, "created, rotated, updated, deleted");
        let secrets_logged =
            count(&env, &format!("SELECT COUNT(*) FROM audit_log WHERE detail LIKE '%{}%'", &new_secret[6..20])).await;
        assert_eq!(secrets_logged, 0);
    })
}

#[test]
fn many_clients_at_once_keep_the_endpoint_limit_and_every_update() {
    on_both(|postgres| async move {
        let options = Options { host: Some(loopback_host()), ..Options::default() };
        let env = Env::with(postgres, options).await;
        let tenant = env.tenant("globex").await;
        let other = env.tenant("initech").await;
        const CLIENTS: usize = 16;
        let limit = nexus_marketplace::webhooks::MAX_ENDPOINTS as usize;

        // Creates race for the last places: exactly the limit is created, the rest refused.
        let creates = (0..CLIENTS).map(|n| {
            let url = format!("http://127.0.0.1:9/hook-{n}");
            env.post("/v1/webhooks", &tenant, json!({ "url": url, "kinds": ["plugin.action"] }))
        });
        let answers = futures_util::future::join_all(creates).await;
        let created: Vec<String> = answers
            .iter()
            .filter(|(status, _)| *status == StatusCode::CREATED)
            .map(|(_, body)| body["endpoint"]["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(created.len(), limit, "{answers:?}");
        for (status, body) in answers.iter().filter(|(status, _)| *status != StatusCode::CREATED) {
            assert_eq!((*status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("too_many_webhooks")));
        }
        assert_eq!(count(&env, "SELECT COUNT(*) FROM webhook_endpoints").await, limit as i64);
        let subscribed = count(&env, "SELECT COUNT(*) FROM webhook_subscriptions").await;
        assert_eq!(subscribed, limit as i64, "one subscription per endpoint, none for the refused");
        // Another tenant's limit is its own.
        let (status, body) =
            env.post("/v1/webhooks", &other, json!({ "url": "http://127.0.0.1:9/x", "kinds": ["bill.issued"] })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        // Updates of one endpoint at once: each answered, the last one written wins whole.
        let endpoint = &created[0];
        let path = format!("/v1/webhooks/{endpoint}");
        let bodies: Vec<String> = (0..CLIENTS)
            .map(|n| {
                json!({ "description": format!("update {n}"), "url": format!("http://127.0.0.1:9/u{n}") }).to_string()
            })
            .collect();
        let updates = bodies.iter().map(|body| env.call("PATCH", &path, Some(&tenant), Some(body)));
        for (status, body) in futures_util::future::join_all(updates).await {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (_, shown) = env.get(&path, &tenant).await;
        let description = shown["description"].as_str().unwrap();
        let n = description.strip_prefix("update ").unwrap();
        assert_eq!(shown["url"].as_str(), Some(format!("http://127.0.0.1:9/u{n}").as_str()), "{shown}");

        // Deletes of every endpoint, twice each at once: one 204 and one 404 per endpoint.
        let (env, tenant) = (&env, &tenant);
        let deletes = created
            .iter()
            .chain(&created)
            .map(|id| async move { env.call("DELETE", &format!("/v1/webhooks/{id}"), Some(tenant), None).await.0 });
        let statuses = futures_util::future::join_all(deletes).await;
        let gone = statuses.iter().filter(|s| **s == StatusCode::NO_CONTENT).count();
        let missing = statuses.iter().filter(|s| **s == StatusCode::NOT_FOUND).count();
        assert_eq!((gone, missing), (limit, limit), "{statuses:?}");
        assert_eq!(count(env, "SELECT COUNT(*) FROM webhook_endpoints").await, 1, "only the other tenant's");
        for (action, times) in [("created", limit + 1), ("updated", CLIENTS), ("deleted", limit)] {
            let sql = format!("SELECT COUNT(*) FROM audit_log WHERE action = 'webhook.{action}'");
            assert_eq!(count(env, &sql).await, times as i64, "{action}");
        }
    })
}

#[test]
fn a_receiver_that_is_back_recovers_what_waits_for_a_retry_or_ended_dead() {
    on_both(|postgres| async move {
        let clock = Arc::new(ManualClock::at(nexus_registry::db::now_ms()));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let options = Options { host: Some(loopback_host()), billing: Some(billing), ..Options::default() };
        let env = Env::with(postgres, options).await;
        let receiver = Receiver::start().await;
        let tenant = env.tenant("globex").await;
        let other = env.tenant("initech").await;
        // Echo asks for one `crm.note` action per event, carrying the payload.
        env.install(&tenant, "nexus-labs/echo", json!({ "config": { "emit": "crm.note" } })).await;
        let (_, created) =
            env.post("/v1/webhooks", &tenant, json!({ "url": receiver.url, "kinds": ["plugin.action"] })).await;
        let endpoint = created["endpoint"]["id"].as_str().unwrap().to_string();
        let recover = format!("/v1/webhooks/{endpoint}/recover");

        // The receiver is down for the first attempt of three messages.
        receiver.answers.lock().unwrap().extend([503, 503, 503]);
        for n in 0..3 {
            let event = json!({ "id": format!("evt-r{n}"), "type": "note.added", "payload": { "n": n } });
            let (status, receipt) = env.post("/v1/events", &tenant, event).await;
            assert_eq!(status, StatusCode::OK, "{receipt}");
        }
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 3);
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 0, "the retries are not due yet");
        let refused: Vec<String> = receiver.received().iter().map(|r| r.id.clone()).collect();

        // Bad requests and other tenants change nothing.
        let (status, body) = env.post(&recover, &tenant, json!({ "since": -1 })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
        let (status, _) = env.post(&recover, &other, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = env.post(&recover, &tenant, json!({ "since": clock.now_ms() + 1 })).await;
        assert_eq!((status, body["messages"].as_u64()), (StatusCode::OK, Some(0)), "created before `since`");
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 0);

        // Recovered, they go out now, each under the id of its first attempt, once: many
        // clients asking at once recover each message once between them.
        let asks = (0..8).map(|_| env.post(&recover, &tenant, json!({})));
        let mut recovered = 0;
        for (status, body) in futures_util::future::join_all(asks).await {
            assert_eq!(status, StatusCode::OK, "{body}");
            recovered += body["messages"].as_u64().unwrap();
        }
        assert_eq!(recovered, 3);
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 3);
        let got = receiver.received();
        let mut again: Vec<String> = got[3..].iter().map(|r| r.id.clone()).collect();
        let mut first = refused.clone();
        again.sort();
        first.sort();
        assert_eq!(again, first);
        for message in &got[3..] {
            let body: Value = serde_json::from_str(&message.body).unwrap();
            assert_eq!(body["data"]["action"]["kind"], "crm.note", "{body}");
            let n = body["data"]["event_id"].as_str().unwrap().strip_prefix("evt-r").unwrap();
            let payload: Value = serde_json::from_str(body["data"]["action"]["payload"].as_str().unwrap()).unwrap();
            assert_eq!(payload, json!({ "n": n.parse::<u64>().unwrap() }), "{body}");
        }
        let (status, body) = env.post(&recover, &tenant, json!({})).await;
        assert_eq!((status, body["messages"].as_u64()), (StatusCode::OK, Some(0)), "nothing left to recover");

        // A message that ran out of attempts ends dead; recovered, it starts the schedule again.
        let attempts = nexus_marketplace::runner::worker::MAX_ATTEMPTS as usize;
        receiver.answers.lock().unwrap().extend(std::iter::repeat_n(500, attempts));
        env.post("/v1/events", &tenant, json!({ "id": "evt-dead", "type": "note.added", "payload": {} })).await;
        for _ in 0..attempts {
            assert_eq!(sender::send_due(&env.market).await.unwrap(), 1);
            clock.advance(MAX_WAIT_MS * 2);
        }
        let (_, log) = env.get(&format!("/v1/webhooks/{endpoint}/deliveries?per_page=1"), &tenant).await;
        assert_eq!(log["items"][0]["state"], "dead", "{log}");
        let (status, body) = env.post(&recover, &tenant, json!({})).await;
        assert_eq!((status, body["messages"].as_u64()), (StatusCode::OK, Some(1)));
        let (_, log) = env.get(&format!("/v1/webhooks/{endpoint}/deliveries?per_page=1"), &tenant).await;
        let recovered = &log["items"][0];
        assert_eq!((recovered["state"].as_str(), recovered["attempts"].as_i64()), (Some("queued"), Some(0)), "{log}");
        assert_eq!(sender::send_due(&env.market).await.unwrap(), 1);
        let (_, log) = env.get(&format!("/v1/webhooks/{endpoint}/deliveries?per_page=1"), &tenant).await;
        assert_eq!(log["items"][0]["state"], "delivered", "{log}");
        let audited = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action = 'webhook.recovered'").await;
        assert_eq!(audited, 2, "one entry per recovery that made something due");
    })
}
