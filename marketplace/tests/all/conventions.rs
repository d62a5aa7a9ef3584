//! The API's conventions, whatever the route: the error shape and exact status of bad
//! bodies and queries, idempotency keys, the OpenAPI document, the metrics, the circuit
//! breaker and the per-tenant rate limit.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use nexus_marketplace::runner::TenantLimits;
use nexus_registry::ErrorCode;
use serde_json::{Value, json};
use sqlx::Row;

use super::common::{Env, Options, on_both, runtime};

/// Sends `body` with `content_type` (none when `None`) as `token`.
async fn send(
    env: &Env,
    method: &str,
    uri: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let (status, headers, bytes) = env.raw(request.body(body.into()).unwrap()).await;
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Asserts the answer is the API's error shape, `{"error": {"code", "message"}}` and nothing
/// else, with `status` and `code`.
fn assert_error(what: &str, (status, body): (StatusCode, Value), want: StatusCode, code: &str) {
    assert_eq!((status, body["error"]["code"].as_str()), (want, Some(code)), "{what}: {body}");
    let error = body["error"].as_object().unwrap();
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    let keys: Vec<&str> = error.keys().map(String::as_str).collect();
    assert_eq!(
        (body.as_object().map(|o| o.len()), keys),
        (Some(1), vec!["code", "message", "request_id"]),
        "{what}: {body}"
    );
    assert!(error["request_id"].as_str().is_some_and(|id| id.starts_with("req_")), "{what}: {body}");
}

#[test]
fn bad_bodies_get_the_error_shape_with_the_exact_status() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let install = env.install(&globex, "nexus-labs/echo", json!({})).await["id"].as_str().unwrap().to_string();
        let install = format!("/v1/installs/{install}");
        let json = Some("application/json");
        let cases: [(&str, &str, &str, &str, StatusCode, &str); 12] = [
            ("POST", "/v1/events", &globex, r#"{"type": "a", "payload": "#, StatusCode::BAD_REQUEST, "malformed_json"),
            ("POST", "/v1/events", &globex, "not json", StatusCode::BAD_REQUEST, "malformed_json"),
            ("PATCH", &install, &globex, r#"{"config": {"#, StatusCode::BAD_REQUEST, "malformed_json"),
            (
                "POST",
                "/v1/events",
                &globex,
                r#"{"type": "a", "payload": {}, "colour": "red"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
            (
                "POST",
                "/v1/tenants",
                &env.operator,
                r#"{"id": "hooli", "display_name": "Hooli", "plan": "gold"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
            (
                "POST",
                "/v1/publishers/nexus-labs/tokens",
                &env.publisher,
                r#"{"scopes": ["publish"], "label": "ci", "owner": "me"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
            // Wrong types and missing fields are the same kind of mistake.
            (
                "POST",
                "/v1/events",
                &globex,
                r#"{"type": 5, "payload": {}}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
            (
                "POST",
                "/v1/events",
                &globex,
                r#"{"payload": {}}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
            (
                "PATCH",
                &install,
                &globex,
                r#"{"config": {"prefix": 1}}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
            (
                "POST",
                "/v1/installs",
                &globex,
                r#"{"plugin": ["nexus-labs/echo"]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
            (
                "POST",
                "/v1/tenants/globex/tokens",
                &globex,
                r#"{"scopes": ["everything"], "label": "x"}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
            (
                "POST",
                "/v1/plugins/nexus-labs/echo/versions/0.1.0/yank",
                &env.publisher,
                r#"{"reason": 7}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json_fields",
            ),
        ];
        for (method, uri, token, body, status, code) in cases {
            let (got, _, answer) = send(&env, method, uri, Some(token), json, body.to_string()).await;
            assert_error(&format!("{method} {uri} {body}"), (got, answer), status, code);
        }

        let event = json!({ "type": "order.created", "payload": {} }).to_string();
        for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            let (status, _, body) = send(&env, "POST", "/v1/events", Some(&globex), content_type, event.clone()).await;
            let what = format!("content type {content_type:?}");
            assert_error(&what, (status, body), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        }
        let (status, _, receipt) = send(&env, "POST", "/v1/events", Some(&globex), json, event).await;
        assert_eq!((status, receipt["deliveries"][0]["outcome"].as_str()), (StatusCode::OK, Some("ok")), "{receipt}");

        // One byte over the JSON limit, and well-formed: refused for its size alone.
        let padding = "x".repeat(nexus_marketplace::server::MAX_JSON_BYTES);
        let big = json!({ "type": "order.created", "payload": padding }).to_string();
        let (status, _, body) = send(&env, "POST", "/v1/events", Some(&globex), json, big).await;
        assert_error("a body over 1 MiB", (status, body), StatusCode::PAYLOAD_TOO_LARGE, "too_large");
        let (_, history) = env.get(&format!("{install}/invocations"), &globex).await;
        assert_eq!(history["total"], 1, "only the well-formed event ran");
    });
}

#[test]
fn bad_queries_and_unknown_ids_get_the_error_shape() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let install = env.install(&globex, "nexus-labs/echo", json!({})).await["id"].as_str().unwrap().to_string();
        let queries = [
            "/v1/catalog?per_page=abc",
            "/v1/catalog?bogus=1",
            "/v1/catalog?per_page=0",
            "/v1/catalog?sort=sideways",
            "/v1/catalog?featured=perhaps",
            "/v1/catalog?pricing=cheap",
            "/v1/catalog/nexus-labs/echo/consent?version=1",
            "/v1/installs?all=maybe",
            &format!("/v1/installs/{install}/invocations?per_page=many"),
            "/v1/audit?after=-x",
            "/v1/installs?per_page=0",
            "/v1/installs?page=0",
            "/v1/tenants?per_page=101",
            "/v1/plugins/nexus-labs/echo/versions?per_page=500",
            "/v1/publishers/nexus-labs/keys?page=0",
            "/v1/audit?per_page=101",
            &format!("/v1/installs/{install}/invocations?per_page=0"),
            &format!("/v1/installs/{install}/invocations?after=inv_unknown"),
            "/v1/plugins/nexus-labs/echo/resolve?bogus=1",
            "/v1/plugins/nexus-labs/echo/resolve",
        ];
        for uri in queries {
            let token =
                if uri.starts_with("/v1/audit") || uri.starts_with("/v1/tenants") { &env.operator } else { &globex };
            assert_error(uri, env.get(uri, token).await, StatusCode::BAD_REQUEST, "invalid_query");
        }
        let (status, page) = env.get("/v1/catalog?per_page=2&sort=name", &globex).await;
        assert_eq!((status, page["items"][0]["id"].as_str()), (StatusCode::OK, Some("nexus-labs/chat-notifier")));

        let unknown = "/v1/installs/ins_00000000000000ff";
        let event = json!({ "type": "x", "payload": {} });
        let not_found = [
            ("GET", unknown.to_string(), &globex, None),
            ("GET", unknown.to_string(), &env.operator, None),
            ("PATCH", unknown.to_string(), &globex, Some(json!({ "config": {} }))),
            ("DELETE", unknown.to_string(), &globex, None),
            ("GET", format!("{unknown}/invocations"), &globex, None),
            ("POST", format!("{unknown}/resume"), &globex, None),
            ("POST", format!("{unknown}/invoke"), &globex, Some(event)),
            ("POST", format!("{unknown}/upgrade"), &globex, Some(json!({ "consent": {} }))),
            ("DELETE", "/v1/tenants/globex/tokens/tok_00000000".to_string(), &globex, None),
            ("GET", "/v1/catalog/nexus-labs/nope".to_string(), &globex, None),
        ];
        for (method, uri, token, body) in not_found {
            let body = body.map(|b| b.to_string());
            let answer = env.call(method, &uri, Some(token), body.as_deref()).await;
            assert_error(&format!("{method} {uri}"), answer, StatusCode::NOT_FOUND, "not_found");
        }
    });
}

/// POSTs `body` as `token` with an `Idempotency-Key`.
async fn keyed(env: &Env, uri: &str, token: &str, key: &str, body: &Value) -> (StatusCode, HeaderMap, Vec<u8>) {
    let request = Request::post(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    env.raw(request).await
}

/// What the idempotency layer keeps of a request to recognize it: sha256 of the method, the
/// path and the body as sent.
fn idempotency_fingerprint(method: &str, path: &str, body: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("{method} {path}\n{body}")))
}

fn replayed(headers: &HeaderMap) -> Option<&str> {
    headers.get("idempotent-replayed").map(|v| v.to_str().unwrap())
}

async fn audit_count(env: &Env, action: &str) -> u64 {
    let (_, page) = env.get(&format!("/v1/audit?action={action}"), &env.operator).await;
    page["total"].as_u64().unwrap()
}

#[test]
fn a_retry_with_the_same_idempotency_key_gets_the_first_answer() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        // A create that succeeded answers its retry with the first answer, the token secret
        // left out (it is shown once): one tenant, one token.
        let hooli = json!({ "id": "hooli", "display_name": "Hooli" });
        let (status, headers, first) = keyed(&env, "/v1/tenants", &env.operator, "create-hooli", &hooli).await;
        assert_eq!((status, replayed(&headers)), (StatusCode::CREATED, None));
        let first: Value = serde_json::from_slice(&first).unwrap();
        assert!(first["secret"].as_str().is_some_and(|s| s.starts_with("nxt_")), "{first}");
        let (status, headers, again) = keyed(&env, "/v1/tenants", &env.operator, "create-hooli", &hooli).await;
        let again: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!((status, replayed(&headers)), (StatusCode::CREATED, Some("true")), "{again}");
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["tenant"], "hooli");
        assert!(again.get("secret").is_none(), "{again}");
        assert_eq!(again["secret_shown_once"], true);
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE response LIKE '%nxt_%'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(kept, 0, "no stored answer holds a secret");
        assert_eq!(audit_count(&env, "tenant.created").await, 1);

        // A refusal took no effect and is not kept: the corrected request runs under the key.
        let bad = json!({ "id": "Bad Id", "display_name": "x" });
        let (status, ..) = keyed(&env, "/v1/tenants", &env.operator, "create-acme", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let good = json!({ "id": "acme", "display_name": "Acme" });
        let (status, headers, _) = keyed(&env, "/v1/tenants", &env.operator, "create-acme", &good).await;
        assert_eq!((status, replayed(&headers)), (StatusCode::CREATED, None));

        // Installs: one install however often the request is retried; keys are per caller.
        let globex = env.tenant("globex").await;
        let initech = env.tenant("initech").await;
        let (_, preview) = env.get("/v1/catalog/nexus-labs/echo/consent", &globex).await;
        let install = json!({ "plugin": "nexus-labs/echo", "consent": super::common::consent_for(&preview) });
        let (status, headers, first) = keyed(&env, "/v1/installs", &globex, "install-echo", &install).await;
        assert_eq!((status, replayed(&headers)), (StatusCode::CREATED, None));
        let created: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(headers[header::LOCATION], format!("/v1/installs/{}", created["id"].as_str().unwrap()));
        let (status, headers, again) = keyed(&env, "/v1/installs", &globex, "install-echo", &install).await;
        assert_eq!((status, replayed(&headers), &again), (StatusCode::CREATED, Some("true"), &first));
        let (status, body) = env.post("/v1/installs", &globex, install.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("already_installed")));
        let other = json!({ "plugin": "nexus-labs/pii-redactor", "consent": { "capabilities": ["log", "config"] } });
        let (status, _, body) = keyed(&env, "/v1/installs", &globex, "install-echo", &other).await;
        let body = serde_json::from_slice(&body).unwrap();
        assert_error(
            "same key, other body",
            (status, body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        );
        // A replay does not outlive its token.
        let (_, spare) = env
            .post("/v1/tenants/globex/tokens", &globex, json!({ "scopes": ["installs", "read"], "label": "spare" }))
            .await;
        let spare_secret = spare["secret"].as_str().unwrap();
        let (status, ..) = keyed(&env, "/v1/installs", spare_secret, "spare-key", &install).await;
        assert_eq!(status, StatusCode::CONFLICT, "already installed");
        let revoke = format!("/v1/tenants/globex/tokens/{}", spare["id"].as_str().unwrap());
        let (status, _) = env.call("DELETE", &revoke, Some(&globex), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, body) = keyed(&env, "/v1/installs", spare_secret, "spare-key", &install).await;
        let body = serde_json::from_slice(&body).unwrap();
        assert_error("revoked token replay", (status, body), StatusCode::UNAUTHORIZED, "token_revoked");
        let (_, listed) = env.get("/v1/installs", &globex).await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(audit_count(&env, "install.created").await, 1);

        let (status, headers, theirs) = keyed(&env, "/v1/installs", &initech, "install-echo", &install).await;
        assert_eq!((status, replayed(&headers)), (StatusCode::CREATED, None), "another caller's key is its own");
        let (first, theirs): (Value, Value) =
            (serde_json::from_slice(&first).unwrap(), serde_json::from_slice(&theirs).unwrap());
        assert_eq!((first["tenant"].as_str(), theirs["tenant"].as_str()), (Some("globex"), Some("initech")));
        assert_ne!(first["id"], theirs["id"]);

        // A claim left by a version before keys committed with their effect (no request id,
        // no answer) took no known effect: the key runs again at once.
        let caller: String = sqlx::query_scalar("SELECT caller FROM idempotency_keys WHERE key = 'create-acme'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        let legacy = json!({ "id": "legacy", "display_name": "Legacy" });
        let now = nexus_registry::db::now_ms();
        sqlx::query(
            "INSERT INTO idempotency_keys (caller, key, request_sha256, status, created_at) VALUES ($1, 'old', $2, 0, $3)",
        )
        .bind(&caller)
        .bind(idempotency_fingerprint("POST", "/v1/tenants", &legacy))
        .bind(now)
        .execute(env.market.db.writer())
        .await
        .unwrap();
        let (status, headers, _) = keyed(&env, "/v1/tenants", &env.operator, "old", &legacy).await;
        assert_eq!((status, replayed(&headers)), (StatusCode::CREATED, None));
        // The legacy claim is gone: the key's row is now this request's, with its answer.
        let row = sqlx::query("SELECT request_id, status FROM idempotency_keys WHERE key = 'old'")
            .fetch_all(&env.market.db.pool)
            .await
            .unwrap();
        let rows: Vec<(Option<String>, i64)> = row.iter().map(|r| (r.get("request_id"), r.get("status"))).collect();
        assert!(matches!(rows.as_slice(), [(Some(_), 201)]), "{rows:?}");

        // Keys are kept 24 h: the sweep removes the expired ones, and only them.
        let keys = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM idempotency_keys").fetch_one(&env.market.db.pool).await
        };
        let before = keys().await.unwrap();
        assert_eq!(nexus_marketplace::server::sweep_expired_keys(&env.market.db, now).await.unwrap(), 0);
        let day_later = now + 24 * 60 * 60 * 1000 + 60_000;
        sqlx::query("UPDATE idempotency_keys SET created_at = $1 WHERE key = 'create-hooli'")
            .bind(now + 120_000)
            .execute(env.market.db.writer())
            .await
            .unwrap();
        assert_eq!(
            nexus_marketplace::server::sweep_expired_keys(&env.market.db, day_later).await.unwrap(),
            before as u64 - 1
        );
        assert_eq!(keys().await.unwrap(), 1, "the key created later is kept");
    });
}

#[test]
fn parallel_retries_with_one_key_mint_one_token_and_never_fail() {
    on_both(|postgres| async move {
        let env = std::sync::Arc::new(Env::new(postgres).await);
        let globex = env.tenant("globex").await;
        let mut retries = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (env, globex) = (env.clone(), globex.clone());
            retries.spawn(async move {
                let body = json!({ "scopes": ["read"], "label": "ci" });
                let (status, _, body) = keyed(&env, "/v1/tenants/globex/tokens", &globex, "mint-ci", &body).await;
                (status, serde_json::from_slice::<Value>(&body).unwrap())
            });
        }
        let (mut created, mut secrets, mut ids) = (0, 0, std::collections::BTreeSet::new());
        while let Some(answer) = retries.join_next().await {
            let (status, body) = answer.unwrap();
            match status {
                StatusCode::CREATED => {
                    created += 1;
                    secrets += usize::from(body.get("secret").is_some());
                    ids.insert(body["id"].as_str().unwrap().to_string());
                }
                StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "idempotency_in_progress", "{body}"),
                other => panic!("{other}: {body}"),
            }
        }
        assert!(created >= 1);
        assert_eq!((secrets, ids.len()), (1, 1), "one token minted, its secret shown once");
        let labelled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account_tokens WHERE label = 'ci'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(labelled, 1);
    });
}

