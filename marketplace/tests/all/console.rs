//! The web console in process: signing in and out (cookie flags, CSRF, revoked tokens),
//! every page as every role (allowed pages show the right figures, denied ones refuse with
//! the API's status and code and show nothing of what they guard), the install consent
//! flow through forms, CSV downloads equal to the API's, and charts that agree with
//! `/v1/metrics/gmv`. On SQLite; the browser test (`browser.rs`) drives the same pages in
//! Chromium.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nexus_marketplace::billing::{BillingConfig, DAY_MS, ManualClock, SandboxProvider};
use serde_json::{Value, json};

use super::common::{Env, Options, runtime};

/// 2026-11-03T00:00:00Z: the billing clock of the world below.
pub const NOV_3: i64 = 1_793_491_200_000 + 2 * DAY_MS;

/// A marketplace with money in it: a 15% policy for nexus-labs, a one-time 60.00 EUR plan
/// on echo bought by globex, a payout to nexus-labs, and initech with nothing.
pub struct World {
    pub env: Env,
    pub globex: String,
    pub initech: String,
    pub acme: String,
    pub install: String,
    pub payout: String,
    pub clock: Arc<ManualClock>,
}

impl World {
    pub async fn new() -> Self {
        let clock = Arc::new(ManualClock::at(NOV_3));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let env = Env::with(false, Options { billing: Some(billing), ..Options::default() }).await;
        let (status, body) = env
            .post(
                "/v1/revenue-share/policies",
                &env.operator,
                json!({ "publisher": "nexus-labs", "tiers": [{ "rate_bp": 1500 }] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let plan = json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time", "currency": "EUR", "price_minor": 6000 });
        let (status, body) = env.post("/v1/plugins/nexus-labs/echo/plans", &env.publisher, plan).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let globex = env.tenant("globex").await;
        let initech = env.tenant("initech").await;
        let install = env.install(&globex, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        let install = install["id"].as_str().unwrap().to_string();
        let event = json!({ "id": "evt_console_1", "type": "echo.request", "payload": { "text": "hi" } });
        let (status, body) = env.post(&format!("/v1/installs/{install}/invoke"), &globex, event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = env.post("/v1/billing/runs", &env.operator, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, run) = env.post("/v1/payouts/runs", &env.operator, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        let (_, payouts) = env.get("/v1/publishers/nexus-labs/payouts", &env.operator).await;
        let payout = payouts[0]["id"].as_str().unwrap_or_else(|| panic!("a payout: {run} {payouts}")).to_string();
        // An hour on: what happened at NOV_3 is inside every window ending now.
        clock.advance(3_600_000);
        let (status, acme) =
            env.post("/v1/publishers", &env.operator, json!({ "id": "acme", "display_name": "Acme" })).await;
        assert_eq!(status, StatusCode::CREATED, "{acme}");
        let acme = acme["secret"].as_str().unwrap().to_string();
        Self { env, globex, initech, acme, install, payout, clock }
    }
}

/// A browser of one: its cookie jar holds the session after [`Browser::sign_in`].
pub struct Browser<'a> {
    env: &'a Env,
    cookies: Vec<(String, String)>,
}

/// An answer: status, `Location`, `Set-Cookie` lines, body text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub content_type: String,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl<'a> Browser<'a> {
    pub fn new(env: &'a Env) -> Self {
        Self { env, cookies: Vec::new() }
    }

    async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> Answer {
        let mut request = request;
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header(header::COOKIE, jar.join("; "));
        }
        let (status, headers, bytes) = self.env.raw(request.body(body).unwrap()).await;
        let set_cookies: Vec<String> =
            headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
        for line in &set_cookies {
            let (pair, _) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !line.contains("Max-Age=0") {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
        Answer {
            status,
            location: headers.get(header::LOCATION).map(|v| v.to_str().unwrap().to_string()),
            set_cookies,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&mut self, uri: &str) -> Answer {
        self.send(Request::get(uri), Body::empty()).await
    }

    pub async fn post(&mut self, uri: &str, fields: &[(&str, &str)]) -> Answer {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let request = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(request, Body::from(body.join("&"))).await
    }

    /// The CSRF value the page's forms carry.
    pub fn csrf_of(page: &Answer) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = page.body.find(marker).unwrap_or_else(|| panic!("no form in {}", page.body)) + marker.len();
        page.body[start..].split('"').next().unwrap().to_string()
    }

    pub async fn sign_in(&mut self, token: &str) -> Answer {
        let form = self.get("/console/sign-in").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = Self::csrf_of(&form);
        self.post("/console/sign-in", &[("csrf", &csrf), ("token", token)]).await
    }
}

/// Text as the templates write it into HTML.
fn escaped(text: &str) -> String {
    text.replace('&', "&#38;").replace('\'', "&#39;").replace('"', "&#34;").replace('<', "&#60;").replace('>', "&#62;")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Anonymous,
    Operator,
    Publisher,
    OtherPublisher,
    Tenant,
    OtherTenant,
}

const ROLES: [Role; 6] =
    [Role::Anonymous, Role::Operator, Role::Publisher, Role::OtherPublisher, Role::Tenant, Role::OtherTenant];

/// What a page must answer to a role: the page with these texts in it, the sign-in
/// redirect, or a refusal with the API's status and code.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Shows(&'static [&'static str]),
    SignIn,
    Refuses(u16, &'static str),
}

use Expect::{Refuses, Shows, SignIn};

const FORBIDDEN: Expect = Refuses(403, "forbidden");
const NOT_OWNED: Expect = Refuses(403, "namespace_not_owned");

#[test]
fn every_page_answers_every_role_as_the_api_would() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let install = format!("/console/installs/{}", world.install);
        let payout = format!("/console/partners/nexus-labs/payouts/{}", world.payout);
        // (page, [anonymous, operator, publisher nexus-labs, publisher acme, globex, initech])
        let table: Vec<(String, [Expect; 6])> = vec![
            (
                "/console/catalog".into(),
                [Shows(&[
                    "nexus-labs/echo",
                    "All listings",
                    "New and updated",
                    "developer-tools</a> <span class=\"muted\">1</span>",
                ]); 6],
            ),
            (
                "/console/catalog/category/developer-tools".into(),
                [Shows(&["nexus-labs/echo", "Catalog: developer-tools", "developer-tools (1)"]); 6],
            ),
            ("/console/catalog/category/nope".into(), [Refuses(404, "not_found"); 6]),
            ("/console/catalog?q=echo&sort=name".into(), [Shows(&["nexus-labs/echo", "Results"]); 6]),
            ("/console/catalog/nexus-labs/echo".into(), [Shows(&["Lifetime", "60.00 EUR once"]); 6]),
            ("/console/publishers/nexus-labs".into(), [Shows(&["nexus-labs/echo", "Installs", "Average rating"]); 6]),
            ("/console/publishers/nobody".into(), [Refuses(404, "not_found"); 6]),
            (
                "/console/catalog/nexus-labs/echo/install".into(),
                [SignIn, FORBIDDEN, FORBIDDEN, FORBIDDEN, Shows(&["Grant and install"]), Shows(&["Grant and install"])],
            ),
            (
                "/console/installs".into(),
                [
                    SignIn,
                    Refuses(400, "invalid_query"),
                    FORBIDDEN,
                    FORBIDDEN,
                    Shows(&["nexus-labs/echo"]),
                    Shows(&["Nothing installed yet"]),
                ],
            ),
            (
                "/console/installs?tenant=globex".into(),
                [
                    SignIn,
                    Shows(&["nexus-labs/echo"]),
                    FORBIDDEN,
                    FORBIDDEN,
                    Shows(&["nexus-labs/echo"]),
                    Refuses(404, "not_found"),
                ],
            ),
            (
                install.clone(),
                [
                    SignIn,
                    Shows(&["evt_console_1"]),
                    FORBIDDEN,
                    FORBIDDEN,
                    Shows(&["evt_console_1", "echo.request"]),
                    Refuses(404, "not_found"),
                ],
            ),
            (
                "/console/operator/tenants?q=GLOB".into(),
                [
                    SignIn,
                    Shows(&["<code>globex</code>", "1 tenant(s) matching", "Live installs"]),
                    FORBIDDEN,
                    FORBIDDEN,
                    FORBIDDEN,
                    FORBIDDEN,
                ],
            ),
            (
                "/console/operator/partners?q=labs".into(),
                [
                    SignIn,
                    Shows(&["<code>nexus-labs</code>", "1 partner(s)"]),
                    FORBIDDEN,
                    FORBIDDEN,
                    FORBIDDEN,
                    FORBIDDEN,
                ],
            ),
            (
                "/console/operator/partners?q=%25".into(),
                [SignIn, Shows(&["No partner matches."]), FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN],
            ),
            (
                "/console/deliveries".into(),
                [
                    SignIn,
                    Shows(&["No dead deliveries", "Deliveries: dead"]),
                    FORBIDDEN,
                    FORBIDDEN,
                    Shows(&["No dead deliveries"]),
                    Shows(&["No dead deliveries"]),
                ],
            ),
            (
                "/console/bills?period=2026-11".into(),
                [
                    SignIn,
                    Refuses(400, "invalid_query"),
                    FORBIDDEN,
                    FORBIDDEN,
                    Shows(&["60.00 EUR", "Lifetime"]),
                    Shows(&["Nothing was charged"]),
                ],
            ),
            (
                "/console/partners/nexus-labs".into(),
                [
                    SignIn,
                    Shows(&["51.00 EUR", "GMV by month in EUR"]),
                    Shows(&["51.00 EUR", "60.00 EUR"]),
                    NOT_OWNED,
                    FORBIDDEN,
                    FORBIDDEN,
                ],
            ),
            (
                "/console/partners/nexus-labs/statements/2026-11".into(),
                [
                    SignIn,
                    Shows(&["Closing balance", "60.00 EUR"]),
                    Shows(&["Closing balance", "60.00 EUR", "-51.00 EUR"]),
                    NOT_OWNED,
                    FORBIDDEN,
                    FORBIDDEN,
                ],
            ),
            (
                payout.clone(),
                [
                    SignIn,
                    Shows(&["51.00 EUR", "Lines it settles"]),
                    Shows(&["51.00 EUR"]),
                    NOT_OWNED,
                    FORBIDDEN,
                    FORBIDDEN,
                ],
            ),
            (
                "/console/operator".into(),
                [
                    SignIn,
                    Shows(&["GMV by month in EUR", "Take rate in EUR", "nexus-labs/echo", "Run payouts now"]),
                    FORBIDDEN,
                    FORBIDDEN,
                    FORBIDDEN,
                    FORBIDDEN,
                ],
            ),
            (
                "/console/operator?interval=day".into(),
                [SignIn, Shows(&["GMV by day in EUR"]), FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN],
            ),
            (
                "/console/operator/audit".into(),
                [SignIn, Shows(&["payouts.run"]), FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN],
            ),
            (
                "/console/operator/ledger".into(),
                [SignIn, Shows(&["The ledger balances"]), FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN],
            ),
            (
                "/console/operator/applications".into(),
                [SignIn, Shows(&["No application is waiting"]), FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN],
            ),
            // People's own pages: a session opened with a token has no person behind it.
            ("/console/partner-program".into(), [SignIn, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN]),
            ("/console/organization".into(), [SignIn, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN]),
            ("/console/security".into(), [SignIn, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN]),
            // An organization's tokens: its managers (operators have none).
            (
                "/console/organization/tokens".into(),
                [
                    SignIn,
                    FORBIDDEN,
                    Shows(&["Make a token", "publish"]),
                    Shows(&["Make a token"]),
                    Shows(&["Make a token", "installs"]),
                    Shows(&["Make a token"]),
                ],
            ),
            ("/console/sign-up".into(), [Shows(&["Create an account"]); 6]),
            ("/console/reset".into(), [Shows(&["Reset your password"]); 6]),
        ];
        let tokens = [
            None,
            Some(env.operator.as_str()),
            Some(env.publisher.as_str()),
            Some(world.acme.as_str()),
            Some(world.globex.as_str()),
            Some(world.initech.as_str()),
        ];
        let mut failures = Vec::new();
        for (index, role) in ROLES.iter().enumerate() {
            let mut browser = Browser::new(env);
            if let Some(token) = tokens[index] {
                let signed = browser.sign_in(token).await;
                assert_eq!(signed.status, StatusCode::SEE_OTHER, "{role:?} signs in: {}", signed.body);
            }
            for (page, expected) in &table {
                let answer = browser.get(page).await;
                let ok = match expected[index] {
                    Shows(texts) => {
                        answer.status == StatusCode::OK
                            && answer.content_type.starts_with("text/html")
                            && texts.iter().all(|t| answer.body.contains(t))
                    }
                    // To the sign-in, which returns to the page asked for.
                    SignIn => {
                        answer.status == StatusCode::SEE_OTHER
                            && answer.location.as_deref()
                                == Some(format!("/console/sign-in?next={}", encode(page)).as_str())
                    }
                    Refuses(status, code) => {
                        answer.status.as_u16() == status
                            && answer.body.contains(code)
                            // Nothing the page guards leaks into the refusal.
                            && !answer.body.contains("evt_console_1")
                            && !answer.body.contains("51.00 EUR")
                    }
                };
                if !ok {
                    let excerpt: String = answer.body.chars().take(400).collect();
                    failures.push(format!(
                        "{role:?} GET {page}: expected {:?}, got {} {excerpt}",
                        expected[index], answer.status
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

#[test]
fn sign_in_sets_a_guarded_cookie_and_forms_need_the_session_csrf() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let mut browser = Browser::new(env);
        // A bad token is refused on the form, with no session.
        let refused = browser.sign_in("nxt_not_a_token").await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(refused.body.contains("That token is not known here."), "{}", refused.body);
        // A sign-in without the form's CSRF cookie (another site's form) is refused.
        let mut stranger = Browser::new(env);
        let forged = stranger.post("/console/sign-in", &[("csrf", "abc"), ("token", &world.globex)]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(forged.set_cookies.iter().all(|c| !c.starts_with("nexus_session=")), "{:?}", forged.set_cookies);

        let signed = browser.sign_in(&world.globex).await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER);
        assert_eq!(signed.location.as_deref(), Some("/console/installs"));
        let session = signed.set_cookies.iter().find(|c| c.starts_with("nexus_session=")).unwrap();
        for flag in ["HttpOnly", "SameSite=Lax", "Path=/console", "Max-Age=43200"] {
            assert!(session.contains(flag), "{session}");
        }
        assert!(!session.contains("Secure"), "served over http: {session}");
        // The cookie is not the token, and the database keeps neither in the clear.
        let cookie = session.split(';').next().unwrap().trim_start_matches("nexus_session=").to_string();
        assert!(!cookie.contains(&world.globex));
        let stored: Vec<String> = sqlx::query_scalar("SELECT id_sha256 || token_sha256 FROM console_sessions")
            .fetch_all(&env.market.db.pool)
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert!(!stored[0].contains(&cookie) && !stored[0].contains(&world.globex));

        // A form without the session's CSRF value changes nothing.
        let page = browser.get(&format!("/console/installs/{}", world.install)).await;
        // Pages cannot be framed, load nothing from elsewhere, and stay out of shared caches.
        let header_of =
            |name: &str| page.headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(header_of("content-security-policy").contains("frame-ancestors 'none'"), "{:?}", page.headers);
        assert!(header_of("content-security-policy").starts_with("default-src 'none'"));
        assert_eq!(header_of("x-frame-options"), "DENY");
        assert_eq!(header_of("cache-control"), "no-store");
        let csrf = Browser::csrf_of(&page);
        let forged = browser.post("/console/sign-out", &[("csrf", "0000")]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert!(forged.body.contains("csrf_mismatch"), "{}", forged.body);
        assert_eq!(browser.get("/console/installs").await.status, StatusCode::OK);

        // Signing out ends the session: the old cookie opens nothing.
        let out = browser.post("/console/sign-out", &[("csrf", &csrf)]).await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        let mut replay = Browser::new(env);
        replay.cookies.push(("nexus_session".into(), cookie.clone()));
        let after = replay.get("/console/installs").await;
        let back = "/console/sign-in?next=%2Fconsole%2Finstalls";
        assert_eq!((after.status, after.location.as_deref()), (StatusCode::SEE_OTHER, Some(back)));

        // The sign-in returns to the page asked for, and only to a console page of this site.
        let form = replay.get(back).await;
        assert!(form.body.contains(r#"<input type="hidden" name="next" value="/console/installs">"#), "{}", form.body);
        let csrf_form = Browser::csrf_of(&form);
        let fields =
            [("csrf", csrf_form.as_str()), ("token", world.globex.as_str()), ("next", "/console/bills?period=2026-11")];
        let returned = replay.post("/console/sign-in", &fields).await;
        assert_eq!(returned.location.as_deref(), Some("/console/bills?period=2026-11"));
        for foreign in ["//evil.example/console/", "https://evil.example/", "/console/../../x", "/console\\evil"] {
            let mut other = Browser::new(env);
            let form = other.get("/console/sign-in").await;
            let csrf_form = Browser::csrf_of(&form);
            let fields = [("csrf", csrf_form.as_str()), ("token", world.globex.as_str()), ("next", foreign)];
            let home = other.post("/console/sign-in", &fields).await;
            assert_eq!(home.location.as_deref(), Some("/console/installs"), "{foreign}");
        }
        // The header marks the page shown, the most specific link only.
        let mut operator = Browser::new(env);
        operator.sign_in(&env.operator).await;
        let audit = operator.get("/console/operator/audit").await;
        assert!(audit.body.contains(r#"<a href="/console/operator/audit" aria-current="page">Audit log</a>"#));
        assert_eq!(audit.body.matches("aria-current=\"page\"").count(), 1, "{}", audit.body);

        // Revoking the token behind a session ends the session too.
        let mut browser = Browser::new(env);
        let (status, issued) = env
            .post(
                "/v1/tenants/globex/tokens",
                &world.globex,
                json!({ "scopes": ["read", "installs"], "label": "console" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        assert_eq!(browser.sign_in(issued["secret"].as_str().unwrap()).await.status, StatusCode::SEE_OTHER);
        assert_eq!(browser.get("/console/installs").await.status, StatusCode::OK);
        let (status, _) = env
            .call(
                "DELETE",
                &format!("/v1/tenants/globex/tokens/{}", issued["id"].as_str().unwrap()),
                Some(&world.globex),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let after = browser.get("/console/installs").await;
        assert_eq!((after.status, after.location.as_deref()), (StatusCode::SEE_OTHER, Some(back)));
    });
}

#[test]
fn a_tenant_installs_through_the_consent_form_and_only_with_consent() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let mut browser = Browser::new(env);
        browser.sign_in(&world.initech).await;
        let form = browser.get("/console/catalog/nexus-labs/chat-notifier/install").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let (_, consent) = env.call("GET", "/v1/catalog/nexus-labs/chat-notifier/consent", None, None).await;
        // Every capability and host the API lists is on the form with its reason.
        for requested in consent["capabilities"].as_array().unwrap() {
            assert!(form.body.contains(&escaped(requested["reason"].as_str().unwrap())), "{requested}");
            for host in requested["hosts"].as_array().into_iter().flatten() {
                assert!(form.body.contains(&format!("value=\"{}\"", host["host"].as_str().unwrap())), "{host}");
            }
        }
        // What is charged and when is said before installing.
        let echo = browser.get("/console/catalog/nexus-labs/echo/install").await;
        assert!(echo.body.contains("60.00 EUR is charged now, once."), "{}", echo.body);
        let csrf = Browser::csrf_of(&form);
        let installs_of = |tenant: &'static str| async move {
            let (_, page) = env.get(&format!("/v1/installs?tenant={tenant}"), &env.operator).await;
            page["total"].as_u64().unwrap()
        };
        // A post without the consent (a stale or forged form) installs nothing; the form says why.
        let refused = browser.post("/console/catalog/nexus-labs/chat-notifier/install", &[("csrf", &csrf)]).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
        assert!(refused.body.contains("consent"), "{}", refused.body);
        assert_eq!(installs_of("initech").await, 0);

        let mut fields: Vec<(&str, String)> = vec![("csrf", csrf.clone())];
        for requested in consent["capabilities"].as_array().unwrap() {
            fields.push(("capability", requested["capability"].as_str().unwrap().to_string()));
            for host in requested["hosts"].as_array().into_iter().flatten() {
                fields.push(("host", host["host"].as_str().unwrap().to_string()));
            }
        }
        // The listing says what will be asked for before anyone starts installing.
        let listing = browser.get("/console/catalog/nexus-labs/chat-notifier").await;
        assert!(
            listing
                .body
                .contains("<li><code>webhook-url</code> (a secret, stored sealed), required: The incoming webhook URL"),
            "{}",
            listing.body
        );
        // The declared settings have fields of their own; the required secret is asked for.
        assert!(
            form.body.contains(r#"name="secret:webhook-url" type="password" autocomplete="off" required"#),
            "{}",
            form.body
        );
        assert!(form.body.contains(r#"name="setting:channel""#), "{}", form.body);
        let missing: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = browser.post("/console/catalog/nexus-labs/chat-notifier/install", &missing).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
        assert!(refused.body.contains("needs the secret `webhook-url`"), "{}", refused.body);
        fields.push(("setting:channel", "#ops".into()));
        fields.push(("secret:webhook-url", "https://hooks.slack.com/services/T/B/sk-console-SECRET-42".into()));
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let done = browser.post("/console/catalog/nexus-labs/chat-notifier/install", &fields).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let location = done.location.unwrap();
        assert!(location.starts_with("/console/installs/") && location.ends_with("?installed=1"), "{location}");
        let page = browser.get(&location).await;
        assert!(page.body.contains("Installed."), "{}", page.body);
        assert!(page.body.contains("#ops") && page.body.contains("<code>webhook-url</code> (set)"), "{}", page.body);
        // The secret is written, never shown.
        assert!(!page.body.contains("sk-console-SECRET-42"));
        assert_eq!(installs_of("initech").await, 1);
    });
}

#[test]
fn downloads_and_charts_agree_with_the_api() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let text = |uri: String, token: String| async move {
            let request = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap();
            String::from_utf8(env.raw(request).await.2).unwrap()
        };
        let mut partner = Browser::new(env);
        partner.sign_in(&env.publisher).await;
        // The listing table counts each plugin's invocations as the health API does.
        let overview = partner.get("/console/partners/nexus-labs").await;
        for (plugin, installs, invocations) in [("echo", 1, 1), ("tax-calculator", 0, 0)] {
            let (_, health) = env.get(&format!("/v1/plugins/nexus-labs/{plugin}/health"), &env.publisher).await;
            let ran: i64 = health.as_array().unwrap().iter().map(|v| v["invocations"].as_i64().unwrap()).sum();
            assert_eq!(ran, invocations, "{health}");
            let row = format!(
                "<a href=\"/console/catalog/nexus-labs/{plugin}\">nexus-labs/{plugin}</a></td>\n<td>0.1.0</td><td \
                 class=\"num\">{installs}</td><td class=\"num\">{ran}</td>"
            );
            assert!(overview.body.contains(&row), "{row} not in:\n{}", overview.body);
        }
        let statement = partner.get("/console/partners/nexus-labs/statements/2026-11.csv").await;
        assert_eq!(statement.status, StatusCode::OK);
        assert_eq!(statement.content_type, "text/csv; charset=utf-8");
        let api = text("/v1/publishers/nexus-labs/statements/2026-11.csv".into(), env.publisher.clone()).await;
        assert_eq!(statement.body, api);
        assert!(statement.body.lines().count() > 2, "{}", statement.body);

        let mut tenant = Browser::new(env);
        tenant.sign_in(&world.globex).await;
        let bill = tenant.get("/console/bills/2026-11.csv").await;
        assert_eq!(bill.body, text("/v1/bills/2026-11?format=csv".into(), world.globex.clone()).await);
        let page = tenant.get("/console/bills?period=2026-11").await;
        assert!(page.body.contains(r#"<a href="/console/bills/2026-11.csv" download>"#), "{}", page.body);

        // The chart's table lists what /v1/metrics/gmv says, period by period.
        let (_, gmv) = env.get("/v1/metrics/gmv?interval=month&by=currency", &env.operator).await;
        let mut operator = Browser::new(env);
        operator.sign_in(&env.operator).await;
        // An operator's view of a tenant's bill keeps the tenant in every link, and its CSV
        // is the API's for that tenant.
        let page = operator.get("/console/bills?period=2026-11&tenant=globex").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for link in [
            r#"<a href="/console/bills?period=2026-10&amp;tenant=globex">2026-10</a>"#,
            r#"<a href="/console/bills?period=2026-12&amp;tenant=globex">2026-12</a>"#,
            r#"<a href="/console/bills/2026-11.csv?tenant=globex" download>"#,
        ] {
            assert!(page.body.contains(link), "{link} not in:\n{}", page.body);
        }
        let csv = operator.get("/console/bills/2026-11.csv?tenant=globex").await;
        assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
        assert_eq!(csv.body, bill.body, "the operator downloads the same bill the tenant does");
        let dashboard = operator.get("/console/operator").await;
        let rows = gmv["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{gmv}");
        for row in rows {
            let currency = row["currency"].as_str().unwrap();
            let money = |minor: &Value| nexus_marketplace::console::money(minor.as_i64().unwrap(), currency);
            let bp = row["take_rate_bp"].as_i64().unwrap();
            let line = format!(
                "<tr><td>{}</td>\n<td class=\"num\">{}</td>\n<td class=\"num\">{}</td>\n<td class=\"num\">{}</td>\n<td class=\"num\">{}.{:02}%</td>",
                row["period"].as_str().unwrap(),
                money(&row["gmv_minor"]),
                money(&row["refunds_minor"]),
                money(&row["net_revenue_minor"]),
                bp / 100,
                bp % 100,
            );
            assert!(dashboard.body.contains(&line), "{line} not in the dashboard");
        }
        // A bar per period in the SVG, titled with the same amount.
        let first = &rows[0];
        let title = format!(
            "<title>{}: {}</title>",
            first["period"].as_str().unwrap(),
            nexus_marketplace::console::money(first["gmv_minor"].as_i64().unwrap(), first["currency"].as_str().unwrap())
        );
        assert!(dashboard.body.contains(&title), "{title}");
    });
}

#[test]
fn payout_runs_by_the_schedule_are_listed_with_readable_amounts_and_tiers_read_in_whole_units() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        // initech buys too; the schedule's run pays it in the next payout period.
        let install = env.install(&world.initech, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        assert_eq!(install["status"], "active", "{install}");
        let (status, body) = env.post("/v1/billing/runs", &env.operator, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        world.clock.advance(31 * DAY_MS);
        let report = nexus_marketplace::billing::payouts::scheduled_run(&env.market).await.unwrap();
        assert_eq!((report.paid, report.failed, report.pending), (1, 0, 0), "{report:?}");
        assert_eq!(report.paid_minor, [("EUR".to_string(), 5100)].into());
        // A run with nothing to pay is not recorded.
        let idle = nexus_marketplace::billing::payouts::scheduled_run(&env.market).await.unwrap();
        assert_eq!(idle.paid + idle.failed + idle.pending, 0, "{idle:?}");
        let (_, runs) = env.get("/v1/audit?action=payouts.run", &env.operator).await;
        let actors: Vec<&str> = runs["items"].as_array().unwrap().iter().map(|e| e["actor"].as_str().unwrap()).collect();
        assert_eq!(actors.len(), 2, "{runs}");
        assert_eq!(actors[0], "system:payout-schedule", "newest first: {runs}");

        let mut operator = Browser::new(env);
        operator.sign_in(&env.operator).await;
        let dashboard = operator.get("/console/operator").await;
        assert_eq!(dashboard.status, StatusCode::OK, "{}", dashboard.body);
        for text in [
            // December (the clock moved on) against November, when both purchases were made.
            "<tr><td>GMV in EUR</td><td class=\"num\">0.00 EUR</td><td>-100.0% on last month (120.00 EUR)</td></tr>",
            "<tr><td>Take rate in EUR</td><td class=\"num\">0.00%</td><td>-15.00 points on last month (15.00%)</td></tr>",
            "<tr><td>Paying tenants</td><td class=\"num\">0</td><td>-100.0% on last month (2)</td></tr>",
            "<td>the payout schedule</td>",
            "1 paid, 0 failed, 0 pending; paid 51.00 EUR</td>",
            "15.00% fee on all gross",
            "Without a policy: 0.00% fee on the first 1,000,000 of lifetime gross in each currency; 15.00% fee above 1,000,000.",
        ] {
            assert!(dashboard.body.contains(text), "{text} not in:\n{}", dashboard.body);
        }
        assert!(!dashboard.body.contains("minor units"), "{}", dashboard.body);
    });
}

#[test]
fn the_audit_log_reads_as_sentences_and_filters_by_actor_action_target_and_day() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let mut operator = Browser::new(env);
        operator.sign_in(&env.operator).await;
        let (_, all) = env.get("/v1/audit?per_page=100", &env.operator).await;
        let total = all["total"].as_u64().unwrap();
        let page = operator.get("/console/operator/audit").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(&format!("{total} entries, newest first")), "{}", page.body);
        // Details are label and value, not JSON.
        let installed = all["items"].as_array().unwrap().iter().find(|e| e["action"] == "install.created").unwrap();
        assert!(!page.body.contains("{&quot;"), "no raw JSON object: {}", page.body);
        assert!(page.body.contains(&format!("<td>{}</td>", installed["target"].as_str().unwrap())), "{}", page.body);

        let (_, globex) = env.get("/v1/audit?actor=tenant:globex", &env.operator).await;
        let page = operator.get("/console/operator/audit?actor=tenant%3Aglobex&action=").await;
        let count = globex["total"].as_u64().unwrap();
        assert!(count > 0, "{globex}");
        assert!(page.body.contains(&format!("{count} entr")), "{}", page.body);
        let page = operator.get(&format!("/console/operator/audit?target={}", world.install)).await;
        let (_, targeted) = env.get(&format!("/v1/audit?target={}", world.install), &env.operator).await;
        assert!(page.body.contains(&format!("{} entr", targeted["total"])), "{}", page.body);

        // Days are UTC and both ends count; the world's entries are all from the test's day.
        let today = nexus_money::period::day_label(nexus_registry::db::now_ms());
        let page = operator.get(&format!("/console/operator/audit?from={today}&to={today}")).await;
        assert!(page.body.contains(&format!("{total} entries")), "{}", page.body);
        let page = operator.get("/console/operator/audit?to=2000-01-01").await;
        assert!(page.body.contains("0 entries") && page.body.contains("No entry matches."), "{}", page.body);
        for bad in ["from=2026-02-30", "to=yesterday", "from=2026-13-01"] {
            let page = operator.get(&format!("/console/operator/audit?{bad}")).await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}: {}", page.body);
            assert!(page.body.contains("is not a date such as 2026-11-30"), "{bad}: {}", page.body);
        }
    });
}

#[test]
fn a_tenant_runs_an_install_from_its_page_settings_secrets_health_delisting_and_uninstall() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let page_of = format!("/console/installs/{}", world.install);
        let mut tenant = Browser::new(env);
        tenant.sign_in(&world.globex).await;
        let page = tenant.get(&page_of).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        // The plan in words, and the one ok run in both windows.
        assert!(page.body.contains("lifetime: 60.00 EUR once"), "{}", page.body);
        let healthy = "<td class=\"num\">1</td><td class=\"num\">0</td><td class=\"num\">0.00%</td>\n<td>none</td>";
        assert_eq!(page.body.matches(healthy).count(), 2, "{}", page.body);
        let csrf = Browser::csrf_of(&page);

        // Settings: a line that is not `name = value` comes back beside the form, as typed.
        let typed = "prefix = >> \nnonsense";
        let refused = tenant.post(&format!("{page_of}/settings"), &[("csrf", &csrf), ("config", typed)]).await;
        assert_eq!(refused.status, StatusCode::OK, "{}", refused.body);
        assert!(refused.body.contains("Not done: config line 2 is not `name = value`"), "{}", refused.body);
        assert!(refused.body.contains(&escaped(typed)), "{}", refused.body);
        let saved = tenant.post(&format!("{page_of}/settings"), &[("csrf", &csrf), ("config", "prefix = >> ")]).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let (_, install) = env.get(&format!("/v1/installs/{}", world.install), &world.globex).await;
        assert_eq!(install["config"], json!({ "prefix": ">>" }));

        // Secrets: set (never shown again), then removed.
        let secret = "s3cret-value-never-shown";
        let set = tenant
            .post(&format!("{page_of}/secrets"), &[("csrf", &csrf), ("name", "api-key"), ("value", secret)])
            .await;
        assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.body);
        let page = tenant.get(set.location.as_deref().unwrap()).await;
        assert!(page.body.contains("Secret api-key set; it is never shown again."), "{}", page.body);
        assert!(page.body.contains("<code>api-key</code> (set)") && !page.body.contains(secret), "{}", page.body);
        let removed = tenant.post(&format!("{page_of}/secrets/api-key/remove"), &[("csrf", &csrf)]).await;
        assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
        let (_, install) = env.get(&format!("/v1/installs/{}", world.install), &world.globex).await;
        assert_eq!(install["secret_names"], json!([]));

        // A delisting is told to the tenants who have the plugin, on the list and the page.
        let reason = "the publisher stopped answering security reports";
        let (status, body) =
            env.post("/v1/catalog/nexus-labs/echo/delist", &env.operator, json!({ "reason": reason })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let list = tenant.get("/console/installs").await;
        assert!(list.body.contains(&format!("Delisted by the marketplace: {reason}")), "{}", list.body);
        let page = tenant.get(&page_of).await;
        assert!(page.body.contains("Your install keeps running and keeps its plan"), "{}", page.body);

        // An operator reads the page but gets none of the tenant's forms.
        let mut operator = Browser::new(env);
        operator.sign_in(&env.operator).await;
        let read = operator.get(&page_of).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.body);
        assert!(
            read.body.contains("Health") && !read.body.contains("Save settings") && !read.body.contains("Uninstall")
        );
        let forged = operator
            .post(&format!("{page_of}/uninstall"), &[("csrf", &Browser::csrf_of(&read)), ("confirm", "yes")])
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);

        // Uninstalling needs the tick; then the install is gone and the page says so.
        let unconfirmed = tenant.post(&format!("{page_of}/uninstall"), &[("csrf", &csrf)]).await;
        assert!(unconfirmed.body.contains("Not done: tick"), "{}", unconfirmed.body);
        let (_, install) = env.get(&format!("/v1/installs/{}", world.install), &world.globex).await;
        assert_eq!(install["status"], "active");
        let gone = tenant.post(&format!("{page_of}/uninstall"), &[("csrf", &csrf), ("confirm", "yes")]).await;
        assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
        let (_, install) = env.get(&format!("/v1/installs/{}", world.install), &world.globex).await;
        assert_eq!(install["status"], "uninstalled");
        let page = tenant.get(gone.location.as_deref().unwrap()).await;
        assert!(page.body.contains("Uninstalled. Its history and bills stay here."), "{}", page.body);
        assert!(!page.body.contains("Save settings"), "no forms for what is gone");
        let again = tenant.post(&format!("{page_of}/uninstall"), &[("csrf", &csrf), ("confirm", "yes")]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    });
}

#[test]
fn a_plan_change_is_previewed_to_the_cent_then_confirmed_once_however_often_the_form_is_sent() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let monthly = json!({ "key": "monthly", "name": "Monthly", "model": "subscription", "currency": "EUR",
                              "price_minor": 900, "interval": "month" });
        let (status, body) = env.post("/v1/plugins/nexus-labs/echo/plans", &env.publisher, monthly).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let page_of = format!("/console/installs/{}", world.install);
        let mut tenant = Browser::new(env);
        tenant.sign_in(&world.globex).await;
        let page = tenant.get(&page_of).await;
        assert!(page.body.contains("Monthly: 9.00 EUR a month") && page.body.contains("Preview the change"));

        let preview = tenant.get(&format!("{page_of}/plan?plan=monthly")).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
        let (_, api) =
            env.get(&format!("/v1/installs/{}/plan/preview?plan=monthly", world.install), &world.globex).await;
        assert_eq!((&api["credited_minor"], &api["charged_minor"]), (&json!(0), &json!(900)), "{api}");
        for text in [
            "<tr><th scope=\"row\">Credited today</th><td class=\"num\">0.00 EUR</td></tr>",
            "<tr><th scope=\"row\">Charged today</th><td class=\"num\">9.00 EUR</td></tr>",
            "<td>subscription</td><td class=\"num\">9.00 EUR</td>",
        ] {
            assert!(preview.body.contains(text), "{text} not in:\n{}", preview.body);
        }
        let (_, before) = env.get(&format!("/v1/installs/{}", world.install), &world.globex).await;
        assert_eq!(before["plan"], "lifetime", "a preview changes nothing");

        // The confirmation carries the previewed revision and one key: sent twice, one change.
        let field = |name: &str| {
            let marker = format!("name=\"{name}\" value=\"");
            let start = preview.body.find(&marker).unwrap() + marker.len();
            preview.body[start..].split('"').next().unwrap().to_string()
        };
        let form = [("csrf", field("csrf")), ("plan", field("plan")), ("key", field("key"))];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(form[1].1.starts_with("pln_"), "{form:?}");
        for _ in 0..2 {
            let sent = tenant.post(&format!("{page_of}/plan"), &form).await;
            assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
        }
        let (_, after) = env.get(&format!("/v1/installs/{}", world.install), &world.globex).await;
        assert_eq!(after["plan"], "monthly", "{after}");
        let (_, charges) = env.get("/v1/charges?per_page=100", &world.globex).await;
        let subscriptions: Vec<&Value> =
            charges["items"].as_array().unwrap().iter().filter(|c| c["line"] == "subscription").collect();
        assert_eq!(subscriptions.len(), 1, "{charges}");
        assert_eq!(
            (&subscriptions[0]["amount_minor"], &subscriptions[0]["status"]),
            (&json!(900), &json!("collected"))
        );

        // The partner's recurring revenue now counts the subscription.
        let mut partner = Browser::new(env);
        partner.sign_in(&env.publisher).await;
        let earnings = partner.get("/console/partners/nexus-labs").await;
        assert!(earnings.body.contains("Monthly recurring revenue: <strong>9.00 EUR</strong>"), "{}", earnings.body);

        // Asking to move to the plan it is on comes back on the install page.
        let same = tenant.get(&format!("{page_of}/plan?plan=monthly")).await;
        assert_eq!(same.status, StatusCode::OK, "{}", same.body);
        assert!(same.body.contains("Not done: ") && same.body.contains("is already on plan"), "{}", same.body);
    });
}

#[test]
fn a_partner_sees_its_next_payout_when_and_why_it_waits_and_its_own_earnings() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let next = "/v1/publishers/nexus-labs/payouts/next";
        let mut partner = Browser::new(env);
        partner.sign_in(&env.publisher).await;
        // The world paid nexus-labs out: nothing is owed.
        assert_eq!(env.get(next, &env.publisher).await.1, json!([]));
        let page = partner.get("/console/partners/nexus-labs").await;
        assert!(page.body.contains("Nothing is owed to you right now."), "{}", page.body);
        // Its earnings are its share: 60.00 gross less the 15% fee.
        assert!(page.body.contains("Your earnings by month in EUR") && page.body.contains(": 51.00 EUR</title>"));

