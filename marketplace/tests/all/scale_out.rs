//! Several `nexus serve` nodes on one PostgreSQL: started at the same moment on a fresh
//! database, every node comes up and the migrations are applied exactly once.

use std::io::BufRead;
use std::process::{Command, Stdio};

/// Starts `count` nodes at once on `url`; each one's first stdout line (or why it ended).
/// Their data folders go with `dirs`.
fn start_together(url: &str, count: usize, dirs: &[tempfile::TempDir]) -> Vec<(std::process::Child, String)> {
    start_with(url, count, dirs, &[])
}

/// [`start_together`] with extra `nexus serve` arguments.
fn start_with(
    url: &str,
    count: usize,
    dirs: &[tempfile::TempDir],
    extra: &[&str],
) -> Vec<(std::process::Child, String)> {
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    let children: Vec<std::process::Child> = dirs
        .iter()
        .take(count)
        .map(|dir| {
            Command::new(env!("CARGO_BIN_EXE_nexus"))
                .args(["serve", "--listen", "127.0.0.1:0", "--database", url, "--data-dir"])
                .arg(dir.path())
                .args(extra)
                .env("NEXUS_MASTER_KEY", &key)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|mut child| {
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            if line.is_empty() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
                line = format!("exited {:?}: {stderr}", child.wait().unwrap().code());
            }
            (child, line)
        })
        .collect()
}