#[test]
fn the_openapi_document_is_served_and_every_operation_documents_a_success() {
    runtime().block_on(async {
        let env = Env::with(false, Options { samples: false, ..Options::default() }).await;
        let (status, headers, doc) = send(&env, "GET", "/openapi.json", None, None, Body::empty()).await;
        assert_eq!((status, headers[header::CONTENT_TYPE].to_str().unwrap()), (StatusCode::OK, "application/json"));
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
        assert_eq!(doc["info"]["title"], "Nexus marketplace API");
        // That it lists exactly the routes served is checked with the route table (authz.rs).
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths["/v1/events"]["post"].is_object(), "{}", doc["paths"]);
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} documents no success");
            }
        }
    });
}

/// Asserts `text` has `line` as one whole line.
fn assert_line(text: &str, line: &str) {
    assert!(text.lines().any(|candidate| candidate == line), "no line {line:?} in:\n{text}");
}

#[test]
fn metrics_count_requests_by_route_template_and_invocations_by_plugin() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let install = env.install(&globex, "nexus-labs/echo", json!({})).await["id"].as_str().unwrap().to_string();
        let (status, receipt) =
            env.post("/v1/events", &globex, json!({ "type": "order.created", "payload": {} })).await;
        assert_eq!((status, receipt["deliveries"][0]["outcome"].as_str()), (StatusCode::OK, Some("ok")));
        let (status, _) = env.get(&format!("/v1/installs/{install}"), &globex).await;
        assert_eq!(status, StatusCode::OK);

        let (status, headers, bytes) = env.raw(Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        // OpenMetrics: a counter family is named without `_total`, its samples with it.
        assert_eq!(headers[header::CONTENT_TYPE], "application/openmetrics-text; version=1.0.0; charset=utf-8");
        let text = String::from_utf8(bytes).unwrap();
        for line in [
            r#"nexus_invocations_total{plugin="nexus-labs/echo",outcome="ok"} 1"#,
            r#"nexus_invocation_duration_seconds_count{plugin="nexus-labs/echo"} 1"#,
            r#"nexus_http_requests_total{method="POST",route="/v1/events",status="200"} 1"#,
            r#"nexus_http_requests_total{method="POST",route="/v1/tenants",status="201"} 1"#,
            r#"nexus_http_requests_total{method="GET",route="/v1/catalog/{publisher}/{name}/consent",status="200"} 1"#,
            r#"nexus_http_requests_total{method="POST",route="/v1/installs",status="201"} 1"#,
            r#"nexus_http_requests_total{method="GET",route="/v1/installs/{id}",status="200"} 1"#,
            r#"nexus_http_request_duration_seconds_count{method="POST",route="/v1/events"} 1"#,
            "# TYPE nexus_invocations counter",
            "nexus_events_total 1",
            "nexus_event_deliveries_total 1",
        ] {
            assert_line(&text, line);
        }
        assert!(!text.contains(&install), "route labels are templates, never ids:\n{text}");
        assert!(text.ends_with("\n# EOF\n"), "an OpenMetrics exposition ends with # EOF:\n{text}");
    });
}