        // Installs by month (the one-time purchase is no recurring revenue).
        assert!(
            page.body.contains(
                "<tr><td>2026-11</td><td class=\"num\">1</td><td class=\"num\">0</td><td class=\"num\">1</td>"
            )
        );
        assert!(page.body.contains("Monthly recurring revenue: none yet"), "{}", page.body);
        // Customers of the month, and sales for any month.
        assert!(page.body.contains("<h2>Customers in 2026-11</h2>"), "{}", page.body);
        assert!(page.body.contains("<tr><td>globex</td><td class=\"num\">1</td><td class=\"num\">0</td>"));
        let november = partner.get("/console/partners/nexus-labs?period=2026-11").await;
        assert!(november.body.contains("Sales by plugin in 2026-11") && november.body.contains("60.00 EUR"));
        let october = partner.get("/console/partners/nexus-labs?period=2026-10").await;
        assert!(october.body.contains("No sales in this month."), "{}", october.body);
        let bad = partner.get("/console/partners/nexus-labs?period=2026-13").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
        // The statement names the customer of every sale and signs what is taken away.
        let statement = partner.get("/console/partners/nexus-labs/statements/2026-11").await;
        for text in [
            "<td>globex</td>\n<td>nexus-labs/echo</td>",
            "<td class=\"num\">60.00 EUR</td>\n<td class=\"num\">-9.00 EUR</td>\n<td class=\"num\">51.00 EUR</td>",
            "<tr><th scope=\"row\">Platform fees</th><td class=\"num\">-9.00 EUR</td></tr>",
            "<tr><th scope=\"row\">Payouts</th><td class=\"num\">-51.00 EUR</td></tr>",
        ] {
            assert!(statement.body.contains(text), "{text} not in:\n{}", statement.body);
        }
        let (_, api) = env.get("/v1/publishers/nexus-labs/statements/2026-11", &env.publisher).await;
        assert_eq!(api[0]["lines"][0]["tenant"], "globex", "{api}");

