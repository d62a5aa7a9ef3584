//! Asynchronous events (issue #23): `Prefer: respond-async` queues an event and its
//! deliveries and answers 202; workers deliver each exactly once, retry transient failures
//! on the stated schedule until they are dead, and dead deliveries are listed and replayed.
//! On both backends; the worker is driven by `worker::deliver_due`, the schedule by a
//! manual billing clock.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nexus_marketplace::billing::{BillingConfig, ManualClock, SandboxProvider};
use nexus_marketplace::runner::retention;
use nexus_marketplace::runner::worker::{self, FIRST_WAIT_MS, MAX_ATTEMPTS, MAX_WAIT_MS};
use serde_json::{Value, json};

use super::common::{Env, Options, manifest_of, on_both};

const START: i64 = 1_790_000_000_000;

/// An environment whose billing clock (which also schedules deliveries) stands still
/// until moved.
async fn env_with_clock(postgres: bool) -> (Arc<Env>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(START));
    let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
    let env = Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await;
    (Arc::new(env), clock)
}

/// `POST /v1/events` with `Prefer: <prefer>`: the status, the `Preference-Applied` header
/// and the body.
async fn send(env: &Env, tenant: &str, prefer: &str, event: Value) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method("POST")
        .uri("/v1/events")
        .header(header::AUTHORIZATION, format!("Bearer {tenant}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("prefer", prefer)
        .body(Body::from(event.to_string()))
        .unwrap();
    let (status, headers, body) = env.raw(request).await;
    let applied = headers.get("preference-applied").map(|v| v.to_str().unwrap().to_string());
    (status, applied, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn queue(env: &Env, tenant: &str, id: &str, payload: Value) -> Value {
    let (status, applied, body) =
        send(env, tenant, "respond-async", json!({ "id": id, "type": "order.created", "payload": payload })).await;
    assert_eq!((status, applied.as_deref()), (StatusCode::ACCEPTED, Some("respond-async")), "{body}");
    body
}

async fn event(env: &Env, tenant: &str, id: &str) -> Value {
    let (status, body) = env.get(&format!("/v1/events/{id}"), tenant).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The one delivery of event `id`.
async fn delivery(env: &Env, tenant: &str, id: &str) -> Value {
    let event = event(env, tenant, id).await;
    assert_eq!(event["deliveries"].as_array().unwrap().len(), 1, "{event}");
    event["deliveries"][0].clone()
}

async fn count(env: &Env, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.market.db.pool).await.unwrap()
}

#[test]
fn an_async_event_is_queued_durably_then_applied_once_per_install() {
    on_both(|postgres| async move {
        let (env, clock) = env_with_clock(postgres).await;
        let tenant = env.tenant("globex").await;
        let tax = env.install(&tenant, "nexus-labs/tax-calculator", json!({ "config": { "rates": "DE=1900" } })).await;
        let echo = env.install(&tenant, "nexus-labs/echo", json!({ "config": { "prefix": "seen " } })).await;
        let order = json!({ "order_id": "o-1", "amount_minor": 1000, "currency": "EUR", "region": "DE" });

        let queued = queue(&env, &tenant, "evt-a1", order.clone()).await;
        assert_eq!(queued["event_id"], "evt-a1");
        let states: Vec<&str> =
            queued["deliveries"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["queued", "queued"]);
        // Sent again (a client's retry): the same deliveries, nothing more queued.
        let again = queue(&env, &tenant, "evt-a1", order.clone()).await;
        let ids = |body: &Value| -> BTreeSet<String> {
            body["deliveries"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(ids(&again), ids(&queued));
        assert_eq!(count(&env, "SELECT COUNT(*) FROM deliveries").await, 2);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM invocations").await, 0, "nothing ran before a worker did");

        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 2);
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 0);
        let shown = event(&env, &tenant, "evt-a1").await;
        assert_eq!(shown["type"], "order.created");
        for delivery in shown["deliveries"].as_array().unwrap() {
            assert_eq!(
                (delivery["state"].as_str(), delivery["attempts"].as_i64()),
                (Some("applied"), Some(1)),
                "{delivery}"
            );
            assert_eq!(delivery["last_outcome"], "ok");
            assert!(delivery.get("next_attempt_at").is_none() && delivery.get("last_error").is_none(), "{delivery}");
        }
        // What the echo answered is kept with its invocation.
        let echoed = shown["deliveries"].as_array().unwrap().iter().find(|d| d["install"] == echo["id"]).unwrap();
        let (status, invocation) = env
            .get(
                &format!(
                    "/v1/installs/{}/invocations/{}",
                    echo["id"].as_str().unwrap(),
                    echoed["invocation"].as_str().unwrap()
                ),
                &tenant,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{invocation}");
        assert_eq!(invocation["data"], format!("seen {order}"));
        assert_eq!(count(&env, "SELECT COUNT(*) FROM invocations WHERE outcome = 'ok'").await, 2);
        // A synchronous resend of the applied event runs nothing again.
        let (status, receipt) =
            env.post("/v1/events", &tenant, json!({ "id": "evt-a1", "type": "order.created", "payload": order })).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert!(receipt["deliveries"].as_array().unwrap().iter().all(|d| d["replayed"] == true), "{receipt}");
        assert_eq!(count(&env, "SELECT COUNT(*) FROM invocations").await, 2);
        let _ = tax;

        // Who may see it: the tenant; an operator naming the tenant; nobody else.
        let other = env.tenant("initech").await;
        let (status, body) = env.get("/v1/events/evt-a1", &other).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
        let (status, body) = env.get("/v1/events/evt-a1", &env.operator).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query")),
            "{body}"
        );
        let (status, body) = env.get("/v1/events/evt-a1?tenant=globex", &env.operator).await;
        assert_eq!((status, body["deliveries"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)), "{body}");

        // A preference other than respond-async is refused and queues nothing.
        for prefer in ["return=minimal", "respond-async, wait=10", "respond-sync"] {
            let event = json!({ "id": "evt-a2", "type": "order.created", "payload": {} });
            let (status, _, body) = send(&env, &tenant, prefer, event).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_prefer")),
                "{prefer}: {body}"
            );
        }
        assert_eq!(count(&env, "SELECT COUNT(*) FROM queued_events").await, 1);
        // Only echo handles this type: one delivery.
        let (status, _, body) =
            send(&env, &tenant, "RESPOND-ASYNC", json!({ "id": "evt-a3", "type": "nobody.cares", "payload": {} }))
                .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["deliveries"].as_array().map(Vec::len), Some(1), "echo handles every type: {body}");

        // Finished deliveries and their events are kept a week, then swept.
        assert_eq!(retention::sweep(&env.market).await.unwrap(), 0);
        clock.advance(retention::KEEP_FINISHED_MS + 1);
        assert_eq!(retention::sweep(&env.market).await.unwrap(), 2 + 1, "two applied deliveries, and their event");
        let (status, _) = env.get("/v1/events/evt-a1", &tenant).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM queued_events").await, 1, "evt-a3 still has a queued delivery");
    })
}

#[test]
fn transient_failures_are_retried_on_the_schedule_until_dead_then_replayed() {
    on_both(|postgres| async move {
        let (env, clock) = env_with_clock(postgres).await;
        let tenant = env.tenant("globex").await;
        let echo = env.install(&tenant, "nexus-labs/echo", json!({ "config": { "fail-with": "upstream" } })).await;
        let echo_id = echo["id"].as_str().unwrap();
        queue(&env, &tenant, "evt-r1", json!({ "n": 1 })).await;

        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
        let first = delivery(&env, &tenant, "evt-r1").await;
        assert_eq!((first["state"].as_str(), first["attempts"].as_i64()), (Some("retrying"), Some(1)), "{first}");
        assert_eq!(first["last_outcome"], "plugin_error");
        assert!(first["last_error"].as_str().unwrap().contains("failing as configured"), "{first}");
        let due = first["next_attempt_at"].as_i64().unwrap() - START;
        assert!((FIRST_WAIT_MS * 8 / 10..=FIRST_WAIT_MS * 12 / 10).contains(&due), "first wait {due} ms");
        // Not due yet: nothing is claimed.
        clock.advance(FIRST_WAIT_MS * 8 / 10 - 1);
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 0);

        // Every further attempt fails too; after five the circuit breaker pauses the install,
        // and the attempts while it is paused fail as `install_not_running`.
        let mut attempts = 1;
        while attempts < MAX_ATTEMPTS {
            clock.advance(MAX_WAIT_MS * 12 / 10);
            assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1, "attempt {}", attempts + 1);
            attempts += 1;
        }
        let dead = delivery(&env, &tenant, "evt-r1").await;
        assert_eq!((dead["state"].as_str(), dead["attempts"].as_i64()), (Some("dead"), Some(MAX_ATTEMPTS)), "{dead}");
        assert_eq!(dead["last_outcome"], "install_not_running");
        clock.advance(MAX_WAIT_MS * 12 / 10);
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 0, "a dead delivery is not tried again");
        let ran = count(&env, "SELECT COUNT(*) FROM invocations").await;
        assert_eq!(ran, 5, "five attempts ran before the pause");

        let (status, page) = env.get("/v1/deliveries?state=dead", &tenant).await;
        assert_eq!((status, page["total"].as_i64()), (StatusCode::OK, Some(1)), "{page}");
        assert_eq!(page["items"][0]["id"], dead["id"]);
        let (_, everyone) = env.get("/v1/deliveries?state=dead", &env.operator).await;
        assert_eq!(everyone["total"], 1, "{everyone}");

        // Another tenant cannot replay it, nor can a replay name it with a live one.
        let other = env.tenant("initech").await;
        let (status, body) = env.post("/v1/deliveries/replay", &other, json!({ "deliveries": [dead["id"]] })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
        for bad in [json!({}), json!({ "state": "applied" }), json!({ "state": "dead", "deliveries": [dead["id"]] })] {
            let (status, body) = env.post("/v1/deliveries/replay", &tenant, bad.clone()).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{bad}: {body}"
            );
        }

        // The tenant fixes the plugin's setting, resumes the install and replays the delivery.
        let (status, body) = env
            .call(
                "PATCH",
                &format!("/v1/installs/{echo_id}"),
                Some(&tenant),
                Some(&json!({ "config": {} }).to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = env.post(&format!("/v1/installs/{echo_id}/resume"), &tenant, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, replayed) =
            env.post("/v1/deliveries/replay", &tenant, json!({ "deliveries": [dead["id"]] })).await;
        assert_eq!((status, replayed["deliveries"].clone()), (StatusCode::OK, json!([dead["id"]])), "{replayed}");
        let queued = delivery(&env, &tenant, "evt-r1").await;
        assert_eq!((queued["state"].as_str(), queued["attempts"].as_i64()), (Some("queued"), Some(0)), "{queued}");
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
        let applied = delivery(&env, &tenant, "evt-r1").await;
        assert_eq!((applied["state"].as_str(), applied["attempts"].as_i64()), (Some("applied"), Some(1)), "{applied}");
        assert_eq!(count(&env, "SELECT COUNT(*) FROM invocations WHERE outcome = 'ok'").await, 1);
        // Applied is an end: replaying it again is refused, and nothing is left to replay.
        let (status, body) = env.post("/v1/deliveries/replay", &tenant, json!({ "deliveries": [dead["id"]] })).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("delivery_not_replayable")),
            "{body}"
        );
        let (status, body) = env.post("/v1/deliveries/replay", &tenant, json!({ "state": "dead" })).await;
        assert_eq!((status, body["deliveries"].clone()), (StatusCode::OK, json!([])), "{body}");
        let audited = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action = 'deliveries.replayed'").await;
        assert_eq!(audited, 1);

        // A failure retrying cannot fix ends the delivery at once, as `failed`.
        let initech_echo =
            env.install(&other, "nexus-labs/echo", json!({ "config": { "fail-with": "internal" } })).await;
        queue(&env, &other, "evt-r2", json!({})).await;
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
        let failed = delivery(&env, &other, "evt-r2").await;
        assert_eq!((failed["state"].as_str(), failed["attempts"].as_i64()), (Some("failed"), Some(1)), "{failed}");
        assert!(failed["invocation"].is_string(), "{failed}");
        // An uninstalled install's deliveries are cancelled.
        let (status, _) = env
            .call("DELETE", &format!("/v1/installs/{}", initech_echo["id"].as_str().unwrap()), Some(&other), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = env.post("/v1/deliveries/replay", &other, json!({ "state": "failed" })).await;
        assert_eq!((status, body["deliveries"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{body}");
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
        let cancelled = delivery(&env, &other, "evt-r2").await;
        assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    })
}

#[test]
fn an_install_that_asks_for_order_gets_its_events_one_at_a_time_in_order() {
    on_both(|postgres| async move {
        let (env, clock) = env_with_clock(postgres).await;
        let ordered_manifest = manifest_of("echo")
            .replacen("id = \"nexus-labs/echo\"", "id = \"nexus-labs/echo-ordered\"", 1)
            .replacen("event-types = ", "ordered-delivery = true\nevent-types = ", 1);
        env.publish_manifest(nexus_sample_plugins::ECHO, &ordered_manifest).await.unwrap();
        let tenant = env.tenant("globex").await;
        let ordered =
            env.install(&tenant, "nexus-labs/echo-ordered", json!({ "config": { "fail-with": "upstream" } })).await;
        let ordered_id = ordered["id"].as_str().unwrap();
        env.install(&tenant, "nexus-labs/echo", json!({})).await;
        for n in 1..=3 {
            queue(&env, &tenant, &format!("evt-o{n}"), json!({ "n": n })).await;
        }
        // The unordered echo takes all three at once; the ordered one only the first, which
        // fails and holds the others back while it is retried.
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 4);
        clock.advance(FIRST_WAIT_MS * 12 / 10);
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
        let state_of = |event: Value| -> String {
            event["deliveries"].as_array().unwrap().iter().find(|d| d["install"] == ordered_id).unwrap()["state"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(state_of(event(&env, &tenant, "evt-o1").await), "retrying");
        assert_eq!(state_of(event(&env, &tenant, "evt-o2").await), "queued");

        let (status, body) = env
            .call(
                "PATCH",
                &format!("/v1/installs/{ordered_id}"),
                Some(&tenant),
                Some(&json!({ "config": {} }).to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        clock.advance(MAX_WAIT_MS);
        // One at a time: each claim finds only the next.
        for _ in 1..=3 {
            assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
            clock.advance(1);
        }
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 0);
        let applied: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM invocations WHERE install_id = $1 AND outcome = 'ok' ORDER BY started_at, id",
        )
        .bind(ordered_id)
        .fetch_all(&env.market.db.pool)
        .await
        .unwrap();
        assert_eq!(applied, ["evt-o1", "evt-o2", "evt-o3"]);
    })
}

#[test]
fn many_clients_queue_at_once_and_two_workers_apply_each_event_exactly_once() {
    on_both(|postgres| async move {
        let (env, _) = env_with_clock(postgres).await;
        let tenant = env.tenant("globex").await;
        let tax = env.install(&tenant, "nexus-labs/tax-calculator", json!({ "config": { "rates": "DE=1900" } })).await;
        let echo = env.install(&tenant, "nexus-labs/echo", json!({})).await;
        const CLIENTS: usize = 16;
        const EACH: usize = 6;
        // Every client sends its events, and each one twice (a retry racing the first).
        let mut clients = tokio::task::JoinSet::new();
        for client in 0..CLIENTS {
            let (env, tenant) = (env.clone(), tenant.clone());
            clients.spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..EACH {
                    let id = format!("evt-{client}-{n}");
                    let order = json!({ "order_id": id, "amount_minor": 1000, "currency": "EUR", "region": "DE" });
                    let event = json!({ "id": id, "type": "order.created", "payload": order });
                    let (first, second) = tokio::join!(
                        send(&env, &tenant, "respond-async", event.clone()),
                        send(&env, &tenant, "respond-async", event)
                    );
                    statuses.extend([first.0, second.0]);
                }
                statuses
            });
        }
        // Two workers drain the queue while the clients are still sending.
        let drained = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (env, drained) = (env.clone(), drained.clone());
            workers.spawn(async move {
                let mut claimed = 0;
                loop {
                    let n = worker::deliver_due(&env.market).await.unwrap();
                    claimed += n;
                    if n == 0 {
                        if drained.load(std::sync::atomic::Ordering::SeqCst) {
                            return claimed;
                        }
                        tokio::task::yield_now().await;
                    }
                }
            });
        }
        while let Some(statuses) = clients.join_next().await {
            assert!(statuses.unwrap().iter().all(|s| *s == StatusCode::ACCEPTED));
        }
        drained.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut claimed = 0;
        while let Some(n) = workers.join_next().await {
            claimed += n.unwrap();
        }
        let events = (CLIENTS * EACH) as i64;
        // A claim after the last accept finds nothing left.
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 0);
        assert_eq!(claimed as i64, 2 * events, "each delivery claimed once");
        assert_eq!(count(&env, "SELECT COUNT(*) FROM queued_events").await, events);
        assert_eq!(
            count(&env, "SELECT COUNT(*) FROM deliveries WHERE state = 'applied' AND attempts = 1").await,
            2 * events
        );
        for install in [&tax, &echo] {
            let id = install["id"].as_str().unwrap();
            let (_, history) = env.get(&format!("/v1/installs/{id}/invocations?outcome=ok"), &tenant).await;
            assert_eq!(history["total"].as_i64(), Some(events), "{id}");
        }
        assert_eq!(count(&env, "SELECT COUNT(*) FROM invocations").await, 2 * events, "nothing ran twice");
        let total: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM kv_entries WHERE install_id = $1 AND key = 'total/DE/EUR'")
                .bind(tax["id"].as_str().unwrap())
                .fetch_one(&env.market.db.pool)
                .await
                .unwrap();
        assert_eq!(String::from_utf8(total).unwrap(), (190 * events).to_string());
    })
}