#[test]
fn a_failing_install_is_paused_after_five_failures_and_resumed_by_its_tenant() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let echo = env.install(&globex, "nexus-labs/echo", json!({})).await;
        // No `rates` in the config: every order fails with the plugin's invalid-config error.
        let tax = env.install(&globex, "nexus-labs/tax-calculator", json!({})).await;
        let tax_id = tax["id"].as_str().unwrap().to_string();
        let order = json!({ "order_id": "o-1", "amount_minor": 1000, "currency": "EUR", "region": "DE" });
        let error = "plugin error (InvalidConfig): config rates is not set";
        for attempt in 1..=5 {
            let event = json!({ "id": format!("evt-{attempt}"), "type": "order.created", "payload": order });
            let (status, receipt) = env.post("/v1/events", &globex, event).await;
            assert_eq!(status, StatusCode::OK, "{receipt}");
            let deliveries = receipt["deliveries"].as_array().unwrap();
            let failed = deliveries.iter().find(|d| d["install"] == tax["id"]).unwrap();
            let fine = deliveries.iter().find(|d| d["install"] == echo["id"]).unwrap();
            assert_eq!((failed["outcome"].as_str(), failed["error"].as_str()), (Some("plugin_error"), Some(error)));
            assert_eq!(failed.get("paused"), (attempt == 5).then_some(&json!(true)), "attempt {attempt}: {failed}");
            assert_eq!((fine["outcome"].as_str(), fine.get("paused")), (Some("ok"), None), "others keep running");
            assert!(receipt["skipped"].as_array().unwrap().is_empty());
        }
        let reason = format!("paused after 5 consecutive failures; the last: plugin_error: {error}");
        let (_, paused) = env.get(&format!("/v1/installs/{tax_id}"), &globex).await;
        assert_eq!(
            (paused["status"].as_str(), paused["status_reason"].as_str(), paused["consecutive_failures"].as_i64()),
            (Some("paused"), Some(reason.as_str()), Some(5))
        );
        assert_eq!(paused["paused_for"], "failures", "{paused}");

        let event = json!({ "id": "evt-6", "type": "order.created", "payload": order });
        let (status, receipt) = env.post("/v1/events", &globex, event.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            receipt["skipped"],
            json!([{ "install": tax_id, "plugin": "nexus-labs/tax-calculator", "reason": format!("paused: {reason}") }])
        );
        assert_eq!(receipt["deliveries"].as_array().map(|d| d.len()), Some(1), "only echo ran: {receipt}");
        let (status, body) = env.post(&format!("/v1/installs/{tax_id}/invoke"), &globex, event.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("install_paused")));

        let (status, resumed) = env.post(&format!("/v1/installs/{tax_id}/resume"), &globex, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{resumed}");
        assert_eq!(
            (resumed["status"].as_str(), &resumed["status_reason"], resumed["consecutive_failures"].as_i64()),
            (Some("active"), &Value::Null, Some(0))
        );
        let (status, body) = env.post(&format!("/v1/installs/{tax_id}/resume"), &globex, json!({})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_paused")));

        // Fixed, it runs again.
        let config = json!({ "config": { "rates": "DE=1900" } }).to_string();
        let (status, _) = env.call("PATCH", &format!("/v1/installs/{tax_id}"), Some(&globex), Some(&config)).await;
        assert_eq!(status, StatusCode::OK);
        let (_, receipt) = env.post("/v1/events", &globex, event).await;
        let taxed = receipt["deliveries"].as_array().unwrap().iter().find(|d| d["install"] == tax["id"]).unwrap();
        assert_eq!(taxed["outcome"], "ok", "{receipt}");

        let (_, log) = env.get(&format!("/v1/audit?target={tax_id}"), &env.operator).await;
        let actions: Vec<(&str, &str)> = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
            .filter(|(action, _)| matches!(*action, "install.paused" | "install.resumed"))
            .collect();
        let (_, me) = env.get("/v1/whoami", &globex).await;
        let tenant_actor = format!("tenant:globex:{}", me["token_id"].as_str().unwrap());
        assert_eq!(actions, [("install.resumed", tenant_actor.as_str()), ("install.paused", "system")]);
        let (_, paused) = env.get(&format!("/v1/audit?target={tax_id}&action=install.paused"), &env.operator).await;
        assert_eq!(paused["items"][0]["detail"], json!({ "reason": reason }));
        let (_, resumed) = env.get(&format!("/v1/audit?target={tax_id}&action=install.resumed"), &env.operator).await;
        assert_eq!(resumed["items"][0]["detail"], json!({ "was": reason }));
    });
}

