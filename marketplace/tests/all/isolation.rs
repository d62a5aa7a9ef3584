//! One tenant's plugin never costs another tenant anything: a tenant flooding the node with
//! slot-holding invocations gets back-pressure (503 `host_busy` with `Retry-After`), the
//! other tenant's events keep succeeding, and no install is paused for the host's condition.
//! A component over the host's per-plugin limits is refused at publish, and a component
//! still compiling on this node is answered busy, not run. On both backends.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, StatusCode, header};
use nexus_host::{Host, HostConfig};
use serde_json::{Value, json};

use super::common::{Env, Options, on_both};

const SLEEPER_MANIFEST: &str = r#"id = "nexus-labs/sleeper"
version = "0.1.0"
summary = "Sleeps for the number of milliseconds in the payload"
categories = ["developer-tools"]
license = "Apache-2.0"
contract = "1.0"
event-types = ["*"]

[[pricing]]
id = "free"
name = "Free"
model = "free"
"#;

/// Four slots, two per tenant, a short wait: small enough to flood from a test.
fn small_host() -> Arc<Host> {
    static HOST: std::sync::OnceLock<Arc<Host>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let config = HostConfig {
            max_concurrent: 4,
            max_concurrent_per_tenant: 2,
            slot_wait: Duration::from_millis(300),
            ..HostConfig::default()
        };
        Arc::new(Host::new(config).expect("host"))
    })
    .clone()
}