        // initech buys in the same payout period: owed, but paid from the next period.
        let bought = env.install(&world.initech, "nexus-labs/echo", json!({ "plan": "lifetime" })).await;
        assert_eq!(bought["status"], "active", "{bought}");
        let (_, owed) = env.get(next, &env.publisher).await;
        assert_eq!(
            (&owed[0]["currency"], &owed[0]["balance_minor"], &owed[0]["state"]),
            (&json!("EUR"), &json!(5100), &json!("paid_this_period")),
            "{owed}"
        );
        // NOV_3 is in the first half of November: the next period starts on the 16th.
        assert_eq!(owed[0]["earliest_at"], json!(NOV_3 + 13 * DAY_MS), "{owed}");
        let page = partner.get("/console/partners/nexus-labs").await;
        assert!(page.body.contains("from 2026-11-16 00:00 UTC"), "{}", page.body);

        // In the next period it is due; under a raised minimum it waits, saying how much is missing.
        world.clock.advance(13 * DAY_MS);
        assert_eq!(env.get(next, &env.publisher).await.1[0]["state"], "due");
        let (status, body) = env
            .call("PUT", "/v1/payouts/minimums/EUR", Some(&env.operator), Some(r#"{ "minimum_minor": 10000 }"#))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let (_, owed) = env.get(next, &env.publisher).await;
        assert_eq!((&owed[0]["state"], &owed[0]["missing_minor"]), (&json!("below_minimum"), &json!(4900)), "{owed}");
        let page = partner.get("/console/partners/nexus-labs").await;
        assert!(page.body.contains("once 49.00 EUR more is earned"), "{}", page.body);
        assert!(page.body.contains("49.00 EUR more to reach the 100.00 EUR minimum; carried forward"));
        // A hold says so, with its reason.
        let hold = json!({ "reason": "tax form missing" });
        let (status, body) = env.post("/v1/publishers/nexus-labs/payout-hold", &env.operator, hold).await;
        assert!(status.is_success(), "{status} {body}");
        let (_, owed) = env.get(next, &env.publisher).await;
        assert_eq!(owed[0]["state"], "held", "{owed}");
        assert_eq!(owed[0]["reason"], "payouts are held by the marketplace: tax form missing");
        // Another partner's outlook is not this one's to read.
        let (status, _) = env.get(next, &world.acme).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    });
}

