//! The registry's HTTP API, driven in process: status codes, the error shape, limits.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::common::{BOUNDARY, Env, Options, form, runtime};

struct Api {
    router: axum::Router,
    token: String,
    _env: Env,
}

async fn api(postgres: bool, publishes_per_minute: u32) -> Api {
    let env = Env::with(postgres, Options { publishes_per_minute, samples: false, ..Options::default() }).await;
    Api { router: env.router.clone(), token: env.publisher.clone(), _env: env }
}

fn manifest(version: &str) -> String {
    let (_, _, text) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == "echo").unwrap();
    text.replacen("version = \"0.1.0\"", &format!("version = \"{version}\""), 1)
}

impl Api {
    async fn call(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, axum::body::to_bytes(body, 64 << 20).await.unwrap().to_vec())
    }

    async fn publish(
        &self,
        token: Option<&str>,
        parts: &[(&str, &[u8])],
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let mut request = Request::post("/v1/publish")
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let (status, headers, body) = self.call(request.body(Body::from(form(parts))).unwrap()).await;
        (status, headers, serde_json::from_slice(&body).unwrap_or_default())
    }

    async fn json(&self, method: &str, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, body) = self.call(request).await;
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }
}

fn echo() -> Vec<u8> {
    nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap()
}

fn on_both<F: Fn(bool) -> Fut, Fut: Future<Output = ()>>(test: F) {
    for postgres in [false, true] {
        runtime().block_on(test(postgres));
    }
}

#[test]
fn publish_list_resolve_download_and_yank_over_http() {
    on_both(|postgres| async move {
        let api = api(postgres, 100).await;
        let component = echo();
        let manifest = manifest("1.0.0");
        let (status, _, body) =
            api.publish(Some(&api.token), &[("manifest", manifest.as_bytes()), ("component", &component)]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let digest = nexus_host::Digest::of(&component).to_string();
        assert_eq!(body["digest"], digest.as_str());
        assert_eq!(body["url"], "http://nexus.test/v1/plugins/nexus-labs/echo/versions/1.0.0");

        let (status, _, body) =
            api.publish(Some(&api.token), &[("manifest", manifest.as_bytes()), ("component", &component)]).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("version_exists")));

        let (status, list) = api.json("GET", "/v1/plugins/nexus-labs/echo/versions", "").await;
        assert_eq!(
            (status, list["items"].as_array().map(Vec::len), &list["total"]),
            (StatusCode::OK, Some(1), &serde_json::json!(1))
        );
        let (status, resolved) = api.json("GET", "/v1/plugins/nexus-labs/echo/resolve?req=%5E1", "").await;
        assert_eq!((status, resolved["version"].as_str()), (StatusCode::OK, Some("1.0.0")));

        let download =
            Request::get("/v1/plugins/nexus-labs/echo/versions/1.0.0/component").body(Body::empty()).unwrap();
        let (status, headers, bytes) = api.call(download).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-nexus-digest"], digest.as_str());
        assert_eq!(nexus_host::Digest::of(&bytes).to_string(), digest);

        let (status, yanked) =
            api.json("POST", "/v1/plugins/nexus-labs/echo/versions/1.0.0/yank", r#"{"reason":"leaks logs"}"#).await;
        assert_eq!((status, yanked["yank"]["reason"].as_str()), (StatusCode::OK, Some("leaks logs")));
        let (status, body) = api.json("GET", "/v1/plugins/nexus-labs/echo/resolve?req=%5E1", "").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_matching_version")));
    });
}

#[test]
fn health_and_readiness_answer() {
    on_both(|postgres| async move {
        let api = api(postgres, 100).await;
        let (status, body) = api.json("GET", "/healthz", "").await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
        let (status, body) = api.json("GET", "/readyz", "").await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    });
}

#[test]
fn bad_requests_get_a_4xx_with_a_stable_code() {
    on_both(|postgres| async move {
        let api = api(postgres, 100).await;
        let manifest = manifest("1.0.0");
        let component = echo();
        let parts: [(&str, &[u8]); 2] = [("manifest", manifest.as_bytes()), ("component", &component)];

        let cases = [
            (api.publish(None, &parts).await, StatusCode::UNAUTHORIZED, "unauthenticated"),
            (api.publish(Some("nexus_wrong"), &parts).await, StatusCode::UNAUTHORIZED, "unauthenticated"),
            (api.publish(Some(&api.token), &parts[..1]).await, StatusCode::BAD_REQUEST, "invalid_form"),
            (
                api.publish(Some(&api.token), &[("manifest", manifest.as_bytes()), ("component", b"junk")]).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_a_component",
            ),
            (
                api.publish(Some(&api.token), &[("manifest", b"id = 1"), ("component", &component)]).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "manifest_syntax",
            ),
            (
                api.publish(Some(&api.token), &[parts[0], parts[1], ("extra", b"x")]).await,
                StatusCode::BAD_REQUEST,
                "invalid_form",
            ),
        ];
        for ((status, _, body), want_status, want_code) in cases {
            assert_eq!((status, body["error"]["code"].as_str()), (want_status, Some(want_code)), "{body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }

        let too_big = vec![0u8; 34 << 20];
        let (status, _, body) =
            api.publish(Some(&api.token), &[("manifest", manifest.as_bytes()), ("component", &too_big)]).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large")));

        let yank = "/v1/plugins/nexus-labs/echo/versions/1.0.0/yank";
        let (status, body) = api.json("POST", yank, "{not json").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("malformed_json")));
        let (status, body) = api.json("POST", yank, r#"{"reason":"x","extra":1}"#).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_json_fields"))
        );
        let (status, body) = api.json("POST", yank, r#"{"reason":"x"}"#).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, body) = api.json("GET", "/v1/plugins/Nexus/echo/versions", "").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_id")));
        let (status, body) = api.json("GET", "/v1/plugins/nexus-labs/echo/versions/one", "").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_version")));
        let (status, body) = api.json("POST", "/v1/publishers/globex/keys", r#"{"public_key":"ed25519:AAAA"}"#).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("namespace_not_owned")));
    });
}

#[test]
fn uploads_larger_than_the_json_limit_are_accepted_on_the_publish_route() {
    runtime().block_on(async {
        let api = api(false, 100).await;
        // echo plus a 3 MiB custom section (id 0, LEB128 size, name "pad"): still a valid component.
        let mut component = echo();
        let payload = 3usize << 20;
        let size = payload + 4;
        let leb128 = [
            0x80 | (size & 0x7f) as u8,
            0x80 | ((size >> 7) & 0x7f) as u8,
            0x80 | ((size >> 14) & 0x7f) as u8,
            (size >> 21) as u8,
        ];
        component.push(0);
        component.extend_from_slice(&leb128);
        component.extend_from_slice(&[3, b'p', b'a', b'd']);
        component.resize(component.len() + payload, 0);
        let manifest = manifest("1.0.0");
        let (status, _, body) =
            api.publish(Some(&api.token), &[("manifest", manifest.as_bytes()), ("component", &component)]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["size"], component.len());
    });
}

#[test]
fn publishing_too_fast_gets_429_with_retry_after() {
    runtime().block_on(async {
        let api = api(false, 1).await;
        let component = echo();
        let first = manifest("1.0.0");
        let (status, ..) =
            api.publish(Some(&api.token), &[("manifest", first.as_bytes()), ("component", &component)]).await;
        assert_eq!(status, StatusCode::CREATED);
        let second = manifest("1.0.1");
        let (status, headers, body) =
            api.publish(Some(&api.token), &[("manifest", second.as_bytes()), ("component", &component)]).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
        let retry: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    });
}