#[test]
fn a_tenant_replays_failed_deliveries_from_the_console() {
    super::common::runtime().block_on(async {
        use super::console::Browser;
        let (env, _) = env_with_clock(false).await;
        let tenant = env.tenant("globex").await;
        let echo = env.install(&tenant, "nexus-labs/echo", json!({ "config": { "fail-with": "internal" } })).await;
        queue(&env, &tenant, "evt-c1", json!({})).await;
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
        let failed = delivery(&env, &tenant, "evt-c1").await;
        let id = failed["id"].as_str().unwrap();

        let mut browser = Browser::new(&env);
        browser.sign_in(&tenant).await;
        let page = browser.get("/console/deliveries?state=failed").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for shown in [
            id,
            "evt-c1",
            "nexus-labs/echo",
            "plugin_error: plugin error (Internal): failing as configured",
            "1 failed",
        ] {
            assert!(page.body.contains(shown), "{shown} not in {}", page.body);
        }
        let csrf = Browser::csrf_of(&page);
        // Without the session's CSRF value nothing is replayed.
        let refused = browser.post("/console/deliveries/replay", &[("delivery", id)]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        assert_eq!(delivery(&env, &tenant, "evt-c1").await["state"], "failed");
        // Another tenant's session cannot replay it.
        let other = env.tenant("initech").await;
        let mut stranger = Browser::new(&env);
        stranger.sign_in(&other).await;
        let their_csrf = Browser::csrf_of(&stranger.get("/console/deliveries").await);
        let hidden = stranger.post("/console/deliveries/replay", &[("csrf", &their_csrf), ("delivery", id)]).await;
        assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.body);

        let env_echo = echo["id"].as_str().unwrap();
        let (status, _) = env
            .call(
                "PATCH",
                &format!("/v1/installs/{env_echo}"),
                Some(&tenant),
                Some(&json!({ "config": {} }).to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let done = browser.post("/console/deliveries/replay", &[("csrf", &csrf), ("delivery", id)]).await;
        assert_eq!(done.location.as_deref(), Some("/console/deliveries?state=queued&replayed=1"), "{}", done.body);
        let after = browser.get("/console/deliveries?state=queued&replayed=1").await;
        assert!(after.body.contains("Queued 1 delivery again") && after.body.contains(id), "{}", after.body);
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), 1);
        assert_eq!(delivery(&env, &tenant, "evt-c1").await["state"], "applied");
    })
}

