//! Exactly once, whatever happens to the process: a real `nexus serve` is killed with
//! SIGKILL while events that write KV are in flight, restarted, and sent every event again.
//! Each event then applied to the install exactly once: one applied invocation row per event
//! id, its KV effect present exactly when its row is, one billable usage row each, and every
//! answer the one it gave when it applied.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row;

use super::common::serve;

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
        let market = super::common::RealMarket::new();
        let data = market.data.clone();
        let mut server = serve(&data);
        let url = server.url.clone();
        market.publish(&url, "tax-calculator");

        let client = reqwest::Client::new();
        let consent = json!({ "capabilities": ["log", "config", "kv", "usage"], "hosts": [] });
        let (tenant, install) = market
            .tenant_with_install(&url, "globex", "nexus-labs/tax-calculator", consent, json!({ "rates": "DE=1900" }))
            .await;

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
            db.close().await;
        }

        // The client retries everything; each answer is the applied delivery, with what it
        // answered when it applied (also when the kill came between its commit and its
        // answer): its data, with each running total once, and its action.
        let restarted = serve(&data);
        let mut totals = BTreeSet::new();
        for n in 0..EVENTS {
            let (status, receipt) = send(&client, &restarted.url, &tenant, n).await.unwrap();
            assert_eq!(status, 200, "{receipt}");
            let delivery = &receipt["deliveries"][0];
            assert_eq!(delivery["outcome"], "ok", "{receipt}");
            let data: Value = serde_json::from_str(delivery["data"].as_str().unwrap()).unwrap();
            assert_eq!((&data["order_id"], &data["tax_minor"], &data["replayed"]), (&json!(format!("o-{n}")), &json!(190), &json!(false)));
            totals.insert(data["region_tax_total_minor"].as_i64().unwrap());
            let line = format!(r#"{{"currency":"EUR","direction":"charged","order_id":"o-{n}","region":"DE","tax_minor":190}}"#);
            assert_eq!(delivery["actions"], json!([{ "kind": "invoice.tax-line", "payload": line }]), "{receipt}");
        }
        assert_eq!(totals, (1..=EVENTS as i64).map(|k| k * 190).collect(), "each running total answered once");
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

#[test]
fn an_event_killed_between_its_commit_and_its_answer_answers_the_same_when_resent() {
    super::common::runtime().block_on(async {
        let market = super::common::RealMarket::new();
        let client = reqwest::Client::new();
        let (tenant, install) = {
            let server = market.serve(&[], &[]);
            market.publish(&server.url, "tax-calculator");
            let consent = json!({ "capabilities": ["log", "config", "kv", "usage"], "hosts": [] });
            let config = json!({ "rates": "DE=1900" });
            market.tenant_with_install(&server.url, "globex", "nexus-labs/tax-calculator", consent, config).await
        };

        let point = "events.before_answer";
        let mut server = market.serve(&[], &[("NEXUS_TEST_PAUSE_AT", point)]);
        let first = {
            let (client, url, tenant) = (client.clone(), server.url.clone(), tenant.clone());
            tokio::spawn(async move { send(&client, &url, &tenant, 7).await })
        };
        server.wait_for_line(&format!("paused at {point}"));
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        assert!(first.await.unwrap().is_err(), "the event answered before the kill");

        let restarted = market.serve(&[], &[]);
        let (status, receipt) = send(&client, &restarted.url, &tenant, 7).await.unwrap();
        assert_eq!(status, 200, "{receipt}");
        let delivery = &receipt["deliveries"][0];
        assert_eq!((&delivery["install"], &delivery["replayed"]), (&json!(install), &json!(true)), "{receipt}");
        let data = r#"{"amount_minor":1000,"currency":"EUR","order_id":"o-7","rate_bp":1900,"region":"DE","region_tax_total_minor":190,"replayed":false,"tax_minor":190,"total_with_tax_minor":1190}"#;
        let line = r#"{"currency":"EUR","direction":"charged","order_id":"o-7","region":"DE","tax_minor":190}"#;
        assert_eq!(delivery["data"], data, "{receipt}");
        assert_eq!(delivery["actions"], json!([{ "kind": "invoice.tax-line", "payload": line }]), "{receipt}");
        let path = format!("/v1/installs/{install}/invocations/{}", delivery["invocation"].as_str().unwrap());
        let record = call(&client, reqwest::Method::GET, &restarted.url, &path, &tenant).await;
        assert_eq!((&record["data"], &record["actions"]), (&delivery["data"], &delivery["actions"]), "{record}");
    })
}

/// Recovering a killed process's claims at once is right only if one server writes a SQLite
/// file: a second is refused while the first runs, and starts once it is killed.
#[test]
fn a_second_server_on_one_sqlite_file_is_refused_until_the_first_is_gone() {
    let market = super::common::RealMarket::new();
    let mut first = market.serve(&[], &[]);
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&market.data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    let expected = format!("another `nexus serve` is using {}", market.data.join("registry.db").display());
    assert!(stderr.contains(&expected), "{stderr}");
    first.child.kill().unwrap(); // SIGKILL: the lock goes with the process
    first.child.wait().unwrap();
    let again = market.serve(&[], &[]);
    assert!(again.url.starts_with("http://127.0.0.1:"), "{}", again.url);
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

/// `method path` on `url` as `token` with a JSON body (GET sends none); the JSON answer.
async fn call(client: &reqwest::Client, method: reqwest::Method, url: &str, path: &str, token: &str) -> Value {
    let mut request = client.request(method.clone(), format!("{url}{path}")).bearer_auth(token);
    if method != reqwest::Method::GET {
        request = request.json(&json!({}));
    }
    request.send().await.unwrap().json().await.unwrap()
}

/// The parties of each success the sandbox journaled on `side`, sorted, and how many there were
/// before duplicates were removed.
fn journaled_successes(data: &std::path::Path, side: &str, party: impl Fn(&Value) -> String) -> (usize, Vec<String>) {
    let journal = std::fs::read_to_string(data.join("sandbox-payments.jsonl")).unwrap();
    let mut found: Vec<String> = journal
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["side"] == side && entry["outcome"]["status"] == "succeeded")
        .map(|entry| party(&entry))
        .collect();
    let all = found.len();
    found.sort();
    found.dedup();
    (all, found)
}

const SUBSCRIBERS: usize = 200;

/// Charges (and how many are collected) in the server's SQLite database, read beside it.
async fn charge_counts(data: &std::path::Path) -> (i64, i64) {
    let db = nexus_registry::Db::sqlite_in(data).await.unwrap();
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges").fetch_one(&db.pool).await.unwrap();
    let collected: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM charges WHERE status = 'collected'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    db.close().await;
    (total, collected)
}

#[test]
fn a_billing_run_killed_midway_charges_and_collects_each_period_once() {
    super::common::runtime().block_on(billing_run_killed(None));
}

#[test]
fn a_billing_run_killed_between_claiming_and_calling_the_provider_collects_each_charge_once() {
    super::common::runtime().block_on(billing_run_killed(Some("collect.after_claim")));
}

/// Subscribers owing three periods each; a billing run killed partway (when charges start
/// to appear, or at `pause`), then run twice on the restarted server: every period charged
/// and collected exactly once, the second run finding nothing.
async fn billing_run_killed(pause: Option<&str>) {
    let market = super::common::RealMarket::new();
    let (data, operator) = (market.data.clone(), market.operator.clone());
    let server = market.serve(&["--billing-interval-secs", "0"], &[]);
    let url = server.url.clone();
    market.publish(&url, "pii-redactor");

    // Subscribers of the seeded `team` plan (29.00 USD a month): each pays its first
    // period at install.
    let client = reqwest::Client::new();
    let preview: Value = client
        .get(format!("{url}/v1/catalog/nexus-labs/pii-redactor/consent"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let consent = super::common::consent_for(&preview);
    for n in 0..SUBSCRIBERS {
        let created: Value = client
            .post(format!("{url}/v1/tenants"))
            .bearer_auth(&operator)
            .json(&json!({ "id": format!("tenant-{n}"), "display_name": "T" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tenant = created["secret"].as_str().unwrap();
        let response = client
            .post(format!("{url}/v1/installs"))
            .bearer_auth(tenant)
            .json(&json!({ "plugin": "nexus-labs/pii-redactor", "consent": consent, "plan": "team" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{}", response.text().await.unwrap());
    }
    drop(server);
    assert_eq!(charge_counts(&data).await, (SUBSCRIBERS as i64, SUBSCRIBERS as i64));

    // 92 days on, three more periods are due for each; the run is killed partway.
    let later = (92 * 24 * 60 * 60 * 1000i64).to_string();
    let clock = [("NEXUS_CLOCK_OFFSET_MS", later.as_str())];
    let paused = [clock[0], ("NEXUS_TEST_PAUSE_AT", pause.unwrap_or_default())];
    let mut server = market.serve(&["--billing-interval-secs", "0"], if pause.is_some() { &paused } else { &clock });
    let run = {
        let (client, url, operator) = (client.clone(), server.url.clone(), operator.clone());
        tokio::spawn(async move {
            client.post(format!("{url}/v1/billing/runs")).bearer_auth(&operator).json(&json!({})).send().await
        })
    };
    let due = (SUBSCRIBERS * 4) as i64;
    let at_kill = match pause {
        Some(point) => {
            server.wait_for_line(&format!("paused at {point}"));
            charge_counts(&data).await
        }
        None => loop {
            let counts = charge_counts(&data).await;
            if counts.0 >= SUBSCRIBERS as i64 + 40 {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        },
    };
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    assert!(run.await.unwrap().is_err(), "the run answered before the kill");
    assert!(at_kill.1 < due, "the kill landed after the run collected everything: {at_kill:?}");

    // Restarted, the operator runs billing again (twice: the second finds nothing).
    let restarted = market.serve(&["--billing-interval-secs", "0"], &clock);
    let mut reports = Vec::new();
    for _ in 0..2 {
        reports.push(call(&client, reqwest::Method::POST, &restarted.url, "/v1/billing/runs", &operator).await);
    }
    assert_eq!(
        (reports[1]["charges_created"].as_i64(), reports[1]["collected"].as_i64()),
        (Some(0), Some(0)),
        "{reports:?}"
    );
    let verify = call(&client, reqwest::Method::GET, &restarted.url, "/v1/ledger/verify", &operator).await;
    assert_eq!(verify["ok"], true, "{verify}");
    drop(restarted);

    assert_eq!(charge_counts(&data).await, (due, due), "four periods per subscriber, each charged and collected once");
    let db = nexus_registry::Db::sqlite_in(&data).await.unwrap();
    let succeeded: Vec<i64> =
        sqlx::query_scalar("SELECT COUNT(*) FROM payment_attempts WHERE status = 'succeeded' GROUP BY charge_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(succeeded, vec![1; due as usize], "one successful attempt per charge");
    // And the provider itself took each charge's money once.
    let charge_of = |entry: &Value| entry["key"].as_str().unwrap().split(':').next().unwrap().to_string();
    let (payments, charges) = journaled_successes(&data, "collection", charge_of);
    assert_eq!((payments, charges.len()), (due as usize, due as usize));
}

const PARTNERS: usize = 150;

async fn payout_counts(data: &std::path::Path) -> (i64, i64) {
    let db = nexus_registry::Db::sqlite_in(data).await.unwrap();
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payouts").fetch_one(&db.pool).await.unwrap();
    let paid: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM payouts WHERE status = 'paid'").fetch_one(&db.pool).await.unwrap();
    db.close().await;
    (total, paid)
}

#[test]
fn a_payout_run_killed_midway_pays_every_partner_exactly_once() {
    super::common::runtime().block_on(async {
        let market = super::common::RealMarket::new();
        let (data, operator) = (market.data.clone(), market.operator.clone());
        let args = ["--billing-interval-secs", "0", "--payout-interval-secs", "0"];
        let server = market.serve(&args, &[]);
        let client = reqwest::Client::new();
        // Partners owed 100.00 EUR each (an operator's adjustment, the quickest way to a balance).
        for n in 0..PARTNERS {
            let id = format!("partner-{n}");
            let response = client
                .post(format!("{}/v1/publishers", server.url))
                .bearer_auth(&operator)
                .json(&json!({ "id": id, "display_name": "P" }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201);
            let response = client
                .post(format!("{}/v1/publishers/{id}/adjustments", server.url))
                .bearer_auth(&operator)
                .header("idempotency-key", format!("seed-{n}"))
                .json(&json!({ "currency": "EUR", "amount_minor": 10000, "reason": "opening balance" }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201, "{}", response.text().await.unwrap());
        }
        drop(server);

        let mut server = market.serve(&args, &[]);
        let run = {
            let (client, url, operator) = (client.clone(), server.url.clone(), operator.clone());
            tokio::spawn(async move {
                client.post(format!("{url}/v1/payouts/runs")).bearer_auth(&operator).json(&json!({})).send().await
            })
        };
        let at_kill = loop {
            let counts = payout_counts(&data).await;
            if counts.0 >= 30 {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        assert!(run.await.unwrap().is_err(), "the run answered before the kill");
        assert!(at_kill.1 < PARTNERS as i64, "the kill landed after every payout: {at_kill:?}");

        // Restarted after the claims expired, the operator runs payouts again (twice).
        let later = [("NEXUS_CLOCK_OFFSET_MS", "120000")];
        let restarted = market.serve(&args, &later);
        let mut reports = Vec::new();
        for _ in 0..2 {
            reports.push(call(&client, reqwest::Method::POST, &restarted.url, "/v1/payouts/runs", &operator).await);
        }
        assert_eq!(reports[1]["paid"], 0, "{reports:?}");
        let verify = call(&client, reqwest::Method::GET, &restarted.url, "/v1/ledger/verify", &operator).await;
        assert_eq!(verify["ok"], true, "{verify}");
        drop(restarted);

        assert_eq!(payout_counts(&data).await, (PARTNERS as i64, PARTNERS as i64), "one paid payout per partner");
        let (payments, paid) =
            journaled_successes(&data, "payout", |entry| entry["party"].as_str().unwrap().to_string());
        assert_eq!((payments, paid.len()), (PARTNERS, PARTNERS), "the provider paid each partner once");
    })
}

/// A purchase under an `Idempotency-Key` on a real server that is killed at `point` of the
/// request (`NEXUS_TEST_PAUSE_AT`), then sent again under the same key to the restarted
/// server. Returns the retry's status, whether it was a replay, and its body, after checking
/// that the tenant has one install and one collected charge, taken from the provider once.
async fn purchase_killed_at(point: &str) -> (u16, bool, Value) {
    let market = super::common::RealMarket::new();
    let (data, operator) = (market.data.clone(), market.operator.clone());
    let args = ["--billing-interval-secs", "0"];
    let client = reqwest::Client::new();
    let (tenant, body) = {
        let server = market.serve(&args, &[]);
        market.publish(&server.url, "pii-redactor");
        let created = client
            .post(format!("{}/v1/tenants", server.url))
            .bearer_auth(&operator)
            .json(&json!({ "id": "globex", "display_name": "Globex" }))
            .send()
            .await
            .unwrap();
        let created: Value = created.json().await.unwrap();
        let consent = json!({ "capabilities": ["log", "config", "usage"], "hosts": [] });
        let body = json!({ "plugin": "nexus-labs/pii-redactor", "consent": consent, "plan": "team" });
        (created["secret"].as_str().unwrap().to_string(), body)
    };
    let purchase = |url: String| {
        let (client, tenant, body) = (client.clone(), tenant.clone(), body.clone());
        async move {
            client
                .post(format!("{url}/v1/installs"))
                .bearer_auth(&tenant)
                .header("idempotency-key", "buy-team")
                .json(&body)
                .send()
                .await
        }
    };

    let mut server = market.serve(&args, &[("NEXUS_TEST_PAUSE_AT", point)]);
    let first = tokio::spawn(purchase(server.url.clone()));
    server.wait_for_line(&format!("paused at {point}"));
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    assert!(first.await.unwrap().is_err(), "the first request answered before the kill");

    let restarted = market.serve(&args, &[]);
    let retry = purchase(restarted.url.clone()).await.unwrap();
    let status = retry.status().as_u16();
    let replayed = retry.headers().contains_key("idempotent-replayed");
    let answer: Value = retry.json().await.unwrap();
    drop(restarted);

    let db = nexus_registry::Db::sqlite_in(&data).await.unwrap();
    let installs: Vec<String> =
        sqlx::query_scalar("SELECT id FROM installs WHERE tenant_id = 'globex'").fetch_all(&db.pool).await.unwrap();
    assert_eq!(installs, [answer["id"].as_str().unwrap_or_default().to_string()], "{answer}");
    db.close().await;
    assert_eq!(charge_counts(&data).await, (1, 1), "one charge, collected");
    let charge_of = |entry: &Value| entry["key"].as_str().unwrap().split(':').next().unwrap().to_string();
    let (payments, charges) = journaled_successes(&data, "collection", charge_of);
    assert_eq!((payments, charges.len()), (1, 1), "the provider took the money once");
    (status, replayed, answer)
}

#[test]
fn a_purchase_killed_between_its_effect_and_its_answer_replays_the_install_it_made() {
    super::common::runtime().block_on(async {
        let (status, replayed, answer) = purchase_killed_at("idempotency.before_answer").await;
        assert_eq!((status, replayed), (201, true), "{answer}");
        assert_eq!((answer["plan"].as_str(), answer["status"].as_str()), (Some("team"), Some("active")), "{answer}");
    })
}

#[test]
fn a_purchase_killed_before_its_effect_runs_at_once_when_retried() {
    super::common::runtime().block_on(async {
        let (status, replayed, answer) = purchase_killed_at("idempotency.before_run").await;
        assert_eq!((status, replayed), (201, false), "{answer}");
        assert_eq!(answer["status"], "active", "{answer}");
    })
}