#[test]
fn a_tenant_over_its_event_rate_gets_429_with_retry_after() {
    runtime().block_on(async {
        let limits = TenantLimits { events_per_second: 1, burst: 2, ..TenantLimits::default() };
        let env = Env::with(false, Options { tenant_limits: limits, samples: false, ..Options::default() }).await;
        let globex = env.tenant("globex").await;
        let initech = env.tenant("initech").await;
        let event = json!({ "type": "order.created", "payload": {} });
        for attempt in 1..=2 {
            let (status, receipt) = env.post("/v1/events", &globex, event.clone()).await;
            assert_eq!(status, StatusCode::OK, "attempt {attempt}: {receipt}");
        }
        let (status, headers, body) =
            send(&env, "POST", "/v1/events", Some(&globex), Some("application/json"), event.to_string()).await;
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_error("the third event in a second", (status, body), StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        let (status, _) = env.post("/v1/events", &initech, event).await;
        assert_eq!(status, StatusCode::OK, "the limit is per tenant");
    });
}

#[test]
fn unknown_routes_and_methods_get_the_error_shape() {
    super::common::runtime().block_on(async {
        let env = Env::with(false, super::common::Options { samples: false, ..Default::default() }).await;
        let (status, body) = env.call("GET", "/v1/nope", None, None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_route")));
        let (status, body) = env.call("DELETE", "/v1/catalog", None, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
        );
    });
}

#[test]
fn free_text_is_bounded_and_filters_match_literally() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let long = "x".repeat(50_000);
        let cases = [
            (
                "GET",
                format!("/v1/catalog?q={long}"),
                None,
                "invalid_query",
                "`q` must be at most 200 characters, got 50000",
            ),
            (
                "GET",
                format!("/v1/audit?actor={long}"),
                None,
                "invalid_query",
                "`actor` must be at most 200 characters, got 50000",
            ),
            (
                "GET",
                format!("/v1/audit?target={long}"),
                None,
                "invalid_query",
                "`target` must be at most 200 characters, got 50000",
            ),
            (
                "POST",
                "/v1/operator/tokens".to_string(),
                Some(json!({ "label": "l".repeat(101) })),
                "invalid_request",
                "`label` must be at most 100 characters, got 101",
            ),
            (
                "POST",
                "/v1/publishers".to_string(),
                Some(json!({ "id": "longname", "display_name": "d".repeat(101) })),
                "invalid_request",
                "invalid request: `display_name` must be at most 100 characters, got 101",
            ),
            (
                "POST",
                "/v1/catalog/nexus-labs/echo/delist".to_string(),
                Some(json!({ "reason": "r".repeat(501) })),
                "invalid_request",
                "`reason` must be at most 500 characters, got 501",
            ),
        ];
        for (method, uri, body, code, message) in cases {
            let body = body.map(|b| b.to_string());
            let answer = env.call(method, &uri, Some(&env.operator), body.as_deref()).await;
            assert_eq!(answer.1["error"]["message"], message, "{method} {}", &uri[..uri.len().min(60)]);
            assert_error(method, answer, StatusCode::BAD_REQUEST, code);
        }

        // `_` and `%` in the actor prefix match only themselves.
        env.tenant("globex").await;
        let (status, page) = env.get("/v1/audit?actor=operator%3A_", &env.operator).await;
        assert_eq!((status, page["total"].as_u64()), (StatusCode::OK, Some(0)), "{page}");
        let (_, page) = env.get("/v1/audit?actor=%25", &env.operator).await;
        assert_eq!(page["total"], 0, "{page}");
        let (_, page) = env.get("/v1/audit?actor=operator%3A", &env.operator).await;
        assert!(page["total"].as_u64().unwrap() > 0, "{page}");

        // A weak (small-order) signing key is never registered.
        let zero = format!("ed25519:{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0u8; 32]));
        let (status, body) =
            env.post("/v1/publishers/nexus-labs/keys", &env.publisher, json!({ "public_key": zero })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("weak (small-order)"), "{body}");
    });
}