#[test]
fn nodes_started_together_on_a_fresh_database_all_come_up() {
    for _ in 0..3 {
        let url = nexus_testkit::Postgres::shared().fresh_database();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes = start_together(&url, 3, &dirs);
        for (_, line) in &nodes {
            assert!(line.starts_with("nexus serving on http://127.0.0.1:"), "{line}");
        }
        for (mut child, _) in nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let migrated = super::common::runtime().block_on(async {
            let db = nexus_registry::Db::connect(&url).await.unwrap();
            let registry: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM registry_migrations").fetch_one(&db.pool).await.unwrap();
            let marketplace: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM marketplace_migrations").fetch_one(&db.pool).await.unwrap();
            (registry, marketplace)
        });
        let shipped = ["postgres", "common"]
            .iter()
            .map(|dir| {
                std::fs::read_dir(format!("{}/domain/migrations/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap().count()
            })
            .sum::<usize>();
        assert_eq!(migrated.1, shipped as i64, "each marketplace migration recorded once");
        assert!(migrated.0 >= 1);
    }
}

#[test]
fn one_installs_kv_across_two_nodes_never_conflicts() {
    use axum::http::{Request, StatusCode, header};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    super::common::runtime().block_on(async {
        let env = std::sync::Arc::new(super::common::Env::new(true).await);
        let (second, host) = second_node(&env).await;
        let conflict_attempts = {
            let (first, second) = (env.market.runner.host().metrics(), host.metrics());
            move |a: &nexus_host::Host, b: &nexus_host::Host| {
                a.metrics().invocations["kv_conflict"] - first.invocations["kv_conflict"]
                    + b.metrics().invocations["kv_conflict"]
                    - second.invocations["kv_conflict"]
            }
        };

        let tenant = env.tenant("globex").await;
        let install =
            env.install(&tenant, "nexus-labs/tax-calculator", json!({ "config": { "rates": "DE=1900" } })).await;
        // Both nodes load the component first, so the events below really run side by side.
        for (n, router) in [(100, env.router.clone()), (101, second.clone())] {
            let order = json!({ "order_id": "warm", "amount_minor": 1000, "currency": "EUR", "region": "DE" });
            let body = json!({ "id": format!("evt-{n}"), "type": "order.created", "payload": order }).to_string();
            let request = Request::post("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {tenant}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            assert_eq!(router.oneshot(request).await.unwrap().status(), StatusCode::OK);
        }
        let mut sends = tokio::task::JoinSet::new();
        for n in 0..24 {
            let router = if n % 2 == 0 { env.router.clone() } else { second.clone() };
            let tenant = tenant.clone();
            sends.spawn(async move {
                let order =
                    json!({ "order_id": format!("o-{n}"), "amount_minor": 1000, "currency": "EUR", "region": "DE" });
                let body = json!({ "id": format!("evt-{n}"), "type": "order.created", "payload": order }).to_string();
                let request = Request::post("/v1/events")
                    .header(header::AUTHORIZATION, format!("Bearer {tenant}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap();
                let response = router.oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
                (status, serde_json::from_slice::<Value>(&bytes).unwrap())
            });
        }
        while let Some(answer) = sends.join_next().await {
            let (status, receipt) = answer.unwrap();
            assert_eq!(status, StatusCode::OK, "{receipt}");
            assert_eq!(receipt["deliveries"][0]["outcome"], "ok", "{receipt}");
        }
        let pool = &env.market.db.pool;
        let id = install["id"].as_str().unwrap();
        let total: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM kv_entries WHERE install_id = $1 AND key = 'total/DE/EUR'")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(String::from_utf8(total).unwrap(), (26 * 190).to_string(), "no update lost");
        let conflicts: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM invocations WHERE install_id = $1 AND outcome <> 'ok'")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(conflicts, 0, "no conflict surfaced or recorded");
        // Nor any attempt discarded for one: the nodes took turns on the install's KV.
        assert_eq!(conflict_attempts(env.market.runner.host(), &host), 0);
    })
}

/// A second node on `env`'s database, with its own host (its own caches and in-process KV
/// locks): only the database can coordinate it with the first.
async fn second_node(env: &super::common::Env) -> (axum::Router, std::sync::Arc<nexus_host::Host>) {
    let host = std::sync::Arc::new(nexus_host::Host::new(nexus_host::HostConfig::default()).unwrap());
    let config = nexus_marketplace::MarketConfig {
        master_key: nexus_marketplace::secrets::MasterKey::generate().unwrap(),
        host: host.clone(),
        tenant_limits: nexus_marketplace::runner::TenantLimits::default(),
        billing: Default::default(),
        event_compile_wait: nexus_marketplace::runner::EVENT_COMPILE_WAIT,
        mailer: nexus_marketplace::mail::Mailer::files(
            std::env::temp_dir().join("nexus-outbox"),
            nexus_marketplace::mail::Mailer::DEFAULT_FROM,
        )
        .unwrap(),
    };
    let other = nexus_marketplace::Market::open(env.market.registry.clone(), config).await.unwrap();
    let state =
        nexus_marketplace::server::AppState { market: std::sync::Arc::new(other), public_url: "http://b".into() };
    (nexus_marketplace::server::app(state), host)
}

/// Sends one event through `router`; the first delivery's outcome.
async fn outcome_via(router: &axum::Router, tenant: &str) -> String {
    use tower::ServiceExt;
    let body = serde_json::json!({ "type": "ping", "payload": {} }).to_string();
    let request = axum::http::Request::post("/v1/events")
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {tenant}"))
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let receipt: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    receipt["deliveries"][0]["outcome"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_revoked_key_stops_a_warm_component_on_every_node_at_its_next_event() {
    super::common::runtime().block_on(async {
        let env = super::common::Env::new(true).await;
        let (second, _) = second_node(&env).await;
        let key = nexus_registry::SecretKey::generate().unwrap();
        env.market.registry.add_key(&env.publisher_credential, &key.public_key()).await.unwrap();
        let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
        let id: nexus_registry::PluginId = "nexus-labs/echo".parse().unwrap();
        let message = nexus_registry::signature::signing_message(
            &id,
            &"0.1.1".parse().unwrap(),
            &nexus_host::Digest::of(&component),
        );
        let (_, _, manifest) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == "echo").unwrap();
        let request = nexus_registry::PublishRequest {
            manifest: manifest.replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1),
            component,
            claimed_digest: None,
            signature: Some(nexus_registry::SignedBy {
                key_fingerprint: key.public_key().fingerprint(),
                signature: key.sign(&message),
            }),
        };
        env.market.publish(&env.publisher_credential, request).await.unwrap();
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/echo", serde_json::json!({})).await;
        assert_eq!(install["version"], "0.1.1");
        // Both nodes have the component loaded and verified.
        assert_eq!(outcome_via(&env.router, &tenant).await, "ok");
        assert_eq!(outcome_via(&second, &tenant).await, "ok");

        let revoke = format!("/v1/publishers/nexus-labs/keys/{}", key.public_key().fingerprint());
        let (status, _) = env.call("DELETE", &revoke, Some(&env.publisher), None).await;
        assert_eq!(status, axum::http::StatusCode::NO_CONTENT);
        // The other node, warm, stops at once too.
        assert_eq!(outcome_via(&second, &tenant).await, "load_failed");
        assert_eq!(outcome_via(&env.router, &tenant).await, "load_failed");
    })
}

/// `url`'s `/metrics` value of `name`, if present.
async fn gauge(client: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = client.get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

async fn post_event(
    client: &reqwest::Client,
    url: &str,
    tenant: &str,
    id: &str,
    payload: serde_json::Value,
) -> Option<u16> {
    let event = serde_json::json!({ "id": id, "type": "order.created", "payload": payload });
    let response = client.post(format!("{url}/v1/events")).bearer_auth(tenant).json(&event).send().await.ok()?;
    Some(response.status().as_u16())
}

#[test]
fn three_nodes_share_the_limits_and_lose_one_without_losing_an_event() {
    let url = nexus_testkit::Postgres::shared().fresh_database();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let env = [("NEXUS_DATABASE_URL", url.as_str())];
    let token = |args: &[&str]| super::common::issued_token(&super::common::nexus(args, &env));
    // The migrations run when the first command opens the database.
    let operator = token(&["operator", "token"]);
    let publisher = token(&["publisher", "create", "nexus-labs"]);
    let mut nodes = start_with(&url, 3, &dirs, &["--tenant-rate", "1", "--tenant-burst", "300"]);
    let urls: Vec<String> = nodes
        .iter()
        .map(|(_, line)| {
            assert!(line.starts_with("nexus serving on http://"), "{line}");
            line.split_whitespace().nth(3).unwrap().to_string()
        })
        .collect();

    super::common::runtime().block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)).build().unwrap();
        // Each node sees the other two (after a heartbeat or two; up to 30 s on a loaded
        // machine) and takes a third of the limits.
        for node in &urls {
            let mut seen = 0.0;
            for _ in 0..300 {
                seen = gauge(&client, node, "nexus_live_nodes").await.unwrap_or(0.0);
                if seen == 3.0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(seen, 3.0, "{node} sees every node");
            assert_eq!(gauge(&client, node, "nexus_tenant_burst_share").await, Some(100.0));
        }
        let nodes_page: serde_json::Value = client
            .get(format!("{}/v1/nodes", urls[0]))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(nodes_page["total"], 3, "{nodes_page}");
        assert!(nodes_page["items"].as_array().unwrap().iter().all(|n| n["live"] == true), "{nodes_page}");

        let (_, component, _) =
            nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == "tax-calculator").unwrap();
        let manifest =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-plugins/tax-calculator/nexus.toml");
        let config = dirs[0].path().join("config");
        let signer = [
            ("NEXUS_REGISTRY", urls[1].as_str()),
            ("NEXUS_TOKEN", publisher.as_str()),
            ("XDG_CONFIG_HOME", config.to_str().unwrap()),
        ];
        let generated = super::common::nexus(&["keys", "generate"], &signer);
        let fingerprint = String::from_utf8_lossy(&generated.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint ").map(str::to_owned))
            .unwrap();
        assert!(super::common::nexus(&["keys", "add"], &signer).status.success());
        let published =
            super::common::nexus(&["publish", component, "--manifest", manifest.to_str().unwrap()], &signer);
        assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
        let tenant = |id: &'static str| {
            let (client, url, operator) = (client.clone(), urls[0].clone(), operator.clone());
            async move {
                let body = serde_json::json!({ "id": id, "display_name": id });
                let created: serde_json::Value = client
                    .post(format!("{url}/v1/tenants"))
                    .bearer_auth(&operator)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                created["secret"].as_str().unwrap().to_string()
            }
        };

        // A tenant's burst of 300 holds for the whole marketplace: round-robin over three
        // nodes, 450 events get 300 through (plus what the 1/s rate refills meanwhile), not 450.
        let bursty = tenant("bursty").await;
        let mut accepted = 0;
        for n in 0..450 {
            let status = post_event(&client, &urls[n % 3], &bursty, &format!("b-{n}"), serde_json::json!({})).await;
            accepted += usize::from(status == Some(200));
        }
        assert!((300..=330).contains(&accepted), "{accepted} of 450 accepted");

        // Events round-robin while one node is killed: the client resends what failed to
        // another node; every event applies once, and no KV update is lost.
        let shopper = tenant("shopper").await;
        let install: serde_json::Value = client
            .post(format!("{}/v1/installs", urls[2]))
            .bearer_auth(&shopper)
            .json(&serde_json::json!({
                "plugin": "nexus-labs/tax-calculator",
                "consent": { "capabilities": ["log", "config", "kv", "usage"], "hosts": [] },
                "config": { "rates": "DE=1900" },
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let order = serde_json::json!({ "order_id": "o", "amount_minor": 1000, "currency": "EUR", "region": "DE" });
        for n in 0..60 {
            if n == 20 {
                let (child, _) = &mut nodes[2];
                child.kill().unwrap(); // SIGKILL, mid-load
                child.wait().unwrap();
            }
            let id = format!("s-{n}");
            let mut sent = post_event(&client, &urls[n % 3], &shopper, &id, order.clone()).await;
            for retry in [(n + 1) % 2, n % 2] {
                if sent == Some(200) {
                    break;
                }
                sent = post_event(&client, &urls[retry], &shopper, &id, order.clone()).await;
            }
            assert_eq!(sent, Some(200), "event {id}");
        }
        let db = nexus_registry::Db::connect(&url).await.unwrap();
        let id = install["id"].as_str().unwrap();
        let per_event: Vec<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM invocations WHERE install_id = $1 AND outcome = 'ok' GROUP BY event_id",
        )
        .bind(id)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!((per_event.len(), per_event.iter().all(|n| *n == 1)), (60, true));
        let total: Vec<u8> =
            sqlx::query_scalar("SELECT value FROM kv_entries WHERE install_id = $1 AND key = 'total/DE/EUR'")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(String::from_utf8(total).unwrap(), (60 * 190).to_string());

        // The signing key is revoked through one node; the other, warm, refuses at once.
        let revoke = [signer[0], signer[1], signer[2]];
        let revoke = revoke.map(|(k, v)| if k == "NEXUS_REGISTRY" { (k, urls[0].as_str()) } else { (k, v) });
        let revoked = super::common::nexus(&["keys", "revoke", &fingerprint], &revoke);
        assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
        let event = serde_json::json!({ "id": "after-revoke", "type": "order.created", "payload": order });
        let receipt: serde_json::Value = client
            .post(format!("{}/v1/events", urls[1]))
            .bearer_auth(&shopper)
            .json(&event)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(receipt["deliveries"][0]["outcome"], "load_failed", "{receipt}");
    });
    for (mut child, _) in nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `POST /v1/events` through `router`: status and receipt.
async fn event_via(router: &axum::Router, tenant: &str) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt;
    let body = serde_json::json!({ "type": "ping", "payload": {} }).to_string();
    let request = axum::http::Request::post("/v1/events")
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {tenant}"))
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The installs a receipt delivered to, and those it skipped with their reasons' first word.
fn delivered_and_skipped(receipt: &serde_json::Value) -> (Vec<String>, Vec<(String, String)>) {
    let delivered = receipt["deliveries"].as_array().unwrap().iter();
    let skipped = receipt["skipped"].as_array().unwrap().iter();
    (
        delivered.map(|d| d["install"].as_str().unwrap().to_string()).collect(),
        skipped
            .map(|s| {
                let reason = s["reason"].as_str().unwrap().split(':').next().unwrap().to_string();
                (s["install"].as_str().unwrap().to_string(), reason)
            })
            .collect(),
    )
}

#[test]
fn a_warm_node_sees_every_change_to_a_tenant_at_its_next_event() {
    super::common::on_both(|postgres| async move {
        if !postgres {
            return; // One node per SQLite file; the first node's own cache is the same code.
        }
        let env = super::common::Env::new(true).await;
        let (second, _) = second_node(&env).await;
        let tenant = env.tenant("globex").await;
        let echo = env.install(&tenant, "nexus-labs/echo", serde_json::json!({})).await;
        let echo = echo["id"].as_str().unwrap().to_string();
        // Both nodes have read the token and the installs.
        for router in [&env.router, &second] {
            assert_eq!(delivered_and_skipped(&event_via(router, &tenant).await.1), (vec![echo.clone()], vec![]));
        }

        // A new install on node A runs on warm node B at once.
        let pii = env.install(&tenant, "nexus-labs/pii-redactor", serde_json::json!({})).await;
        let pii = pii["id"].as_str().unwrap().to_string();
        let (_, receipt) = event_via(&second, &tenant).await;
        let (mut delivered, _) = delivered_and_skipped(&receipt);
        delivered.sort();
        let mut both = vec![echo.clone(), pii.clone()];
        both.sort();
        assert_eq!(delivered, both, "{receipt}");

        // A pause written on A (as the circuit breaker or a payment would) is skipped on B.
        sqlx::query("UPDATE installs SET status = 'paused', status_reason = 'paused by the test' WHERE id = $1")
            .bind(&pii)
            .execute(env.market.db.writer())
            .await
            .unwrap();
        let (_, receipt) = event_via(&second, &tenant).await;
        assert_eq!(delivered_and_skipped(&receipt), (vec![echo.clone()], vec![(pii.clone(), "paused".into())]));

        // An uninstall on A: gone on B.
        let (status, gone) = env.call("DELETE", &format!("/v1/installs/{pii}"), Some(&tenant), None).await;
        assert_eq!((status, gone["status"].as_str()), (axum::http::StatusCode::OK, Some("uninstalled")));
        let (_, receipt) = event_via(&second, &tenant).await;
        assert_eq!(delivered_and_skipped(&receipt), (vec![echo.clone()], vec![]));

        // A revoked token, known to B: refused on B at its next event.
        let (status, issued) = env
            .post(
                "/v1/tenants/globex/tokens",
                &env.operator,
                serde_json::json!({ "label": "sender", "scopes": ["events"] }),
            )
            .await;
        assert_eq!(status, axum::http::StatusCode::CREATED, "{issued}");
        let sender = issued["secret"].as_str().unwrap().to_string();
        assert_eq!(event_via(&second, &sender).await.0, axum::http::StatusCode::OK);
        let revoke = format!("/v1/tenants/globex/tokens/{}", issued["id"].as_str().unwrap());
        let (status, _) = env.call("DELETE", &revoke, Some(&env.operator), None).await;
        assert_eq!(status, axum::http::StatusCode::NO_CONTENT);
        let (status, refused) = event_via(&second, &sender).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (axum::http::StatusCode::UNAUTHORIZED, Some("token_revoked"))
        );
    })
}