#[test]
fn operators_move_money_from_the_console_with_a_reason_and_a_confirmation_and_receipts_show_it() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let (_, charges) = env.get("/v1/charges", &world.globex).await;
        let charge = charges["items"][0]["id"].as_str().unwrap().to_string();
        let receipt_of = format!("/console/charges/{charge}");

        // The tenant's bill links each line's receipt, and the receipt shows what stands.
        let mut tenant = Browser::new(env);
        tenant.sign_in(&world.globex).await;
        let bill = tenant.get("/console/bills?period=2026-11").await;
        assert!(bill.body.contains(&format!(r#"<a href="{receipt_of}">Receipt</a>"#)), "{}", bill.body);
        let receipt = tenant.get(&receipt_of).await;
        assert_eq!(receipt.status, StatusCode::OK, "{}", receipt.body);
        assert!(
            receipt.body.contains("<strong>60.00 EUR</strong>") && receipt.body.contains("<td>1</td><td>succeeded")
        );
        assert!(!receipt.body.contains("Yes, refund this charge"), "refunds are the operators'");
        let mut other = Browser::new(env);
        other.sign_in(&world.initech).await;
        assert_eq!(other.get(&receipt_of).await.status, StatusCode::NOT_FOUND, "another tenant's receipt");

        // An operator refunds from the receipt: confirmed, with a reason, once per page.
        let mut operator = Browser::new(env);
        operator.sign_in(&env.operator).await;
        let page = operator.get(&receipt_of).await;
        let field = |page: &Answer, name: &str| {
            let marker = format!("name=\"{name}\" value=\"");
            let start = page.body.find(&marker).unwrap() + marker.len();
            page.body[start..].split('"').next().unwrap().to_string()
        };
        let (csrf, key) = (field(&page, "csrf"), field(&page, "key"));
        let unconfirmed = [("csrf", csrf.as_str()), ("key", key.as_str()), ("amount", "12.50"), ("reason", "late")];
        let sent = operator.post(&format!("{receipt_of}/refund"), &unconfirmed).await;
        let shown = operator.get(sent.location.as_deref().unwrap()).await;
        assert!(shown.body.contains("Not done: tick the confirmation box"), "{}", shown.body);
        let too_precise = [
            ("csrf", csrf.as_str()),
            ("key", key.as_str()),
            ("amount", "12.505"),
            ("reason", "late"),
            ("confirm", "yes"),
        ];
        let sent = operator.post(&format!("{receipt_of}/refund"), &too_precise).await;
        let shown = operator.get(sent.location.as_deref().unwrap()).await;
        assert!(shown.body.contains("more decimals than the currency has"), "{}", shown.body);
        let confirmed = [
            ("csrf", csrf.as_str()),
            ("key", key.as_str()),
            ("amount", "12.50"),
            ("reason", "late"),
            ("confirm", "yes"),
        ];
        for _ in 0..2 {
            let sent = operator.post(&format!("{receipt_of}/refund"), &confirmed).await;
            assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
        }
        let (_, refunds) = env.get(&format!("/v1/charges/{charge}"), &env.operator).await;
        assert_eq!(refunds["refunds"].as_array().map(Vec::len), Some(1), "one refund for a page sent twice: {refunds}");
        assert_eq!(refunds["charge"]["refunded_minor"], 1250);
        let receipt = tenant.get(&receipt_of).await;
        assert!(receipt.body.contains("<strong>47.50 EUR</strong>") && receipt.body.contains("<td>late</td>"));
        let bill = tenant.get("/console/bills?period=2026-11").await;
        assert!(
            bill.body.contains("<td>nexus-labs/echo</td><td class=\"num\">12.50 EUR</td><td>late</td>"),
            "{}",
            bill.body
        );

        // Holds, releases and adjustments on the partner's page.
        let partner_page = "/console/partners/nexus-labs";
        let page = operator.get(partner_page).await;
        let (csrf, key) = (field(&page, "csrf"), field(&page, "key"));
        let held = operator
            .post(
                &format!("{partner_page}/hold"),
                &[("csrf", &csrf), ("reason", "tax form missing"), ("confirm", "yes")],
            )
            .await;
        let page = operator.get(held.location.as_deref().unwrap()).await;
        assert!(page.body.contains("Payouts are held: tax form missing") && page.body.contains("Release payouts"));
        let released = operator.post(&format!("{partner_page}/release"), &[("csrf", &csrf), ("confirm", "yes")]).await;
        let page = operator.get(released.location.as_deref().unwrap()).await;
        assert!(page.body.contains("payouts are released") && page.body.contains("Hold payouts"), "{}", page.body);
        let adjustment = [
            ("csrf", csrf.as_str()),
            ("key", key.as_str()),
            ("currency", "eur"),
            ("amount", "-2.50"),
            ("reason", "chargeback fee"),
            ("confirm", "yes"),
        ];
        for _ in 0..2 {
            operator.post(&format!("{partner_page}/adjustments"), &adjustment).await;
        }
        let (_, balance) = env.get("/v1/publishers/nexus-labs/payouts/next", &env.operator).await;
        assert_eq!(balance, json!([]), "the balance is negative after the payout and the refund: nothing owed");
        let (_, audit) = env.get("/v1/audit?action=partner.adjusted", &env.operator).await;
        assert_eq!(audit["total"], 1, "one adjustment for a page sent twice: {audit}");
        let (_, statement) = env.get("/v1/publishers/nexus-labs/statements/2026-11?currency=EUR", &env.operator).await;
        assert_eq!(statement[0]["adjustments_minor"], -250, "the balance moved by -2.50 once: {statement}");

        // A currency's minimum from the dashboard.
        let page = operator.get("/console/operator").await;
        let csrf = field(&page, "csrf");
        let set = operator
            .post(
                "/console/operator/minimums",
                &[("csrf", &csrf), ("currency", "JPY"), ("amount", "3000"), ("confirm", "yes")],
            )
            .await;
        let page = operator.get(set.location.as_deref().unwrap()).await;
        assert!(page.body.contains("The minimum payout in JPY is 3000 JPY."), "{}", page.body);
        // A revenue-share policy typed as people write tiers.
        let policy = |tiers: &'static str| {
            [("csrf", csrf.clone()), ("publisher", "acme".into()), ("tiers", tiers.into()), ("confirm", "yes".into())]
        };
        let bad = policy("lots up to 50");
        let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sent = operator.post("/console/operator/policies", &bad).await;
        let page = operator.get(sent.location.as_deref().unwrap()).await;
        assert!(
            page.body.contains("Not done: tier line 1: `lots up to 50` does not start with a rate"),
            "{}",
            page.body
        );
        let good = policy("0% up to 50\n20% above");
        let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sent = operator.post("/console/operator/policies", &good).await;
        let page = operator.get(sent.location.as_deref().unwrap()).await;
        assert!(
            page.body
                .contains("set: 0.00% fee on the first 50 of lifetime gross in each currency; 20.00% fee above 50."),
            "{}",
            page.body
        );
        let (_, policies) = env.get("/v1/revenue-share/policies", &env.operator).await;
        let acme = policies.as_array().unwrap().iter().find(|p| p["publisher"] == "acme").unwrap();
        assert_eq!(acme["tiers"], json!([{ "up_to": 50, "rate_bp": 0 }, { "up_to": null, "rate_bp": 2000 }]));

        // A tenant posting an operator's form is refused as the API refuses it.
        let fields = [
            ("csrf", Browser::csrf_of(&bill)),
            ("currency", "EUR".into()),
            ("amount", "1".into()),
            ("confirm", "yes".into()),
        ];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let forged = tenant.post("/console/operator/minimums", &fields).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
        let forged = tenant.post(&format!("{receipt_of}/refund"), &fields).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    });
}