#[test]
fn every_answer_has_a_request_id_and_every_error_the_json_shape() {
    runtime().block_on(async {
        let env = Env::with(false, Options { samples: false, ..Options::default() }).await;
        let (status, headers, _) = send(&env, "GET", "/healthz", None, None, Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        let first = headers["x-request-id"].to_str().unwrap().to_string();
        assert!(first.starts_with("req_") && first.len() == 28, "{first}");
        let (_, headers, _) = send(&env, "GET", "/healthz", None, None, Body::empty()).await;
        assert_ne!(headers["x-request-id"].to_str().unwrap(), first, "one id per request");

        // A path that is not UTF-8 is refused by axum's extractor as plain text; the answer
        // still comes in the one shape, with the same request id as its header.
        let request =
            Request::get("/v1/installs/%FF%FE").header(header::AUTHORIZATION, format!("Bearer {}", env.operator));
        let (status, headers, body) = env.raw(request.body(Body::empty()).unwrap()).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_error("invalid UTF-8 path", (status, body.clone()), StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(body["error"]["request_id"], headers["x-request-id"].to_str().unwrap());
    });
}

/// Every `$ref` in `value`.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target.clone());
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_is_valid_and_describes_errors_and_security() {
    runtime().block_on(async {
        let env = Env::with(false, Options { samples: false, ..Options::default() }).await;
        let (status, _, doc) = send(&env, "GET", "/openapi.json", None, None, Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        let mut problems = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let templated: Vec<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            for (method, operation) in item.as_object().unwrap() {
                let params = operation["parameters"].as_array().cloned().unwrap_or_default();
                let in_path: Vec<&str> =
                    params.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect();
                for param in &params {
                    let place = param["in"].as_str().unwrap_or_default();
                    if !["path", "query", "header"].contains(&place) {
                        problems.push(format!("{method} {path}: parameter {} in `{place}`", param["name"]));
                    }
                    if place == "path" && param["required"] != true {
                        problems.push(format!("{method} {path}: path parameter {} not required", param["name"]));
                    }
                }
                let mut declared = in_path.clone();
                declared.sort_unstable();
                let mut wanted = templated.clone();
                wanted.sort_unstable();
                if declared != wanted {
                    problems.push(format!("{method} {path}: path parameters {declared:?}, template {wanted:?}"));
                }
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('2')
                        && status != "204"
                        && response["content"].as_object().is_none_or(|c| c.is_empty())
                    {
                        problems.push(format!("{method} {path}: {status} has no body schema"));
                    }
                }
                if operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
                    != "#/components/schemas/ErrorBody"
                {
                    problems.push(format!("{method} {path}: no error response"));
                }
            }
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        for target in found {
            let name = target.trim_start_matches("#/components/schemas/");
            if doc["components"]["schemas"][name].is_null() {
                problems.push(format!("unresolved {target}"));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");

        // The error body's code is the list of every code, with what each means.
        assert_eq!(
            doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
        let listed = &doc["components"]["schemas"]["ErrorCode"];
        let every: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(listed["enum"], json!(every));
        let description = listed["description"].as_str().unwrap_or_default();
        assert!(ErrorCode::ALL.iter().all(|code| description.contains(code.meaning())), "{description}");

        // And the OpenAPI validator from PyPI, where it can be had (.ci/run installs it).
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), doc.to_string()).unwrap();
        let have = std::process::Command::new("python3").args(["-c", "import openapi_spec_validator"]).status();
        if !have.is_ok_and(|s| s.success()) {
            eprintln!("skipping openapi-spec-validator: `python3 -m pip install openapi-spec-validator` to run it");
            return;
        }
        let checked = std::process::Command::new("python3")
            .args(["-m", "openapi_spec_validator"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    });
}

#[test]
fn deleting_something_twice_answers_not_found_everywhere() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let install = env.install(&globex, "nexus-labs/echo", json!({})).await;
        let (_, token) =
            env.post("/v1/tenants/globex/tokens", &globex, json!({ "scopes": ["read"], "label": "x" })).await;
        let key = nexus_registry::signature::SecretKey::generate().unwrap().public_key();
        let (status, _) =
            env.post("/v1/publishers/nexus-labs/keys", &env.publisher, json!({ "public_key": key.to_string() })).await;
        assert_eq!(status, StatusCode::CREATED);
        let deletions = [
            (format!("/v1/installs/{}", install["id"].as_str().unwrap()), globex.clone()),
            (format!("/v1/tenants/globex/tokens/{}", token["id"].as_str().unwrap()), globex.clone()),
            (format!("/v1/publishers/nexus-labs/keys/{}", key.fingerprint()), env.publisher.clone()),
        ];
        for (uri, token) in deletions {
            let (first, _) = env.call("DELETE", &uri, Some(&token), None).await;
            assert!(first.is_success(), "{uri}: {first}");
            let again = env.call("DELETE", &uri, Some(&token), None).await;
            assert_error(&uri, again, StatusCode::NOT_FOUND, "not_found");
        }
    });
}

#[test]
fn growing_lists_page_by_cursor_without_repeating_items() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tenant = env.tenant("globex").await;
        let install = env.install(&tenant, "nexus-labs/echo", json!({})).await;
        let id = install["id"].as_str().unwrap();
        let send = |n: u32| {
            let (env, tenant) = (&env, &tenant);
            async move {
                let (status, _) = env.post("/v1/events", tenant, json!({ "type": "n", "payload": { "n": n } })).await;
                assert_eq!(status, StatusCode::OK);
            }
        };
        for n in 0..5 {
            send(n).await;
        }
        // Read two at a time while events keep arriving: nothing seen twice, nothing skipped
        // of what existed when reading began.
        let mut seen = Vec::new();
        let mut uri = format!("/v1/installs/{id}/invocations?per_page=2");
        loop {
            let (status, page) = env.get(&uri, &tenant).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            seen.extend(page["items"].as_array().unwrap().iter().map(|r| r["event_id"].clone()));
            send(100).await;
            match page["next_after"].as_str() {
                Some(after) => {
                    assert_eq!(page["has_more"], true);
                    uri = format!("/v1/installs/{id}/invocations?per_page=2&after={after}");
                }
                None => {
                    assert_eq!(page["has_more"], false);
                    break;
                }
            }
        }
        let payloads: Vec<String> = seen.iter().map(|v| v.to_string()).collect();
        let unique: std::collections::BTreeSet<&String> = payloads.iter().collect();
        assert_eq!((seen.len(), unique.len()), (5, 5), "{payloads:?}");
    });
}

/// Codes are raised as `ErrorCode` (the types refuse a `&str`); this catches the one way
/// left around it, a code written into a JSON body by hand.
#[test]
fn no_error_code_is_written_by_hand() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut unlisted = Vec::new();
    let mut folders: Vec<std::path::PathBuf> =
        ["registry/src", "marketplace/src", "marketplace/domain/src"].iter().map(|f| root.join(f)).collect();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices("\"code\"") {
                    let rest = text[at + "\"code\"".len()..].trim_start();
                    let Some(literal) = rest.strip_prefix(':').map(str::trim_start).and_then(|r| r.strip_prefix('"'))
                    else {
                        continue;
                    };
                    let code = &literal[..literal.find('"').unwrap_or(0)];
                    if ErrorCode::parse(code).is_none() {
                        unlisted.push(format!("{}: `{code}`", path.display()));
                    }
                }
            }
        }
    }
    assert!(unlisted.is_empty(), "codes written by hand and not in ErrorCode: {unlisted:#?}");
}
