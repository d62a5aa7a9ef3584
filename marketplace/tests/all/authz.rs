//! Authorization, route by route and role by role: every route of the router is called as
//! every role with a valid request, and must allow (the exact 2xx) or deny (the exact status
//! and error code). Also: revoked and expired tokens are refused, one account cannot revoke
//! another's tokens or keys, and secrets set on an install appear in no response and no audit
//! entry. On SQLite and PostgreSQL.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use std::time::Duration;

use nexus_registry::{DbLimits, SecretKey};
use serde_json::{Value, json};

use super::common::{BOUNDARY, Env, Options, consent_for, form, manifest_of, on_both};

/// Who calls. `Tenant` (globex) owns the install under test; `OtherTenant` (initech) and
/// `OtherPublisher` (acme) own nothing of globex's or nexus-labs'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Anonymous,
    Operator,
    Publisher,
    OtherPublisher,
    Tenant,
    OtherTenant,
    /// A globex token with only the `read` scope.
    ReadOnly,
}

/// The order of the columns of every row of the table.
const ROLES: [Role; 7] = [
    Role::Anonymous,
    Role::Operator,
    Role::Publisher,
    Role::OtherPublisher,
    Role::Tenant,
    Role::OtherTenant,
    Role::ReadOnly,
];

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Operator => "operator",
            Self::Publisher => "publisher nexus-labs",
            Self::OtherPublisher => "publisher acme",
            Self::Tenant => "tenant globex (owner)",
            Self::OtherTenant => "tenant initech",
            Self::ReadOnly => "globex read-only token",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow(u16),
    Deny(u16, &'static str),
}

const OK: Expect = Expect::Allow(200);
const MADE: Expect = Expect::Allow(201);
const EMPTY: Expect = Expect::Allow(204);
/// No token.
const ANON: Expect = Expect::Deny(401, "unauthenticated");
/// The wrong role.
const DENY: Expect = Expect::Deny(403, "forbidden");
/// The right tenant without the scope.
const SCOPE: Expect = Expect::Deny(403, "missing_scope");
/// Another publisher's namespace.
const FOREIGN: Expect = Expect::Deny(403, "namespace_not_owned");
/// Another tenant's install or tokens: not even their existence is shown.
const HIDDEN: Expect = Expect::Deny(404, "not_found");
/// A tenant that never used the plugin reviewing it.
const NOT_REVIEWER: Expect = Expect::Deny(403, "review_not_allowed");

impl Expect {
    fn describe(self) -> String {
        match self {
            Self::Allow(status) => status.to_string(),
            Self::Deny(status, code) => format!("{status} {code}"),
        }
    }
}

/// Made anew before each call of a row, so that every role meets the same state and an
/// allowed call cannot change what the next role sees. Its id replaces `{fresh}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Nothing,
    TenantToken,
    OperatorToken,
    PublisherToken,
    PublisherKey,
    /// The install under test, paused for the call and active again after it.
    PausedInstall,
    /// A live tax-calculator install of globex, for uninstalling.
    LiveInstall,
    /// A new plan of echo, for retiring.
    Plan,
    /// A new webhook endpoint of globex, for deleting.
    Webhook,
    /// The call is made with a new token of the role's kind (it ends that token).
    OwnToken,
    /// A featured placement to come (an hour, on a day of its own), for ending.
    Placement,
    /// echo's icon, put up again for removing.
    Icon,
    /// echo's screenshot 2, put up again for removing.
    Screenshot,
}

enum Payload {
    Empty,
    /// JSON text; `{n}` becomes a number unique to the call, `{public_key}` a new key.
    Json(String),
    /// A publish form of chat-notifier at version `0.2.{n}`.
    Publish,
    /// A PNG image of this width and height, as a raw body.
    Png(u32, u32),
}

struct Route {
    method: &'static str,
    path: String,
    payload: Payload,
    fresh: Fresh,
    /// Sends an `Idempotency-Key` unique to the call (money-moving requests need one).
    idempotent: bool,
    /// By role, in the order of [`ROLES`].
    expect: [Expect; 7],
}

fn route(method: &'static str, path: impl Into<String>, expect: [Expect; 7]) -> Route {
    Route { method, path: path.into(), payload: Payload::Empty, fresh: Fresh::Nothing, idempotent: false, expect }
}

impl Route {
    fn json(mut self, body: Value) -> Self {
        self.payload = Payload::Json(body.to_string());
        self
    }

    fn png(mut self, width: u32, height: u32) -> Self {
        self.payload = Payload::Png(width, height);
        self
    }

    fn publish(mut self) -> Self {
        self.payload = Payload::Publish;
        self
    }

    fn fresh(mut self, fresh: Fresh) -> Self {
        self.fresh = fresh;
        self
    }

    fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

/// Every route of the router as (method, template), as the metrics label them.
const ALL_ROUTES: [(&str, &str); 131] = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/whoami"),
    ("POST", "/v1/login"),
    ("POST", "/v1/logout"),
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("POST", "/v1/tenants/{tenant}/tokens"),
    ("DELETE", "/v1/tenants/{tenant}/tokens/{id}"),
    ("POST", "/v1/publishers"),
    ("POST", "/v1/operator/tokens"),
    ("DELETE", "/v1/operator/tokens/{id}"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/catalog"),
    ("GET", "/v1/catalog/{publisher}/{name}"),
    ("GET", "/v1/catalog/{publisher}/{name}/consent"),
    ("POST", "/v1/catalog/{publisher}/{name}/feature"),
    ("DELETE", "/v1/catalog/{publisher}/{name}/feature"),
    ("POST", "/v1/catalog/{publisher}/{name}/delist"),
    ("DELETE", "/v1/catalog/{publisher}/{name}/delist"),
    ("GET", "/v1/publishers/{publisher}/listings"),
    ("GET", "/v1/catalog/{publisher}/{name}/reviews"),
    ("POST", "/v1/catalog/{publisher}/{name}/reviews"),
    ("GET", "/v1/catalog/{publisher}/{name}/reviews/mine"),
    ("PUT", "/v1/catalog/{publisher}/{name}/reviews/mine"),
    ("DELETE", "/v1/catalog/{publisher}/{name}/reviews/mine"),
    ("PUT", "/v1/reviews/{id}/reply"),
    ("DELETE", "/v1/reviews/{id}/reply"),
    ("PUT", "/v1/reviews/{id}/hidden"),
    ("DELETE", "/v1/reviews/{id}/hidden"),
    ("PUT", "/v1/reviews/{id}/helpful"),
    ("DELETE", "/v1/reviews/{id}/helpful"),
    ("PATCH", "/v1/catalog/{publisher}/{name}/text"),
    ("GET", "/v1/publishers/{publisher}/profile"),
    ("PUT", "/v1/publishers/{publisher}/profile"),
    ("POST", "/v1/installs"),
    ("GET", "/v1/installs"),
    ("GET", "/v1/installs/{id}"),
    ("PATCH", "/v1/installs/{id}"),
    ("DELETE", "/v1/installs/{id}"),
    ("POST", "/v1/installs/{id}/upgrade"),
    ("POST", "/v1/installs/{id}/resume"),
    ("POST", "/v1/installs/{id}/invoke"),
    ("GET", "/v1/installs/{id}/invocations"),
    ("GET", "/v1/installs/{id}/invocations/{invocation}"),
    ("POST", "/v1/events"),
    ("GET", "/v1/events/{id}"),
    ("GET", "/v1/deliveries"),
    ("POST", "/v1/deliveries/replay"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("PATCH", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("POST", "/v1/webhooks/{id}/rotate-secret"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("POST", "/v1/webhooks/{id}/recover"),
    ("POST", "/v1/publish"),
    ("POST", "/v1/publish/dev"),
    ("GET", "/v1/plugins/{publisher}/{name}/versions"),
    ("GET", "/v1/plugins/{publisher}/{name}/versions/{version}"),
    ("GET", "/v1/plugins/{publisher}/{name}/versions/{version}/component"),
    ("POST", "/v1/plugins/{publisher}/{name}/versions/{version}/yank"),
    ("GET", "/v1/plugins/{publisher}/{name}/resolve"),
    ("GET", "/v1/plugins/{publisher}/{name}/health"),
    ("GET", "/v1/plugins/{publisher}/{name}/media"),
    ("PUT", "/v1/plugins/{publisher}/{name}/media/icon"),
    ("DELETE", "/v1/plugins/{publisher}/{name}/media/icon"),
    ("PUT", "/v1/plugins/{publisher}/{name}/media/screenshots/{position}"),
    ("DELETE", "/v1/plugins/{publisher}/{name}/media/screenshots/{position}"),
    ("GET", "/media/{digest}"),
    ("POST", "/v1/signup"),
    ("POST", "/v1/signup/confirm"),
    ("POST", "/v1/password-resets"),
    ("POST", "/v1/password-resets/confirm"),
    ("GET", "/v1/partner-agreement"),
    ("GET", "/v1/partner-applications"),
    ("POST", "/v1/partner-applications"),
    ("POST", "/v1/partner-applications/{id}/decision"),
    ("GET", "/v1/featured-placements"),
    ("POST", "/v1/featured-placements"),
    ("DELETE", "/v1/featured-placements/{id}"),
    ("GET", "/v1/featured-placements/rules"),
    ("PUT", "/v1/featured-placements/rules"),
    ("GET", "/v1/partner-tiers"),
    ("PUT", "/v1/partner-tiers/{key}"),
    ("POST", "/v1/partner-tiers/recompute"),
    ("GET", "/v1/publishers/{publisher}/tier"),
    ("PUT", "/v1/publishers/{publisher}/tier"),
    ("DELETE", "/v1/publishers/{publisher}/tier"),
    ("GET", "/v1/publishers/{publisher}/domain"),
    ("PUT", "/v1/publishers/{publisher}/domain"),
    ("POST", "/v1/publishers/{publisher}/domain/check"),
    ("GET", "/v1/publishers/{publisher}/keys"),
    ("POST", "/v1/publishers/{publisher}/keys"),
    ("DELETE", "/v1/publishers/{publisher}/keys/{fingerprint}"),
    ("POST", "/v1/publishers/{publisher}/tokens"),
    ("DELETE", "/v1/publishers/{publisher}/tokens/{id}"),
    ("GET", "/v1/plugins/{publisher}/{name}/plans"),
    ("POST", "/v1/plugins/{publisher}/{name}/plans"),
    ("DELETE", "/v1/plugins/{publisher}/{name}/plans/{key}"),
    ("PUT", "/v1/installs/{id}/plan"),
    ("GET", "/v1/installs/{id}/plan/preview"),
    ("GET", "/v1/installs/{id}/usage"),
    ("GET", "/v1/plugins/{publisher}/{name}/usage"),
    ("POST", "/v1/installs/{id}/settle"),
    ("GET", "/v1/charges"),
    ("GET", "/v1/charges/{id}"),
    ("GET", "/v1/charges/{id}/invocations"),
    ("POST", "/v1/charges/{id}/refunds"),
    ("GET", "/v1/bills/{period}"),
    ("GET", "/v1/publishers/{publisher}/sales"),
    ("GET", "/v1/revenue-share/policies"),
    ("POST", "/v1/revenue-share/policies"),
    ("POST", "/v1/billing/runs"),
    ("GET", "/v1/ledger/verify"),
    ("GET", "/v1/publishers/{publisher}/statements"),
    ("GET", "/v1/publishers/{publisher}/statements/{period}"),
    ("GET", "/v1/publishers/{publisher}/payouts"),
    ("GET", "/v1/publishers/{publisher}/payouts/next"),
    ("GET", "/v1/publishers/{publisher}/payouts/{id}"),
    ("POST", "/v1/publishers/{publisher}/payout-hold"),
    ("DELETE", "/v1/publishers/{publisher}/payout-hold"),
    ("POST", "/v1/publishers/{publisher}/adjustments"),
    ("POST", "/v1/payouts/runs"),
    ("PUT", "/v1/payouts/minimums/{currency}"),
    ("GET", "/v1/metrics/gmv"),
    ("GET", "/v1/metrics/ecosystem"),
];

fn all_routes() -> BTreeSet<(String, String)> {
    ALL_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect()
}

/// Secret values set on installs: none may ever come back.
const SECRET_AT_SETUP: &str = "sk-live-SETUP-0f9e8d7c6b5a";
const SECRET_PATCHED: &str = "sk-live-PATCHED-1a2b3c4d5e6f";
const SECRET_AT_INSTALL: &str = "sk-live-INSTALL-9z8y7x6w5v";

/// The accounts, the install under test and what was issued along the way.
struct World {
    /// By role, in the order of [`ROLES`]; `None` for anonymous.
    tokens: [Option<String>; 7],
    /// globex's echo install.
    install: String,
    /// An invocation of it.
    invocation: String,
    /// globex's chat-notifier install, bought once (`lifetime`), and the charge it paid.
    chat_install: String,
    charge: String,
    /// nexus-labs' payout of that purchase.
    payout: String,
    /// The current live install for the uninstall row.
    victim: Option<String>,
    /// globex's webhook endpoint.
    webhook: String,
    /// globex's review of echo.
    review: String,
    /// Where echo's first icon is served.
    media_url: String,
    /// Every token secret issued, none of which may appear in the audit log.
    issued: Vec<String>,
    chat_notifier: Vec<u8>,
    calls: u32,
}

/// Sends one request; `content` is (content type, body).
async fn send(
    env: &Env,
    method: &str,
    uri: &str,
    token: Option<&str>,
    content: Option<(String, Vec<u8>)>,
) -> (StatusCode, Vec<u8>) {
    send_keyed(env, method, uri, token, content, None).await
}

/// [`send`] with an `Idempotency-Key`.
async fn send_keyed(
    env: &Env,
    method: &str,
    uri: &str,
    token: Option<&str>,
    content: Option<(String, Vec<u8>)>,
    key: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match content {
        Some((content_type, bytes)) => {
            request = request.header(header::CONTENT_TYPE, content_type);
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let (status, _, bytes) = env.raw(request.body(body).unwrap()).await;
    (status, bytes)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

impl World {
    async fn new(env: &Env) -> Self {
        let globex = env.tenant("globex").await;
        let initech = env.tenant("initech").await;
        let (status, acme) =
            env.post("/v1/publishers", &env.operator, json!({ "id": "acme", "display_name": "Acme" })).await;
        assert_eq!(status, StatusCode::CREATED, "{acme}");
        let acme = acme["secret"].as_str().unwrap().to_string();
        let (status, read_only) =
            env.post("/v1/tenants/globex/tokens", &globex, json!({ "scopes": ["read"], "label": "ro" })).await;
        assert_eq!(status, StatusCode::CREATED, "{read_only}");
        let read_only = read_only["secret"].as_str().unwrap().to_string();

        // `*` so that 0.2.0 below is within the requirement (the default would pin ^0.1).
        let install = env.install(&globex, "nexus-labs/echo", json!({ "requirement": "*" })).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let body = json!({ "secrets": { "api_key": SECRET_AT_SETUP } });
        let (status, patched) =
            env.call("PATCH", &format!("/v1/installs/{install}"), Some(&globex), Some(&body.to_string())).await;
        assert_eq!((status, &patched["secret_names"]), (StatusCode::OK, &json!(["api_key"])), "{patched}");
        let probe = json!({ "type": "authz.setup", "payload": { "say": "hi" } });
        let (status, invoked) = env.post(&format!("/v1/installs/{install}/invoke"), &globex, probe).await;
        assert_eq!((status, &invoked["outcome"]), (StatusCode::OK, &json!("ok")), "{invoked}");
        let invocation = invoked["invocation"].as_str().unwrap().to_string();
        // A queued event of globex's, for `GET /v1/events/{id}`.
        let queued = json!({ "id": "authz-queued", "type": "authz.setup", "payload": {} }).to_string();
        let request = Request::builder()
            .method("POST")
            .uri("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {globex}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("prefer", "respond-async")
            .body(Body::from(queued))
            .unwrap();
        let (status, _, body) = env.raw(request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
        // Two days of using echo make globex a reviewer; its review is the one under test.
        sqlx::query("UPDATE installs SET created_at = created_at - $1 WHERE id = $2")
            .bind(2 * 86_400_000_i64)
            .bind(&install)
            .execute(env.market.db.writer())
            .await
            .unwrap();
        let (status, review) =
            env.post("/v1/catalog/nexus-labs/echo/reviews", &globex, json!({ "rating": 4, "title": "Solid" })).await;
        assert_eq!(status, StatusCode::CREATED, "{review}");
        let endpoint = json!({ "url": "https://hooks.example.com/globex", "kinds": ["plugin.action"] });
        let (status, webhook) = env.post("/v1/webhooks", &globex, endpoint).await;
        assert_eq!(status, StatusCode::CREATED, "{webhook}");

        // echo 0.0.1 to yank, and echo 0.2.0 asking for kv too: the install waits for consent.
        let echo = manifest_of("echo");
        let old = echo.replacen("version = \"0.1.0\"", "version = \"0.0.1\"", 1);
        env.publish_manifest(nexus_sample_plugins::ECHO, &old).await.unwrap();
        let more = echo.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1).replacen(
            "[[pricing]]",
            "[capabilities.kv]\nreason = \"Remembers the last payload\"\n\n[[pricing]]",
            1,
        );
        env.publish_manifest(nexus_sample_plugins::ECHO, &more).await.unwrap();
        let (_, shown) = env.get(&format!("/v1/installs/{install}"), &globex).await;
        assert_eq!(shown["pending_upgrade"]["version"], "0.2.0", "{shown}");

        // A priced install with a collected charge: chat-notifier bought once.
        let plan = json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time", "currency": "EUR",
                           "price_minor": 4900 });
        let (status, body) = env.post("/v1/plugins/nexus-labs/chat-notifier/plans", &env.publisher, plan).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let chat = env.install(&globex, "nexus-labs/chat-notifier", json!({ "plan": "lifetime", "secrets": { "webhook-url": "https://hooks.slack.com/services/T0/B0/test" } })).await;
        let chat_install = chat["id"].as_str().unwrap().to_string();
        let (_, charges) = env.get(&format!("/v1/charges?install={chat_install}"), &globex).await;
        assert_eq!(charges["items"][0]["status"], "collected", "{charges}");
        let charge = charges["items"][0]["id"].as_str().unwrap().to_string();
        let (status, run) = env.post("/v1/payouts/runs", &env.operator, json!({})).await;
        assert_eq!((status, &run["paid"]), (StatusCode::OK, &json!(1)), "{run}");
        let (_, payouts) = env.get("/v1/publishers/nexus-labs/payouts", &env.publisher).await;
        let payout = payouts[0]["id"].as_str().unwrap().to_string();

        let tokens = [
            None,
            Some(env.operator.clone()),
            Some(env.publisher.clone()),
            Some(acme),
            Some(globex),
            Some(initech),
            Some(read_only),
        ];
        let mut issued: Vec<String> = tokens.iter().flatten().cloned().collect();
        issued.push(webhook["secret"].as_str().unwrap().to_string());
        let chat_notifier = nexus_sample_plugins::bytes(nexus_sample_plugins::CHAT_NOTIFIER).unwrap();
        let icon = Some(("image/png".to_string(), super::media::png(64, 64)));
        let (status, icon) =
            send(env, "PUT", "/v1/plugins/nexus-labs/echo/media/icon", Some(&env.publisher), icon).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&icon));
        Self {
            media_url: json_of(&icon)["url"].as_str().unwrap().to_string(),
            tokens,
            install,
            invocation,
            chat_install,
            charge,
            payout,
            victim: None,
            webhook: webhook["endpoint"]["id"].as_str().unwrap().to_string(),
            review: review["id"].as_str().unwrap().to_string(),
            issued,
            chat_notifier,
            calls: 0,
        }
    }

    fn token(&self, role: Role) -> Option<&str> {
        let index = ROLES.iter().position(|r| *r == role).unwrap();
        self.tokens[index].as_deref()
    }

    fn owner(&self) -> &str {
        self.token(Role::Tenant).unwrap()
    }

    /// Issues something through the API as `token` and returns the answer's `field`.
    async fn issue(&mut self, env: &Env, uri: &str, token: &str, body: Value, field: &str) -> String {
        let (status, issued) = env.post(uri, token, body).await;
        assert_eq!(status, StatusCode::CREATED, "{uri}: {issued}");
        if let Some(secret) = issued["secret"].as_str() {
            self.issued.push(secret.to_string());
        }
        issued[field].as_str().unwrap().to_string()
    }

    async fn prepare(&mut self, env: &Env, fresh: Fresh) -> String {
        let operator = env.operator.clone();
        let publisher = env.publisher.clone();
        match fresh {
            Fresh::Nothing | Fresh::OwnToken => String::new(),
            Fresh::TenantToken => {
                let body = json!({ "scopes": ["read"], "label": "victim" });
                self.issue(env, "/v1/tenants/globex/tokens", &operator, body, "id").await
            }
            Fresh::OperatorToken => {
                self.issue(env, "/v1/operator/tokens", &operator, json!({ "label": "victim" }), "id").await
            }
            Fresh::PublisherToken => {
                let body = json!({ "scopes": ["publish"], "label": "victim" });
                self.issue(env, "/v1/publishers/nexus-labs/tokens", &publisher, body, "id").await
            }
            Fresh::PublisherKey => {
                let body = json!({ "public_key": SecretKey::generate().unwrap().public_key().to_string() });
                self.issue(env, "/v1/publishers/nexus-labs/keys", &publisher, body, "fingerprint").await
            }
            Fresh::PausedInstall => {
                // Stands in for the circuit breaker, which conventions.rs drives for real.
                sqlx::query(
                    "UPDATE installs SET status = 'paused', status_reason = 'paused by the test' WHERE id = $1",
                )
                .bind(&self.install)
                .execute(env.market.db.writer())
                .await
                .unwrap();
                self.install.clone()
            }
            Fresh::LiveInstall => {
                if let Some(id) = &self.victim {
                    let (_, shown) = env.get(&format!("/v1/installs/{id}"), &operator).await;
                    if shown["status"] == "active" {
                        return id.clone();
                    }
                }
                let owner = self.owner().to_string();
                let id = env.install(&owner, "nexus-labs/tax-calculator", json!({})).await["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                self.victim = Some(id.clone());
                id
            }
            Fresh::Webhook => {
                let endpoint = json!({ "url": "https://hooks.example.com/victim", "kinds": ["delivery.dead"] });
                let (status, created) = env.post("/v1/webhooks", self.owner(), endpoint).await;
                assert_eq!(status, StatusCode::CREATED, "{created}");
                self.issued.push(created["secret"].as_str().unwrap().to_string());
                created["endpoint"]["id"].as_str().unwrap().to_string()
            }
            Fresh::Placement => {
                // Far ahead and an hour long, a day apart per call: never more than one at once.
                let starts_at = 4_102_444_800_000_i64 + i64::from(self.calls) * 86_400_000;
                let body = json!({ "plugin": "nexus-labs/pii-redactor", "note": "victim", "starts_at": starts_at,
                                   "ends_at": starts_at + 3_600_000 });
                self.issue(env, "/v1/featured-placements", &operator, body, "id").await
            }
            Fresh::Icon | Fresh::Screenshot => {
                let (path, image) = match fresh {
                    Fresh::Icon => ("icon", super::media::png(64, 64)),
                    _ => ("screenshots/2", super::media::png(320, 200)),
                };
                let uri = format!("/v1/plugins/nexus-labs/echo/media/{path}");
                let (status, body) = send(env, "PUT", &uri, Some(&publisher), Some(("image/png".into(), image))).await;
                assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
                String::new()
            }
            Fresh::Plan => {
                let key = format!("retire-{}", self.calls);
                let plan = json!({ "key": key, "name": "To retire", "model": "free" });
                let (status, body) = env.post("/v1/plugins/nexus-labs/echo/plans", &publisher, plan).await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                key
            }
        }
    }

    /// A new token of `role`'s kind, issued with its table token.
    async fn own_token(&mut self, env: &Env, role: Role, token: &str) -> String {
        let (uri, body) = match role {
            Role::Operator => ("/v1/operator/tokens", json!({ "label": "own" })),
            Role::Publisher => ("/v1/publishers/nexus-labs/tokens", json!({ "scopes": ["publish"], "label": "own" })),
            Role::OtherPublisher => ("/v1/publishers/acme/tokens", json!({ "scopes": ["publish"], "label": "own" })),
            Role::Tenant => ("/v1/tenants/globex/tokens", json!({ "scopes": ["read"], "label": "own" })),
            Role::OtherTenant => ("/v1/tenants/initech/tokens", json!({ "scopes": ["read"], "label": "own" })),
            // The read-only token cannot issue one; globex's owner issues it the same scopes.
            Role::ReadOnly => {
                let owner = self.owner().to_string();
                let body = json!({ "scopes": ["read"], "label": "own" });
                return self.issue(env, "/v1/tenants/globex/tokens", &owner, body, "secret").await;
            }
            Role::Anonymous => unreachable!("anonymous calls carry no token"),
        };
        self.issue(env, uri, token, body, "secret").await
    }

    async fn clean_up(&self, env: &Env, fresh: Fresh) {
        if fresh == Fresh::PausedInstall {
            sqlx::query("UPDATE installs SET status = 'active', status_reason = NULL WHERE id = $1")
                .bind(&self.install)
                .execute(env.market.db.writer())
                .await
                .unwrap();
        }
    }

    /// Calls `route` as `role`: the concrete path, the status and the body.
    async fn call(&mut self, env: &Env, route: &Route, role: Role) -> (String, StatusCode, Vec<u8>) {
        self.calls += 1;
        let n = self.calls.to_string();
        let fresh = self.prepare(env, route.fresh).await;
        let path = route.path.replace("{fresh}", &fresh);
        let content = match &route.payload {
            Payload::Empty => None,
            Payload::Json(text) => {
                let mut text = text.replace("{n}", &n);
                if text.contains("{public_key}") {
                    text = text.replace("{public_key}", &SecretKey::generate().unwrap().public_key().to_string());
                }
                Some(("application/json".to_string(), text.into_bytes()))
            }
            Payload::Publish => {
                let manifest =
                    manifest_of("chat-notifier").replacen("version = \"0.1.0\"", &format!("version = \"0.2.{n}\""), 1);
                let body = form(&[("manifest", manifest.as_bytes()), ("component", &self.chat_notifier)]);
                Some((format!("multipart/form-data; boundary={BOUNDARY}"), body))
            }
            Payload::Png(width, height) => {
                Some(("application/octet-stream".into(), super::media::png(*width, *height)))
            }
        };
        let key = route.idempotent.then(|| format!("authz-{n}"));
        let own = match (route.fresh, self.token(role).map(str::to_owned)) {
            (Fresh::OwnToken, Some(token)) => Some(self.own_token(env, role, &token).await),
            _ => None,
        };
        let token = own.as_deref().or(self.token(role));
        let (status, body) = send_keyed(env, route.method, &path, token, content, key.as_deref()).await;
        self.clean_up(env, route.fresh).await;
        (path, status, body)
    }
}

/// Every route, and what each role gets. Columns: anonymous, operator, nexus-labs, acme,
/// globex (owner), initech, globex read-only.
fn table(world: &World, pii_consent: &Value, upgrade_consent: &Value) -> Vec<Route> {
    let install = format!("/v1/installs/{}", world.install);
    let webhook = format!("/v1/webhooks/{}", world.webhook);
    let chat_install = format!("/v1/installs/{}", world.chat_install);
    let charge = format!("/v1/charges/{}", world.charge);
    let plans = "/v1/plugins/nexus-labs/echo/plans";
    let chat = "/v1/catalog/nexus-labs/chat-notifier";
    let review = format!("/v1/reviews/{}", world.review);
    let versions = "/v1/plugins/nexus-labs/echo/versions";
    let public = [OK; 7];
    let operator_only = |status| [ANON, status, DENY, DENY, DENY, DENY, DENY];
    let owner_changes = |status| [ANON, DENY, DENY, DENY, status, HIDDEN, SCOPE];
    let owner_reads = [ANON, OK, DENY, DENY, OK, HIDDEN, OK];
    let nexus_labs_only = |status| [ANON, DENY, status, FOREIGN, DENY, DENY, DENY];
    vec![
        route("GET", "/healthz", public),
        route("GET", "/readyz", public),
        route("GET", "/metrics", public),
        route("GET", "/openapi.json", public),
        // Accounts: only operators see tenants and the audit log; a tenant manages its own
        // tokens (with the `tokens` scope) and never sees another's.
        route("GET", "/v1/whoami", [ANON, OK, OK, OK, OK, OK, OK]),
        // Anyone may try to sign in; nobody gets in with a wrong password.
        route("POST", "/v1/login", [Expect::Deny(401, "sign_in_failed"); 7])
            .json(json!({ "email": "nobody-{n}@example.com", "password": "not-the-password" })),
        // Any token may end itself (a fresh one of each kind, so the table's stay).
        route("POST", "/v1/logout", [ANON, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY]).fresh(Fresh::OwnToken),
        route("GET", "/v1/tenants", operator_only(OK)),
        route("POST", "/v1/tenants", operator_only(MADE)).json(json!({ "id": "tenant-{n}", "display_name": "T" })),
        route("POST", "/v1/tenants/globex/tokens", [ANON, MADE, DENY, DENY, MADE, HIDDEN, SCOPE])
            .json(json!({ "scopes": ["read"], "label": "new" })),
        route("DELETE", "/v1/tenants/globex/tokens/{fresh}", [ANON, EMPTY, DENY, DENY, EMPTY, HIDDEN, SCOPE])
            .fresh(Fresh::TenantToken),
        route("POST", "/v1/publishers", operator_only(MADE)).json(json!({ "id": "pub-{n}", "display_name": "P" })),
        route("POST", "/v1/operator/tokens", operator_only(MADE)).json(json!({ "label": "new" })),
        route("DELETE", "/v1/operator/tokens/{fresh}", operator_only(EMPTY)).fresh(Fresh::OperatorToken),
        route("GET", "/v1/audit", operator_only(OK)),
        route("GET", "/v1/nodes", operator_only(OK)),
        // Catalog: browsing is public; moderation is the operators'; a publisher's listings
        // (with moderation reasons) are its own and the operators'.
        route("GET", "/v1/catalog", public),
        route("GET", "/v1/catalog/nexus-labs/echo", public),
        route("GET", "/v1/catalog/nexus-labs/echo/consent", public),
        route("POST", format!("{chat}/feature"), operator_only(OK)).json(json!({ "reason": "launch week" })),
        route("DELETE", format!("{chat}/feature"), operator_only(OK)),
        route("POST", format!("{chat}/delist"), operator_only(OK)).json(json!({ "reason": "broken webhook" })),
        route("DELETE", format!("{chat}/delist"), operator_only(OK)),
        route("GET", "/v1/publishers/nexus-labs/listings", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("GET", "/v1/publishers/acme/listings", [ANON, OK, FOREIGN, OK, DENY, DENY, DENY]),
        // Reviews: anyone reads them; globex (which used echo for two days) writes its own,
        // initech never installed echo; nexus-labs replies; operators hide; another tenant
        // marks a review helpful, never its author.
        route("GET", "/v1/catalog/nexus-labs/echo/reviews", public),
        route("GET", "/v1/catalog/nexus-labs/echo/reviews/mine", [ANON, DENY, DENY, DENY, OK, HIDDEN, OK]),
        route("PUT", "/v1/catalog/nexus-labs/echo/reviews/mine", [ANON, DENY, DENY, DENY, OK, NOT_REVIEWER, SCOPE])
            .json(json!({ "rating": 5, "title": "Edited {n}" })),
        route("PUT", format!("{review}/reply"), [ANON, DENY, OK, DENY, DENY, DENY, DENY])
            .json(json!({ "body": "Thanks ({n})" })),
        route("DELETE", format!("{review}/reply"), [ANON, DENY, OK, DENY, DENY, DENY, DENY]),
        route("PUT", format!("{review}/hidden"), operator_only(OK)).json(json!({ "reason": "Off topic" })),
        route("DELETE", format!("{review}/hidden"), operator_only(OK)),
        route("PUT", format!("{review}/helpful"), [ANON, DENY, DENY, DENY, DENY, OK, SCOPE]),
        route("DELETE", format!("{review}/helpful"), [ANON, DENY, DENY, DENY, DENY, OK, SCOPE]),
        route("PATCH", "/v1/catalog/nexus-labs/echo/text", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY])
            .json(json!({ "summary": "Echoes events ({n})" })),
        route("GET", "/v1/publishers/nexus-labs/profile", public),
        route("PUT", "/v1/publishers/nexus-labs/profile", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY])
            .json(json!({ "website": "https://nexus-labs.example", "about": "Call {n}" })),
        route("DELETE", "/v1/catalog/nexus-labs/echo/reviews/mine", [ANON, DENY, DENY, DENY, EMPTY, HIDDEN, SCOPE]),
        route("POST", "/v1/catalog/nexus-labs/echo/reviews", [ANON, DENY, DENY, DENY, MADE, NOT_REVIEWER, SCOPE])
            .json(json!({ "rating": 3, "title": "Again {n}" })),
        // Installs: a tenant's own; operators may read them; another tenant gets 404.
        route("POST", "/v1/installs", [ANON, DENY, DENY, DENY, MADE, MADE, SCOPE]).json(json!({
            "plugin": "nexus-labs/pii-redactor", "consent": pii_consent, "secrets": { "token": SECRET_AT_INSTALL },
        })),
        route("GET", "/v1/installs?tenant=globex", owner_reads),
        route("GET", install.clone(), owner_reads),
        route("PATCH", install.clone(), owner_changes(OK))
            .json(json!({ "config": { "prefix": "> " }, "secrets": { "signing_key": SECRET_PATCHED } })),
        route("POST", format!("{install}/upgrade"), owner_changes(OK)).json(json!({ "consent": upgrade_consent })),
        route("POST", format!("{install}/resume"), owner_changes(OK)).fresh(Fresh::PausedInstall),
        route("POST", format!("{install}/invoke"), owner_changes(OK))
            .json(json!({ "type": "authz.probe", "payload": { "say": "hi" } })),
        route("GET", format!("{install}/invocations"), owner_reads),
        route("GET", format!("{install}/invocations/{}", world.invocation), owner_reads),
        route("POST", "/v1/events", [ANON, DENY, DENY, DENY, OK, OK, SCOPE])
            .json(json!({ "type": "authz.probe", "payload": { "n": 1 } })),
        // Queued events and their deliveries: the tenant's own; operators name the tenant
        // and may replay for it.
        route("GET", "/v1/events/authz-queued?tenant=globex", owner_reads),
        route("GET", "/v1/deliveries?tenant=globex", owner_reads),
        route("POST", "/v1/deliveries/replay", [ANON, OK, DENY, DENY, OK, HIDDEN, SCOPE])
            .json(json!({ "state": "dead", "tenant": "globex" })),
        // Webhook endpoints: the tenant's own; operators read them.
        route("POST", "/v1/webhooks", [ANON, DENY, DENY, DENY, MADE, MADE, SCOPE])
            .json(json!({ "url": "https://hooks.example.com/{n}", "kinds": ["plugin.action"] })),
        route("GET", "/v1/webhooks?tenant=globex", owner_reads),
        route("GET", webhook.clone(), owner_reads),
        route("PATCH", webhook.clone(), owner_changes(OK)).json(json!({ "description": "call {n}" })),
        route("POST", format!("{webhook}/rotate-secret"), owner_changes(OK)).json(json!({ "overlap_hours": 1 })),
        route("GET", format!("{webhook}/deliveries"), owner_reads),
        route("POST", format!("{webhook}/recover"), owner_changes(OK)).json(json!({})),
        route("DELETE", "/v1/webhooks/{fresh}", owner_changes(EMPTY)).fresh(Fresh::Webhook),
        route("DELETE", "/v1/installs/{fresh}", owner_changes(OK)).fresh(Fresh::LiveInstall),
        // Registry: reading is public; publishing, yanking, keys and tokens are the owning
        // publisher's alone; operators moderate through the catalog instead.
        route("POST", "/v1/publish", nexus_labs_only(MADE)).publish(),
        // nexus-labs has no development tenant in this table's world (`dev.rs` publishes them).
        route("POST", "/v1/publish/dev", nexus_labs_only(Expect::Deny(409, "dev_tenant_missing"))).publish(),
        route("GET", versions, public),
        route("GET", format!("{versions}/0.1.0"), public),
        route("GET", format!("{versions}/0.1.0/component"), public),
        route("POST", format!("{versions}/0.0.1/yank"), nexus_labs_only(OK)).json(json!({ "reason": "too old" })),
        route("GET", "/v1/plugins/nexus-labs/echo/resolve?req=%5E0.1", public),
        route("GET", "/v1/publishers/nexus-labs/keys", public),
        route("POST", "/v1/publishers/nexus-labs/keys", nexus_labs_only(MADE))
            .json(json!({ "public_key": "{public_key}" })),
        route("DELETE", "/v1/publishers/nexus-labs/keys/{fresh}", nexus_labs_only(EMPTY)).fresh(Fresh::PublisherKey),
        route("POST", "/v1/publishers/nexus-labs/tokens", nexus_labs_only(MADE))
            .json(json!({ "scopes": ["publish"], "label": "ci" })),
        route("DELETE", "/v1/publishers/nexus-labs/tokens/{fresh}", nexus_labs_only(EMPTY))
            .fresh(Fresh::PublisherToken),
        // People's flows: sign-up, confirmation and resets are anyone's (answered alike);
        // applications are people's (these machine tokens name nobody); decisions operators'.
        route("POST", "/v1/signup", [Expect::Allow(202); 7]).json(json!({ "email": "p-{n}@example.com",
            "name": "P", "password": "meadow-copper-signal-8", "organization": "org-{n}", "organization_name": "O" })),
        route("POST", "/v1/signup/confirm", [Expect::Deny(400, "invalid_link"); 7]).json(json!({ "link": "0f{n}" })),
        route("POST", "/v1/password-resets", [Expect::Allow(202); 7]).json(json!({ "email": "p-{n}@example.com" })),
        route("POST", "/v1/password-resets/confirm", [Expect::Deny(400, "invalid_link"); 7])
            .json(json!({ "link": "0f{n}", "password": "meadow-copper-signal-8" })),
        route("GET", "/v1/partner-agreement", public),
        route("GET", "/v1/partner-applications", operator_only(OK)),
        route("POST", "/v1/partner-applications", [ANON, DENY, DENY, DENY, DENY, DENY, DENY]).json(json!({
            "company": "C", "namespace": "ns-{n}", "website": "https://c.example", "support_email": "s@c.example",
            "agreement_version": "2026-12" })),
        route("POST", "/v1/partner-applications/app_missing/decision", [ANON, HIDDEN, DENY, DENY, DENY, DENY, DENY])
            .json(json!({ "decision": "approve" })),
        // Featured placements: public to read, operators' to make, end and rule.
        route("GET", "/v1/featured-placements", public),
        route("POST", "/v1/featured-placements", operator_only(MADE))
            .json(json!({ "plugin": "nexus-labs/echo", "note": "Pick {n}", "ends_at": 4_102_444_800_000_i64 })),
        route("DELETE", "/v1/featured-placements/{fresh}", operator_only(EMPTY)).fresh(Fresh::Placement),
        route("GET", "/v1/featured-placements/rules", public),
        route("PUT", "/v1/featured-placements/rules", operator_only(OK)).json(json!({ "slots": 4 })),
        // Partner tiers: public to read, operators' to define and assign; a partner reads its own.
        route("GET", "/v1/partner-tiers", public),
        route("PUT", "/v1/partner-tiers/authz", operator_only(OK)).json(json!({ "name": "Authz", "rank": 100 })),
        route("POST", "/v1/partner-tiers/recompute", operator_only(OK)),
        route("GET", "/v1/publishers/nexus-labs/tier", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("PUT", "/v1/publishers/nexus-labs/tier", operator_only(OK)).json(json!({ "tier": "authz" })),
        route("DELETE", "/v1/publishers/nexus-labs/tier", operator_only(EMPTY)),
        // A publisher's domain: its own managers and operators.
        route("PUT", "/v1/publishers/nexus-labs/domain", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY])
            .json(json!({ "domain": "nexus-{n}.example" })),
        route("GET", "/v1/publishers/nexus-labs/domain", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("POST", "/v1/publishers/nexus-labs/domain/check", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        // Money. Plans are public to read and their publisher's to manage; plan changes and
        // settling are the tenant's own; charges and bills are the tenant's (operators read
        // them); sales are the partner's; refunds, policies, runs and the ledger check are
        // the operators'.
        route("GET", plans, public),
        route("GET", format!("{plans}?all=true"), [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("POST", plans, nexus_labs_only(MADE)).json(
            json!({ "key": "plan-{n}", "name": "P", "model": "one-time", "currency": "EUR", "price_minor": 100 }),
        ),
        route("DELETE", format!("{plans}/{{fresh}}"), nexus_labs_only(EMPTY)).fresh(Fresh::Plan),
        route("GET", format!("{chat_install}/plan/preview?plan=per-message"), owner_changes(OK)),
        route("GET", format!("{chat_install}/usage"), owner_reads),
        route("PUT", format!("{chat_install}/plan"), owner_changes(OK))
            .json(json!({ "plan": "per-message" }))
            .idempotent(),
        route("POST", format!("{chat_install}/settle"), owner_changes(OK)),
        route("GET", "/v1/charges", [ANON, OK, DENY, DENY, OK, OK, OK]),
        route("GET", charge.clone(), owner_reads),
        // The charge's partner traces its usage lines to their invocations.
        route("GET", format!("{charge}/invocations"), [ANON, OK, OK, HIDDEN, OK, HIDDEN, OK]),
        route("POST", format!("{charge}/refunds"), operator_only(MADE))
            .json(json!({ "amount_minor": 1, "reason": "authz" }))
            .idempotent(),
        route("GET", "/v1/bills/2026-11?tenant=globex", owner_reads),
        route("GET", "/v1/publishers/nexus-labs/sales", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("GET", "/v1/plugins/nexus-labs/chat-notifier/usage", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        // Listing media: public to read; the publisher's own to put up; the publisher's and
        // the operators' to take down. Served by digest to anyone.
        route("GET", "/v1/plugins/nexus-labs/echo/media", public),
        route("PUT", "/v1/plugins/nexus-labs/echo/media/icon", [ANON, DENY, OK, FOREIGN, DENY, DENY, DENY]).png(96, 96),
        route("DELETE", "/v1/plugins/nexus-labs/echo/media/icon", [ANON, EMPTY, EMPTY, FOREIGN, DENY, DENY, DENY])
            .fresh(Fresh::Icon),
        route("PUT", "/v1/plugins/nexus-labs/echo/media/screenshots/1", [ANON, DENY, OK, FOREIGN, DENY, DENY, DENY])
            .png(640, 400),
        route(
            "DELETE",
            "/v1/plugins/nexus-labs/echo/media/screenshots/2",
            [ANON, EMPTY, EMPTY, FOREIGN, DENY, DENY, DENY],
        )
        .fresh(Fresh::Screenshot),
        route("GET", world.media_url.clone(), public),
        // Version health is the publisher's own (and the operators').
        route("GET", "/v1/plugins/nexus-labs/echo/health", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("GET", "/v1/revenue-share/policies", operator_only(OK)),
        route("POST", "/v1/revenue-share/policies", operator_only(MADE))
            .json(json!({ "publisher": "acme", "tiers": [{ "rate_bp": 1000 }] })),
        route("POST", "/v1/billing/runs", operator_only(OK)).json(json!({})),
        route("GET", "/v1/ledger/verify", operator_only(OK)),
        // Statements and payouts are the partner's own (and the operators'); holds,
        // adjustments, payout runs and minimums are the operators'; GMV is the operators'
        // and each partner's own; the ecosystem figures are the operators'.
        route("GET", "/v1/publishers/nexus-labs/statements", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("GET", "/v1/publishers/nexus-labs/statements/2026-11", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("GET", "/v1/publishers/nexus-labs/payouts", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route("GET", "/v1/publishers/nexus-labs/payouts/next", [ANON, OK, OK, FOREIGN, DENY, DENY, DENY]),
        route(
            "GET",
            format!("/v1/publishers/nexus-labs/payouts/{}", world.payout),
            [ANON, OK, OK, FOREIGN, DENY, DENY, DENY],
        ),
        route("POST", "/v1/publishers/nexus-labs/payout-hold", operator_only(EMPTY))
            .json(json!({ "reason": "kyc review" })),
        route("DELETE", "/v1/publishers/nexus-labs/payout-hold", operator_only(EMPTY)),
        route("POST", "/v1/publishers/nexus-labs/adjustments", operator_only(MADE))
            .json(json!({ "currency": "EUR", "amount_minor": 1, "reason": "authz" }))
            .idempotent(),
        route("POST", "/v1/payouts/runs", operator_only(OK)).json(json!({})),
        route("PUT", "/v1/payouts/minimums/EUR", operator_only(EMPTY)).json(json!({ "minimum_minor": 2500 })),
        route("GET", "/v1/metrics/gmv", [ANON, OK, OK, OK, DENY, DENY, DENY]),
        route("GET", "/v1/metrics/ecosystem", operator_only(OK)),
    ]
}

/// Why the answer is not what `expect` says, if it is not.
fn mismatch(expect: Expect, status: StatusCode, body: &[u8]) -> Option<String> {
    let json = json_of(body);
    let code = json["error"]["code"].as_str();
    let as_expected = match expect {
        Expect::Allow(want) => status.as_u16() == want,
        Expect::Deny(want, want_code) => status.as_u16() == want && code == Some(want_code),
    };
    if as_expected {
        return None;
    }
    let mut shown = String::from_utf8_lossy(body).into_owned();
    shown.truncate(300);
    Some(format!("expected {}, got {} {}", expect.describe(), status.as_u16(), shown))
}

/// The (method, route) label pairs of `nexus_http_requests_total` in a metrics text.
fn requested_routes(metrics: &str) -> BTreeSet<(String, String)> {
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_string())
    };
    metrics
        .lines()
        .filter(|line| line.starts_with("nexus_http_requests_total{"))
        .filter_map(|line| Some((label(line, "method")?, label(line, "route")?)))
        .collect()
}

/// Every audit entry, all pages, as operator.
async fn audit_log(env: &Env) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut uri = "/v1/audit?per_page=100".to_string();
    loop {
        let (status, body) = env.get(&uri, &env.operator).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        entries.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_after"].as_str() {
            Some(next) => uri = format!("/v1/audit?per_page=100&after={next}"),
            None => return entries,
        }
    }
}

#[test]
fn every_route_allows_or_denies_every_role() {
    on_both(|postgres| async move {
        let backend = if postgres { "postgres" } else { "sqlite" };
        // On PostgreSQL with a pool of one connection: a request that holds a connection
        // (its transaction) while it waits for another can never get it, so every route
        // that does so fails here within the wait instead of hanging a loaded server.
        let one_connection = DbLimits { connections: Some(1), acquire_timeout: Duration::from_secs(5) };
        let options = Options { postgres_limits: Some(one_connection), ..Options::default() };
        let env = Env::with(postgres, options).await;
        let mut world = World::new(&env).await;
        let (_, pii) = env.get("/v1/catalog/nexus-labs/pii-redactor/consent", world.owner()).await;
        let (_, echo) = env.get("/v1/catalog/nexus-labs/echo/consent", world.owner()).await;
        assert_eq!(echo["version"], "0.2.0");
        let table = table(&world, &consent_for(&pii), &consent_for(&echo));

        let mut failures = Vec::new();
        let mut answers = Vec::new();
        for route in &table {
            for (role, expect) in ROLES.iter().zip(route.expect) {
                let (path, status, body) = world.call(&env, route, *role).await;
                if let Some(problem) = mismatch(expect, status, &body) {
                    failures.push(format!("{} {path} as {}: {problem}", route.method, role.name()));
                }
                answers.push((format!("{} {path} as {}", route.method, role.name()), body));
            }
        }
        assert!(
            failures.is_empty(),
            "[{backend}] {} of {} calls were not as expected:\n{}",
            failures.len(),
            table.len() * ROLES.len(),
            failures.join("\n")
        );

        // The table reached every route of the router, and nothing it sent went unrouted.
        let (_, metrics) = send(&env, "GET", "/metrics", None, None).await;
        let reached = requested_routes(&String::from_utf8(metrics).unwrap());
        let missing: Vec<_> = all_routes().difference(&reached).cloned().collect();
        let unknown: Vec<_> = reached.difference(&all_routes()).cloned().collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "[{backend}] not called: {missing:?}; unexpected: {unknown:?}"
        );
        // The document lists exactly the API's routes: all of the table but health, metrics
        // and the document itself.
        let (_, openapi) = env.call("GET", "/openapi.json", None, None).await;
        let documented: BTreeSet<(String, String)> = openapi["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().unwrap().keys().map(|method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let api: BTreeSet<_> = all_routes().into_iter().filter(|(_, path)| path.starts_with("/v1/")).collect();
        let undocumented: Vec<_> = api.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&api).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "[{backend}] served but not documented: {undocumented:?}; documented but not in the table: {unserved:?}"
        );

        // Whatever money the calls moved, the ledger holds together.
        let (_, report) = env.get("/v1/ledger/verify", &env.operator).await;
        assert_eq!(report["ok"], true, "[{backend}] {report}");

        // Secrets: set at install, at setup and by PATCH; named, never shown.
        let (_, shown) = env.get(&format!("/v1/installs/{}", world.install), &env.operator).await;
        assert_eq!(shown["secret_names"], json!(["api_key", "signing_key"]), "{shown}");
        let (_, listed) = env.get("/v1/installs?tenant=globex", &env.operator).await;
        let pii =
            listed["items"].as_array().unwrap().iter().find(|i| i["plugin"] == "nexus-labs/pii-redactor").unwrap();
        assert_eq!(pii["secret_names"], json!(["token"]));
        let secrets = [SECRET_AT_SETUP, SECRET_PATCHED, SECRET_AT_INSTALL];
        for (call, body) in &answers {
            let text = String::from_utf8_lossy(body);
            for secret in secrets {
                assert!(!text.contains(secret), "[{backend}] {call} answered with a secret: {text}");
            }
        }
        let audit = audit_log(&env).await;
        let text = serde_json::to_string(&audit).unwrap();
        for secret in secrets.iter().copied().chain(world.issued.iter().map(String::as_str)) {
            assert!(!text.contains(secret), "[{backend}] the audit log holds the secret {secret}");
        }
        let changed: Vec<&Value> = audit
            .iter()
            .filter(|e| e["action"] == "install.secrets_changed" && e["target"] == world.install.as_str())
            .map(|e| &e["detail"])
            .collect();
        assert_eq!(
            changed,
            [&json!({ "secrets": { "signing_key": "set" } }), &json!({ "secrets": { "api_key": "set" } })],
            "[{backend}] newest first, by name only"
        );
    });
}

#[test]
fn revoked_expired_and_unknown_tokens_are_refused() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let install = env.install(&globex, "nexus-labs/echo", json!({})).await["id"].as_str().unwrap().to_string();
        let refused =
            |(status, body): (StatusCode, Value)| (status, body["error"]["code"].as_str().map(str::to_string));
        let code = |c: &str| (StatusCode::UNAUTHORIZED, Some(c.to_string()));

        let (status, token) = env
            .post("/v1/tenants/globex/tokens", &globex, json!({ "scopes": ["read", "events"], "label": "ci" }))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (id, secret) = (token["id"].as_str().unwrap(), token["secret"].as_str().unwrap());
        let (status, me) = env.get("/v1/whoami", secret).await;
        assert_eq!(
            (status, &me["tenant"], &me["scopes"]),
            (StatusCode::OK, &json!("globex"), &json!(["events", "read"]))
        );
        let (status, _) = env.call("DELETE", &format!("/v1/tenants/globex/tokens/{id}"), Some(&globex), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        for uri in
            ["/v1/whoami".to_string(), format!("/v1/installs/{install}"), "/v1/catalog/nexus-labs/echo".to_string()]
        {
            assert_eq!(refused(env.get(&uri, secret).await), code("token_revoked"), "{uri}");
        }
        let event = json!({ "type": "x", "payload": {} });
        assert_eq!(refused(env.post("/v1/events", secret, event.clone()).await), code("token_revoked"));
        let (status, body) = env.call("DELETE", &format!("/v1/tenants/globex/tokens/{id}"), Some(&globex), None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "revoked once"
        );

        // Zero days is already over: the token expires as it is issued.
        let (status, token) = env
            .post(
                "/v1/tenants/globex/tokens",
                &globex,
                json!({ "scopes": ["read"], "label": "x", "expires_in_days": 0 }),
            )
            .await;
        assert_eq!((status, token["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
        let (status, token) = env
            .post(
                "/v1/tenants/globex/tokens",
                &globex,
                json!({ "scopes": ["read"], "label": "x", "expires_in_days": 1 }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        // A day later: moved into the past in the database.
        sqlx::query("UPDATE account_tokens SET expires_at = 1 WHERE id = $1")
            .bind(token["id"].as_str().unwrap())
            .execute(env.market.db.writer())
            .await
            .unwrap();
        let expired = token["secret"].as_str().unwrap();
        assert_eq!(refused(env.get("/v1/whoami", expired).await), code("token_expired"));
        assert_eq!(refused(env.get(&format!("/v1/installs/{install}"), expired).await), code("token_expired"));
        let (_, token) = env
            .post(
                "/v1/tenants/globex/tokens",
                &globex,
                json!({ "scopes": ["read"], "label": "x", "expires_in_days": 1 }),
            )
            .await;
        let (status, _) = env.get("/v1/whoami", token["secret"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "a day is not over yet");

        // Revoked operator and publisher tokens, and tokens nobody issued.
        let (_, operator) = env.post("/v1/operator/tokens", &env.operator, json!({ "label": "spare" })).await;
        let (status, _) = env
            .call(
                "DELETE",
                &format!("/v1/operator/tokens/{}", operator["id"].as_str().unwrap()),
                Some(&env.operator),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(refused(env.get("/v1/tenants", operator["secret"].as_str().unwrap()).await), code("token_revoked"));
        let (_, publisher) = env
            .post("/v1/publishers/nexus-labs/tokens", &env.publisher, json!({ "scopes": ["publish"], "label": "ci" }))
            .await;
        let uri = format!("/v1/publishers/nexus-labs/tokens/{}", publisher["id"].as_str().unwrap());
        assert_eq!(env.call("DELETE", &uri, Some(&env.publisher), None).await.0, StatusCode::NO_CONTENT);
        assert_eq!(refused(env.get("/v1/whoami", publisher["secret"].as_str().unwrap()).await), code("token_revoked"));
        for bogus in ["nxt_0000_bogus", "nxo_0000_bogus", "nexus_0000_bogus"] {
            assert_eq!(refused(env.get("/v1/whoami", bogus).await), code("unauthenticated"), "{bogus}");
            // A public route that shows more to owners still refuses a bad token.
            assert_eq!(refused(env.get("/v1/catalog/nexus-labs/echo", bogus).await), code("unauthenticated"));
        }
        let basic =
            Request::get("/v1/whoami").header(header::AUTHORIZATION, "Basic Z2xvYmV4OnB3").body(Body::empty()).unwrap();
        let (status, _, body) = env.raw(basic).await;
        assert_eq!(refused((status, json_of(&body))), code("unauthenticated"));
    });
}

#[test]
fn one_account_cannot_revoke_another_accounts_tokens_or_keys() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let initech = env.tenant("initech").await;
        let (_, acme) =
            env.post("/v1/publishers", &env.operator, json!({ "id": "acme", "display_name": "Acme" })).await;
        let acme = acme["secret"].as_str().unwrap().to_string();
        let not_found = |(status, body): (StatusCode, Value)| {
            assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
        };

        let (_, token) =
            env.post("/v1/tenants/globex/tokens", &globex, json!({ "scopes": ["read"], "label": "ro" })).await;
        let (id, secret) = (token["id"].as_str().unwrap(), token["secret"].as_str().unwrap());
        // Through initech's own path, through globex's path, and through the operator route.
        not_found(env.call("DELETE", &format!("/v1/tenants/initech/tokens/{id}"), Some(&initech), None).await);
        not_found(env.call("DELETE", &format!("/v1/tenants/globex/tokens/{id}"), Some(&initech), None).await);
        not_found(env.call("DELETE", &format!("/v1/operator/tokens/{id}"), Some(&env.operator), None).await);
        let (status, _) = env.get("/v1/whoami", secret).await;
        assert_eq!(status, StatusCode::OK, "globex's token still works");

        let (_, token) = env
            .post("/v1/publishers/nexus-labs/tokens", &env.publisher, json!({ "scopes": ["publish"], "label": "ci" }))
            .await;
        let (id, secret) = (token["id"].as_str().unwrap(), token["secret"].as_str().unwrap());
        not_found(env.call("DELETE", &format!("/v1/publishers/acme/tokens/{id}"), Some(&acme), None).await);
        let (status, _) = env.get("/v1/whoami", secret).await;
        assert_eq!(status, StatusCode::OK, "nexus-labs' token still works");

        let key = SecretKey::generate().unwrap().public_key().to_string();
        let (status, added) =
            env.post("/v1/publishers/nexus-labs/keys", &env.publisher, json!({ "public_key": key })).await;
        assert_eq!(status, StatusCode::CREATED);
        let fingerprint = added["fingerprint"].as_str().unwrap();
        not_found(env.call("DELETE", &format!("/v1/publishers/acme/keys/{fingerprint}"), Some(&acme), None).await);
        let (_, keys) = env.call("GET", "/v1/publishers/nexus-labs/keys", None, None).await;
        let first = &keys["items"][0];
        assert_eq!((first["fingerprint"].as_str(), &first["revoked_at"]), (Some(fingerprint), &Value::Null));
    });
}

#[test]
fn a_token_cannot_issue_a_token_with_scopes_it_lacks() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let globex = env.tenant("globex").await;
        let code = |(status, body): (StatusCode, Value)| (status, body["error"]["code"].as_str().map(str::to_string));
        let missing = (StatusCode::FORBIDDEN, Some("missing_scope".to_string()));

        let (_, minter) =
            env.post("/v1/tenants/globex/tokens", &globex, json!({ "scopes": ["tokens", "read"], "label": "m" })).await;
        let minter = minter["secret"].as_str().unwrap();
        let (status, _) =
            env.post("/v1/tenants/globex/tokens", minter, json!({ "scopes": ["read"], "label": "r" })).await;
        assert_eq!(status, StatusCode::CREATED, "a subset of its own scopes");
        for scopes in [json!(["installs"]), json!(["read", "events"])] {
            let body = json!({ "scopes": scopes, "label": "up" });
            assert_eq!(code(env.post("/v1/tenants/globex/tokens", minter, body).await), missing, "{scopes}");
        }
        let (status, _) = env
            .post("/v1/tenants/globex/tokens", &env.operator, json!({ "scopes": ["installs"], "label": "op" }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "operators grant any scope");

        let uri = "/v1/publishers/nexus-labs/tokens";
        let (_, keys_only) = env.post(uri, &env.publisher, json!({ "scopes": ["keys"], "label": "k" })).await;
        let keys_only = keys_only["secret"].as_str().unwrap();
        let (status, _) = env.post(uri, keys_only, json!({ "scopes": ["keys"], "label": "k2" })).await;
        assert_eq!(status, StatusCode::CREATED);
        let body = json!({ "scopes": ["publish", "yank"], "label": "up" });
        assert_eq!(code(env.post(uri, keys_only, body).await), missing);
    });
}