#[test]
fn a_flooding_tenant_gets_back_pressure_while_another_tenant_is_served() {
    on_both(|postgres| async move {
        let env = Arc::new(Env::with(postgres, Options { host: Some(small_host()), ..Options::default() }).await);
        env.publish_manifest(nexus_sample_plugins::SLEEPER, SLEEPER_MANIFEST).await.expect("publish sleeper");
        let attacker = env.tenant("attacker").await;
        let victim = env.tenant("victim").await;
        let hog = env.install(&attacker, "nexus-labs/sleeper", json!({})).await;
        let echo = env.install(&victim, "nexus-labs/echo", json!({ "config": { "prefix": "ok:" } })).await;

        let mut flood = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (env, attacker) = (env.clone(), attacker.clone());
            flood.spawn(async move {
                let request = Request::builder()
                    .method("POST")
                    .uri("/v1/events")
                    .header(header::AUTHORIZATION, format!("Bearer {attacker}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(json!({ "type": "hold", "payload": { "ms": 1500 } }).to_string().into())
                    .unwrap();
                let (status, headers, body) = env.raw(request).await;
                let retry = headers.get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
                (status, retry, serde_json::from_slice::<Value>(&body).unwrap())
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await;

        for n in 0..5 {
            let (status, receipt) =
                env.post("/v1/events", &victim, json!({ "type": "note", "payload": { "n": n } })).await;
            assert_eq!(status, StatusCode::OK, "{receipt}");
            assert_eq!(receipt["deliveries"][0]["outcome"], "ok", "{receipt}");
            assert_eq!(receipt["deliveries"][0]["data"], format!("ok:{{\"n\":{n}}}"));
        }

        let mut statuses = Vec::new();
        while let Some(answer) = flood.join_next().await {
            let (status, retry, body) = answer.unwrap();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(retry.as_deref(), Some("1"));
                assert_eq!(body["error"]["code"], "host_busy", "{body}");
                assert_eq!(body["error"]["details"]["busy_installs"], json!([hog["id"]]));
                assert_eq!(body["error"]["details"]["reason"], "capacity");
                assert_eq!(body["error"]["message"], "the plugin host is at capacity; retry in 1s", "{body}");
            } else {
                assert_eq!(body["deliveries"][0]["data"], "slept 1500", "{body}");
            }
            statuses.push(status.as_u16());
        }
        statuses.sort();
        assert_eq!(statuses, [200, 200, 503, 503, 503, 503]);

        // Busy deliveries never ran: two invocation records, and nobody's breaker moved.
        let (_, records) =
            env.get(&format!("/v1/installs/{}/invocations", hog["id"].as_str().unwrap()), &attacker).await;
        assert_eq!(records["items"].as_array().map(Vec::len), Some(2), "{records}");
        for (install, token) in [(&hog, &attacker), (&echo, &victim)] {
            let (_, now) = env.get(&format!("/v1/installs/{}", install["id"].as_str().unwrap()), token).await;
            assert_eq!(now["status"], "active", "{now}");
        }
    })
}

#[test]
fn a_component_over_the_per_plugin_limits_is_refused_at_publish() {
    on_both(|postgres| async move {
        let env = Env::with(postgres, Options { samples: false, ..Options::default() }).await;
        let manifest = SLEEPER_MANIFEST.replace("nexus-labs/sleeper", "nexus-labs/instance-hog");
        let error = env.publish_manifest(nexus_sample_plugins::INSTANCE_HOG, &manifest).await.unwrap_err();
        assert_eq!(error.code(), "exceeds_host_limits");
        assert!(error.to_string().contains("exceeds the configured maximum of 32"), "{error}");
        let (status, _) = env.call("GET", "/v1/plugins/nexus-labs/instance-hog/versions", None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    })
}

#[test]
fn a_consented_loopback_host_is_still_refused_by_the_hosted_marketplace() {
    on_both(|postgres| async move {
        let env = Env::with(postgres, Options { samples: false, ..Options::default() }).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let manifest = SLEEPER_MANIFEST.replace("nexus-labs/sleeper", "nexus-labs/caller").replace(
            "[[pricing]]",
            &format!(
                "[capabilities.http]\nreason = \"Calls the URL in the payload\"\n\
                 hosts = [{{ host = \"127.0.0.1:{port}\", reason = \"the marketplace's own loopback\" }}]\n\n[[pricing]]"
            ),
        );
        let request = nexus_registry::PublishRequest {
            manifest,
            component: nexus_sample_plugins::bytes(nexus_sample_plugins::HEADER_SMUGGLER).unwrap(),
            claimed_digest: None,
            signature: None,
        };
        let published = env.market.publish(&env.publisher_credential, request).await.unwrap();
        assert!(published.warnings.iter().any(|w| w.starts_with(&format!("host 127.0.0.1:{port} is a loopback"))));

        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/caller", json!({})).await;
        assert_eq!(install["grants"]["allowed_hosts"], json!([format!("127.0.0.1:{port}")]));
        let url = format!("http://127.0.0.1:{port}/admin");
        let payload = json!({ "url": url, "headers": [] });
        let (status, receipt) = env.post("/v1/events", &tenant, json!({ "type": "x", "payload": payload })).await;
        assert_eq!(status, StatusCode::OK, "{receipt}");
        assert_eq!(receipt["deliveries"][0]["outcome"], "plugin_error");
        assert_eq!(receipt["deliveries"][0]["error"], "plugin error (Denied): host 127.0.0.1 not allowed");
        let (_, records) =
            env.get(&format!("/v1/installs/{}/invocations", install["id"].as_str().unwrap()), &tenant).await;
        assert_eq!(records["items"][0]["denials"], 1);
        // Nothing connected to the listener.
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        assert!(accepted.is_err(), "the plugin reached loopback");
    })
}

/// A node that has not compiled a version yet (it started after the publish) answers an
/// event for it `host_busy`, reason `compiling`, within its compile wait, with the receipt
/// of what did run; nothing of the compiling install ran or was recorded. The compile goes
/// on in the background, and the client's retry with the same event id is served: the
/// install that ran the first time is replayed, not run again.
#[test]
fn an_event_whose_component_is_still_compiling_is_answered_busy_then_served_once() {
    on_both(|postgres| async move {
        // A host of its own, so evicting a component here costs no other test a compile.
        let host = Arc::new(Host::new(HostConfig::default()).expect("host"));
        // Far shorter than compiling tax-calculator (tens of milliseconds even on a fast
        // machine), long enough for a component already in memory.
        let options = Options {
            samples: false,
            host: Some(host.clone()),
            event_compile_wait: Duration::from_millis(1),
            ..Options::default()
        };
        let env = Env::with(postgres, options).await;
        for name in ["echo", "tax-calculator"] {
            let (_, path, manifest) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == name).unwrap();
            env.publish_manifest(path, manifest).await.expect("publish");
        }
        let tenant = env.tenant("globex").await;
        let echo = env.install(&tenant, "nexus-labs/echo", json!({ "config": { "prefix": "> " } })).await;
        let tax = env.install(&tenant, "nexus-labs/tax-calculator", json!({ "config": { "rates": "DE=1900" } })).await;
        // Publishing and installing compiled both on this node (the install's warm-up runs
        // in the background: loading the same bytes waits for it). Then forget
        // tax-calculator's, as a node that started after the install would not have it.
        let tax_bytes = nexus_sample_plugins::bytes(nexus_sample_plugins::TAX_CALCULATOR).unwrap();
        host.load(&tax_bytes).await.expect("tax-calculator loads");
        host.evict(&nexus_host::Digest::of(&tax_bytes));
        let order = json!({ "order_id": "o-1", "amount_minor": 1000, "currency": "EUR", "region": "DE" });
        let event = json!({ "id": "evt-compiling-1", "type": "order.created", "payload": order });
        let send = || async {
            let request = Request::builder()
                .method("POST")
                .uri("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {tenant}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(event.to_string().into())
                .unwrap();
            let (status, headers, body) = env.raw(request).await;
            let retry = headers.get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
            (status, retry, serde_json::from_slice::<Value>(&body).unwrap())
        };

        let (status, retry, body) = send().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "host_busy", "{body}");
        assert_eq!(body["error"]["details"]["reason"], "compiling", "{body}");
        assert_eq!(
            body["error"]["message"], "the plugin's component is still being compiled on this node; retry in 1s",
            "{body}"
        );
        assert_eq!(body["error"]["details"]["busy_installs"], json!([tax["id"]]), "{body}");
        let ran = &body["error"]["details"]["receipt"]["deliveries"];
        assert_eq!(ran.as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!((&ran[0]["install"], &ran[0]["outcome"]), (&echo["id"], &json!("ok")), "{body}");
        let invocations = |install: &Value| {
            let uri = format!("/v1/installs/{}/invocations", install["id"].as_str().unwrap());
            let env = &env;
            let tenant = &tenant;
            async move { env.get(&uri, tenant).await.1["items"].as_array().map(Vec::len) }
        };
        assert_eq!(invocations(&tax).await, Some(0), "a busy install runs nothing and records nothing");

        // The compile goes on without the request; retries are answered busy until it is done.
        let mut served = None;
        for _ in 0..600 {
            let (status, _, body) = send().await;
            if status == StatusCode::OK {
                served = Some(body);
                break;
            }
            assert_eq!(
                (status, &body["error"]["details"]["reason"]),
                (StatusCode::SERVICE_UNAVAILABLE, &json!("compiling"))
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let receipt = served.expect("served within 30 s of the first event");
        let deliveries = receipt["deliveries"].as_array().unwrap();
        let of = |install: &Value| deliveries.iter().find(|d| d["install"] == install["id"]).unwrap().clone();
        assert_eq!((of(&echo)["outcome"].clone(), of(&echo)["replayed"].clone()), (json!("ok"), json!(true)));
        // A delivery that ran now carries no `replayed` flag.
        assert_eq!((of(&tax)["outcome"].clone(), of(&tax)["replayed"].clone()), (json!("ok"), Value::Null));
        let taxed: Value = serde_json::from_str(of(&tax)["data"].as_str().unwrap()).unwrap();
        assert_eq!(taxed["tax_minor"].as_i64(), Some(190), "{receipt}");
        assert_eq!((invocations(&echo).await, invocations(&tax).await), (Some(1), Some(1)));
        let (_, now) = env.get(&format!("/v1/installs/{}", tax["id"].as_str().unwrap()), &tenant).await;
        assert_eq!(now["status"], "active", "{now}");
    })
}
