//! Several `nexus serve` nodes on one PostgreSQL: started at the same moment on a fresh
//! database, every node comes up and the migrations are applied exactly once.

use std::io::BufRead;
use std::process::{Command, Stdio};

/// Starts `count` nodes at once on `url`; each one's first stdout line (or why it ended).
/// Their data folders go with `dirs`.
fn start_together(url: &str, count: usize, dirs: &[tempfile::TempDir]) -> Vec<(std::process::Child, String)> {
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    let children: Vec<std::process::Child> = dirs
        .iter()
        .take(count)
        .map(|dir| {
            Command::new(env!("CARGO_BIN_EXE_nexus"))
                .args(["serve", "--listen", "127.0.0.1:0", "--database", url, "--data-dir"])
                .arg(dir.path())
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
        let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
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