#[test]
fn many_clients_replay_the_same_failed_deliveries_and_each_is_queued_once() {
    on_both(|postgres| async move {
        let (env, _) = env_with_clock(postgres).await;
        let tenant = env.tenant("globex").await;
        env.install(&tenant, "nexus-labs/echo", json!({ "config": { "fail-with": "internal" } })).await;
        // Two rounds of two failures stay under the circuit breaker's five in a row.
        const EVENTS: usize = 2;
        const CLIENTS: usize = 8;
        for n in 0..EVENTS {
            queue(&env, &tenant, &format!("evt-f{n}"), json!({ "n": n })).await;
        }
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), EVENTS);
        let mut ids = Vec::new();
        for n in 0..EVENTS {
            let failed = delivery(&env, &tenant, &format!("evt-f{n}")).await;
            assert_eq!(failed["state"], "failed", "{failed}");
            ids.push(failed["id"].as_str().unwrap().to_string());
        }

        // Every client names all of them: one replays them, the others find them queued.
        let replays = (0..CLIENTS).map(|_| env.post("/v1/deliveries/replay", &tenant, json!({ "deliveries": ids })));
        let answers = futures_util::future::join_all(replays).await;
        let replayed: Vec<&Value> = answers.iter().filter(|(s, _)| *s == StatusCode::OK).map(|(_, b)| b).collect();
        assert_eq!(replayed.len(), 1, "{answers:?}");
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(replayed[0]["deliveries"], json!(sorted));
        for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
            assert_eq!(
                (*status, body["error"]["code"].as_str()),
                (StatusCode::CONFLICT, Some("delivery_not_replayable")),
                "{body}"
            );
        }
        let queued = "SELECT COUNT(*) FROM deliveries WHERE state = 'queued' AND attempts = 0";
        assert_eq!(count(&env, queued).await, EVENTS as i64);

        // Failed again, then replayed by state from every client at once: each delivery is
        // in exactly one answer.
        assert_eq!(worker::deliver_due(&env.market).await.unwrap(), EVENTS);
        let replays = (0..CLIENTS).map(|_| env.post("/v1/deliveries/replay", &tenant, json!({ "state": "failed" })));
        let (mut seen, mut queued_something) = (Vec::new(), 0);
        for (status, body) in futures_util::future::join_all(replays).await {
            assert_eq!(status, StatusCode::OK, "{body}");
            let named = body["deliveries"].as_array().unwrap();
            queued_something += i64::from(!named.is_empty());
            seen.extend(named.iter().map(|id| id.as_str().unwrap().to_string()));
        }
        seen.sort();
        assert_eq!(seen, sorted, "each failed delivery replayed by exactly one client");
        assert_eq!(count(&env, queued).await, EVENTS as i64);
        let audited = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action = 'deliveries.replayed'").await;
        assert_eq!(audited, 1 + queued_something, "one entry per replay that queued something");
        assert_eq!(count(&env, "SELECT COUNT(*) FROM invocations").await, 2 * EVENTS as i64, "one run per replay");
    })
}