#[test]
fn reviews_are_written_replied_to_hidden_and_marked_from_the_listing_page() {
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let listing = "/console/catalog/nexus-labs/echo";
        let mut stranger = Browser::new(env);
        stranger.sign_in(&world.initech).await;
        let page = stranger.get(listing).await;
        assert!(page.body.contains("initech has never installed nexus-labs/echo"), "{}", page.body);
        assert!(!page.body.contains("Publish your review"));

        // globex has run echo once; a day on it may review it.
        let mut tenant = Browser::new(env);
        tenant.sign_in(&world.globex).await;
        assert!(tenant.get(listing).await.body.contains("reviews open a day after installing"));
        sqlx::query("UPDATE installs SET created_at = created_at - 172800000 WHERE tenant_id = 'globex'")
            .execute(env.market.db.writer())
            .await
            .unwrap();
        let page = tenant.get(listing).await;
        assert!(page.body.contains("Publish your review"), "{}", page.body);
        let csrf = Browser::csrf_of(&page);
        let form = format!("{listing}/review");
        let title = "<b>Fast</b> & solid";
        let refused = tenant.post(&form, &[("csrf", &csrf), ("rating", "6"), ("title", title), ("body", "")]).await;
        assert_eq!(refused.status, StatusCode::OK);
        assert!(refused.body.contains("`rating` must be 1 to 5 stars, got 6"), "{}", refused.body);
        assert!(refused.body.contains(&escaped(title)), "what was typed stays: {}", refused.body);
        let body = "Line one\nLine two <script>alert(1)</script>";
        let done = tenant.post(&form, &[("csrf", &csrf), ("rating", "4"), ("title", title), ("body", body)]).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        let page = tenant.get(done.location.as_deref().unwrap()).await;
        assert!(page.body.contains("Thank you: your review is published."), "{}", page.body);
        assert!(page.body.contains(&escaped(title)) && !page.body.contains("<script>alert"), "{}", page.body);
        assert!(page.body.contains("4.0 out of 5") && page.body.contains("Update your review"), "{}", page.body);
        let (_, reviews) = env.call("GET", "/v1/catalog/nexus-labs/echo/reviews", None, None).await;
        assert_eq!((reviews["total"].as_u64(), reviews["items"][0]["body"].as_str()), (Some(1), Some(body)));
        let id = reviews["items"][0]["id"].as_str().unwrap().to_string();

        // The publisher replies; initech marks it helpful (twice, counted once).
        let mut partner = Browser::new(env);
        partner.sign_in(&env.publisher).await;
        let page = partner.get(listing).await;
        assert!(page.body.contains("Edit this listing's text") && page.body.contains(">Reply<"), "{}", page.body);
        let csrf = Browser::csrf_of(&page);
        let replied = partner
            .post(&format!("/console/reviews/{id}/reply"), &[("csrf", &csrf), ("text", "Thanks, globex!")])
            .await;
        assert_eq!(replied.status, StatusCode::SEE_OTHER, "{}", replied.body);
        let page = stranger.get(listing).await;
        assert!(page.body.contains("Reply from nexus-labs") && page.body.contains("Thanks, globex!"), "{}", page.body);
        let csrf = Browser::csrf_of(&page);
        for _ in 0..2 {
            let marked = stranger.post(&format!("/console/reviews/{id}/helpful"), &[("csrf", &csrf)]).await;
            assert_eq!(marked.status, StatusCode::SEE_OTHER, "{}", marked.body);
        }
        assert!(stranger.get(listing).await.body.contains("1 found it helpful"));
        // Its own organization cannot mark it, and is not offered to.
        assert!(!tenant.get(listing).await.body.contains(&format!("/console/reviews/{id}/helpful")));

        // An operator hides it with a reason: gone for everyone but its authors, who see why.
        let mut operator = Browser::new(env);
        operator.sign_in(&env.operator).await;
        let csrf = Browser::csrf_of(&operator.get(listing).await);
        let hidden = operator
            .post(&format!("/console/reviews/{id}/hide"), &[("csrf", &csrf), ("text", "Shares a customer's name")])
            .await;
        assert_eq!(hidden.status, StatusCode::SEE_OTHER, "{}", hidden.body);
        let page = stranger.get(listing).await;
        assert!(!page.body.contains(&escaped(title)) && page.body.contains("No reviews yet."), "{}", page.body);
        let page = tenant.get(listing).await;
        assert!(
            page.body.contains("An operator hid this review") && page.body.contains("Shares a customer&#39;s name"),
            "{}",
            page.body
        );

        // The publisher edits the listing's text; Markdown renders, script does not run.
        let csrf = Browser::csrf_of(&partner.get(listing).await);
        let text = [
            ("csrf", csrf.as_str()),
            ("summary", "Echo, now with prefixes"),
            ("description", "Echoes **every** event. <script>alert(2)</script>"),
            ("documentation", "https://docs.nexus-labs.example/echo"),
            ("support", "mailto:help@nexus-labs.example"),
        ];
        let saved = partner.post(&format!("{listing}/text"), &text).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let page = stranger.get(listing).await;
        assert!(page.body.contains("Echoes <strong>every</strong> event. &lt;script&gt;"), "{}", page.body);
        assert!(
            page.body
                .contains("href=\"mailto:help@nexus-labs.example\" rel=\"nofollow noopener noreferrer\">Support</a>"),
            "{}",
            page.body
        );
        let refused =
            partner.post(&format!("{listing}/text"), &[("csrf", &csrf), ("summary", ""), ("description", "")]).await;
        assert!(refused.body.contains("manifest field summary is invalid: must not be empty"), "{}", refused.body);

        // The profile: the publisher edits it; a tenant may not.
        let profile = "/console/publishers/nexus-labs";
        let page = partner.get(profile).await;
        assert!(page.body.contains("Edit the profile"), "{}", page.body);
        let csrf = Browser::csrf_of(&page);
        let fields =
            [("csrf", csrf.as_str()), ("website", "https://nexus-labs.example"), ("about", "We make *integrations*.")];
        let saved = partner.post(profile, &fields).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
        let page = stranger.get(profile).await;
        assert!(
            page.body.contains("<em>integrations</em>") && !page.body.contains("Edit the profile"),
            "{}",
            page.body
        );
        let csrf = Browser::csrf_of(&page);
        let refused = stranger.post(profile, &[("csrf", &csrf), ("about", "pwned")]).await;
        assert_eq!(refused.status, StatusCode::OK, "a refusal on the page: {}", refused.body);
        assert!(refused.body.contains("this needs a publisher or operator token"), "{}", refused.body);
    });
}
