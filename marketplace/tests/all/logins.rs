//! People's API tokens (issue #24): `POST /v1/login` exchanges a person's sign-in (and
//! second factor) for a token of one of their organizations in their role; the token names
//! the person, the audit log names the person behind every token, and the token ends with
//! the membership, a role change, sign-out everywhere or `POST /v1/logout`. Operators are
//! people who must sign in with two steps, and may require two steps of everyone. A partner
//! publishes only under the current partner agreement. On both backends.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nexus_marketplace::billing::{BillingConfig, Clock, ManualClock, SandboxProvider};
use nexus_marketplace::ids::PersonId;
use nexus_marketplace::organizations::{self, Org};
use nexus_marketplace::people::{self, Role};
use serde_json::{Value, json};

use super::common::{BOUNDARY, Env, Options, form, manifest_of, on_both};
use super::console::Browser;

const PASSWORD: &str = "plum-orbit-lantern-42";

async fn count(env: &Env, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.market.db.pool).await.unwrap()
}

async fn log_in(env: &Env, body: Value) -> (StatusCode, Value) {
    env.call("POST", "/v1/login", None, Some(&body.to_string())).await
}

/// A confirmed person in `org` as `role`; their id.
async fn member(env: &Env, email: &str, org: (&str, &str), role: Role) -> PersonId {
    people::add_confirmed_member(&env.market, email, "Someone", PASSWORD, org, role).await.unwrap()
}

#[test]
fn a_person_logs_in_for_a_token_of_their_role_that_ends_with_their_membership() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        env.tenant("ada-shop").await;
        let ada = member(&env, "ada@example.com", ("tenant", "ada-shop"), Role::Owner).await;
        let bo = member(&env, "bo@example.com", ("tenant", "ada-shop"), Role::Viewer).await;

        // One answer for a wrong password and an unknown address; nothing issued.
        for email in ["ada@example.com", "nobody@example.com"] {
            let (status, refused) = log_in(&env, json!({ "email": email, "password": "wrong-password-123" })).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
            assert_eq!(refused["error"]["code"], "sign_in_failed");
            assert_eq!(refused["error"]["message"], "the email address or the password is wrong");
        }
        let (status, refused) =
            log_in(&env, json!({ "email": "ada@example.com", "password": PASSWORD, "organization": "tenant:globex" }))
                .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("(yours: tenant:ada-shop)"), "{refused}");
        assert_eq!(count(&env, "SELECT COUNT(*) FROM account_tokens WHERE person_id IS NOT NULL").await, 0);

        let (status, owner) =
            log_in(&env, json!({ "email": "ADA@example.com ", "password": PASSWORD, "label": "laptop" })).await;
        assert_eq!(status, StatusCode::CREATED, "{owner}");
        assert_eq!(
            (&owner["organization"], &owner["role"], &owner["email"], &owner["scopes"]),
            (
                &json!("tenant:ada-shop"),
                &json!("owner"),
                &json!("ada@example.com"),
                &json!(["installs", "events", "read", "tokens"])
            )
        );
        let token = owner["secret"].as_str().unwrap().to_string();
        assert!(token.starts_with("nxt_"), "{token}");
        let (_, me) = env.get("/v1/whoami", &token).await;
        assert_eq!((&me["tenant"], &me["person"]), (&json!("ada-shop"), &json!("ada@example.com")), "{me}");
        assert_eq!(me["created_by"], format!("person:{ada}"));

        // What the token does is audited with the person behind it; a token it makes names
        // it as its creator.
        let (status, ci) =
            env.post("/v1/tenants/ada-shop/tokens", &token, json!({ "scopes": ["read"], "label": "ci" })).await;
        assert_eq!(status, StatusCode::CREATED, "{ci}");
        let (_, ci_me) = env.get("/v1/whoami", ci["secret"].as_str().unwrap()).await;
        assert_eq!(ci_me["created_by"], format!("tenant:ada-shop:{}", owner["token_id"].as_str().unwrap()));
        assert_eq!(ci_me.get("person"), None, "a machine's token: {ci_me}");
        let (_, audit) = env.get("/v1/audit?action=token.issued&actor=tenant:ada-shop", &env.operator).await;
        let entry = &audit["items"][0];
        assert_eq!(
            (&entry["person"], &entry["token_created_by"]),
            (&json!("ada@example.com"), &json!(format!("person:{ada}")))
        );
        let (_, logins) = env.get("/v1/audit?action=person.logged_in", &env.operator).await;
        assert_eq!(logins["total"], 1);
        assert_eq!(logins["items"][0]["person"], "ada@example.com");

        // A viewer's token reads only; five logins at once (the limit of attempts in flight per
        // address) get five tokens.
        let logging_in = (0..5).map(|_| log_in(&env, json!({ "email": "bo@example.com", "password": PASSWORD })));
        let answers = futures_util::future::join_all(logging_in).await;
        let mut bo_tokens: Vec<String> = answers
            .iter()
            .map(|(status, body)| {
                assert_eq!(*status, StatusCode::CREATED, "{body}");
                assert_eq!(body["scopes"], json!(["read"]));
                body["secret"].as_str().unwrap().to_string()
            })
            .collect();
        bo_tokens.sort();
        bo_tokens.dedup();
        assert_eq!(bo_tokens.len(), 5);
        let event = json!({ "type": "order.created", "payload": {} });
        let (status, refused) = env.post("/v1/events", &bo_tokens[0], event).await;
        assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("missing_scope")));

        // A role change ends every token the person signed in for there.
        let org = Org { kind: "tenant", id: "ada-shop" };
        organizations::change_role(&env.market, org, &ada, &bo, "developer").await.unwrap();
        for token in &bo_tokens {
            let (status, refused) = env.get("/v1/whoami", token).await;
            assert_eq!((status, &refused["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("token_revoked")));
        }
        let (status, developer) = log_in(&env, json!({ "email": "bo@example.com", "password": PASSWORD })).await;
        assert_eq!((status, &developer["scopes"]), (StatusCode::CREATED, &json!(["installs", "events", "read"])));
        // So does leaving.
        organizations::remove(&env.market, org, &bo, &bo).await.unwrap();
        let (status, _) = env.get("/v1/whoami", developer["secret"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let revoked =
            format!("SELECT COUNT(*) FROM account_tokens WHERE person_id = '{bo}' AND revoked_at IS NOT NULL");
        assert_eq!(count(&env, &revoked).await, 6);

        // Logging out ends the calling token once; signing out everywhere ends the rest.
        let (status, _) = env.call("POST", "/v1/logout", Some(&token), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, again) = env.call("POST", "/v1/logout", Some(&token), None).await;
        assert_eq!((status, &again["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("token_revoked")));
        let (_, second) = log_in(&env, json!({ "email": "ada@example.com", "password": PASSWORD })).await;
        people::sign_out_everywhere(&env.market, &ada).await.unwrap();
        let (status, _) = env.get("/v1/whoami", second["secret"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // The machine's token Ada's token made stays: it is the organization's, not hers.
        let (status, _) = env.get("/v1/whoami", ci["secret"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);

        // No secret or password is kept in the audit log.
        let text: Vec<String> =
            sqlx::query_scalar("SELECT detail FROM audit_log").fetch_all(&env.market.db.pool).await.unwrap();
        let text = text.join("\n");
        for secret in [token.as_str(), PASSWORD].into_iter().chain(bo_tokens.iter().map(String::as_str)) {
            assert!(!text.contains(secret));
        }
    })
}

/// The code an authenticator app shows for `secret` (base32) at `ms`.
fn code_at(secret: &str, ms: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "x@example.com".into()).unwrap();
    totp.generate((ms / 1000) as u64)
}

async fn console_sign_in<'a>(env: &'a Env, email: &str) -> (Browser<'a>, super::console::Answer) {
    let mut browser = Browser::new(env);
    let form = browser.get("/console/sign-in").await;
    let csrf = Browser::csrf_of(&form);
    let answer =
        browser.post("/console/sign-in", &[("csrf", csrf.as_str()), ("email", email), ("password", PASSWORD)]).await;
    (browser, answer)
}

#[test]
fn operators_sign_in_with_two_steps_and_may_require_them_of_everyone() {
    on_both(|postgres| async move {
        let start = nexus_registry::db::now_ms() / 30_000 * 30_000;
        let clock = Arc::new(ManualClock::at(start));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let env = Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await;
        let grace = member(&env, "grace@example.com", ("operator", "marketplace"), Role::Owner).await;
        env.tenant("ada-shop").await;
        member(&env, "ada@example.com", ("tenant", "ada-shop"), Role::Owner).await;

        // Without a second factor an operator gets no token, and the console is only its
        // Security page until one is set up.
        let (status, refused) = log_in(&env, json!({ "email": "grace@example.com", "password": PASSWORD })).await;
        assert_eq!((status, &refused["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("second_factor_required")));
        let (mut console, signed) = console_sign_in(&env, "grace@example.com").await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
        let held = console.get("/console/operator").await;
        assert_eq!(held.location.as_deref(), Some("/console/security?required=1"));
        let security = console.get("/console/security?required=1").await;
        assert!(security.body.contains("Your account must sign in with two steps (every operator does)"));
        let csrf = Browser::csrf_of(&security);
        let started = console.post("/console/security/start", &[("csrf", &csrf)]).await;
        let marker = "id=\"totp-secret\">";
        let at = started.body.find(marker).unwrap() + marker.len();
        let secret: String = started.body[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let confirmed = console
            .post("/console/security/confirm", &[("csrf", &csrf), ("code", &code_at(&secret, clock.now_ms()))])
            .await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
        assert!(confirmed.body.contains("Keep these recovery codes"), "{}", confirmed.body);
        let page = console.get("/console/security").await;
        assert!(page.body.contains("It stays on: operators"), "{}", page.body);
        assert_eq!(console.get("/console/operator").await.status, StatusCode::OK);
        clock.advance(30_000);
        let code = code_at(&secret, clock.now_ms());
        let kept = console.post("/console/security/disable", &[("csrf", &csrf), ("code", &code)]).await;
        assert_eq!(kept.status, StatusCode::FORBIDDEN, "{}", kept.body);

        // The token needs the code: missing, wrong, then right.
        let body = |code: Option<&str>| json!({ "email": "grace@example.com", "password": PASSWORD, "code": code });
        let (status, missing) = log_in(&env, body(None)).await;
        assert_eq!((status, &missing["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("second_factor_required")));
        let (status, wrong) = log_in(&env, body(Some("000000"))).await;
        assert_eq!((status, &wrong["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("sign_in_failed")));
        let (status, operator) = log_in(&env, body(Some(&code))).await;
        assert_eq!((status, &operator["organization"]), (StatusCode::CREATED, &json!("operator")), "{operator}");
        let token = operator["secret"].as_str().unwrap();
        assert!(token.starts_with("nxo_"));
        let (_, me) = env.get("/v1/whoami", token).await;
        assert_eq!((&me["role"], &me["person"]), (&json!("operator"), &json!("grace@example.com")));
        let (status, _) = env.get("/v1/tenants", token).await;
        assert_eq!(status, StatusCode::OK);
        // The same code does not work twice.
        let (status, _) = log_in(&env, body(Some(&code))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // The operators have owners and admins only.
        let operators = Org { kind: "operator", id: "marketplace" };
        let narrower =
            organizations::invite(&env.market, "http://nexus.test", operators, &grace, "x@example.com", "viewer");
        assert_eq!(narrower.await.unwrap_err().code().as_str(), "invalid_request");

        // Required of everyone: Ada (no second factor) gets no token and must set one up.
        let page = console.get("/console/security").await;
        assert!(page.body.contains("Require two steps of everyone"), "{}", page.body);
        let csrf = Browser::csrf_of(&page);
        let on = console.post("/console/security/everyone", &[("csrf", &csrf), ("value", "on")]).await;
        assert!(on.body.contains("Stop requiring two steps of everyone"), "{}", on.body);
        let ada = json!({ "email": "ada@example.com", "password": PASSWORD });
        let (status, refused) = log_in(&env, ada.clone()).await;
        assert_eq!((status, &refused["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("second_factor_required")));
        let (mut ada_console, _) = console_sign_in(&env, "ada@example.com").await;
        let held = ada_console.get("/console/installs").await;
        assert_eq!(held.location.as_deref(), Some("/console/security?required=1"));
        // A tenant cannot change the setting.
        let page = ada_console.get("/console/security").await;
        assert!(!page.body.contains("of everyone</button>"), "{}", page.body);
        let csrf_ada = Browser::csrf_of(&page);
        let refused = ada_console.post("/console/security/everyone", &[("csrf", &csrf_ada), ("value", "off")]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        let off = console.post("/console/security/everyone", &[("csrf", &csrf), ("value", "off")]).await;
        assert!(off.body.contains("Require two steps of everyone"), "{}", off.body);
        let (status, _) = log_in(&env, ada).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(ada_console.get("/console/installs").await.status, StatusCode::OK);
        let changed = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action = 'setting.changed'").await;
        assert_eq!(changed, 2);
    })
}

#[test]
fn a_partner_publishes_only_under_the_current_agreement() {
    use nexus_marketplace::partner_program::{self, AGREEMENT_VERSION, Application, Decision};
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        env.tenant("ada-shop").await;
        let ada = member(&env, "ada@example.com", ("tenant", "ada-shop"), Role::Owner).await;
        let dev = member(&env, "dev@example.com", ("tenant", "ada-shop"), Role::Owner).await;
        let application = Application {
            company: "Ada Tools".into(),
            namespace: "ada-tools".into(),
            website: "https://ada-tools.example".into(),
            support_email: "help@ada-tools.example".into(),
            agreement_version: AGREEMENT_VERSION.into(),
        };
        let applied = partner_program::apply(&env.market, &ada, application).await.unwrap();
        let operator = nexus_marketplace::accounts::authenticate(&env.market.db, &env.market.registry, &env.operator)
            .await
            .unwrap();
        partner_program::decide(&env.market, &operator, &applied.id, Decision::Approve).await.unwrap();
        // A developer of the new publisher, and the token each signs in for.
        sqlx::query("INSERT INTO memberships (person_id, org_kind, org_id, role, created_at) VALUES ($1, 'publisher', 'ada-tools', 'developer', 0)")
            .bind(&dev)
            .execute(env.market.db.writer())
            .await
            .unwrap();
        let login =
            |email: &str| json!({ "email": email, "password": PASSWORD, "organization": "publisher:ada-tools" });
        let (status, owner) = log_in(&env, login("ada@example.com")).await;
        assert_eq!((status, &owner["scopes"]), (StatusCode::CREATED, &json!(["publish", "yank", "keys"])), "{owner}");
        let (_, developer) = log_in(&env, login("dev@example.com")).await;
        let developer = developer["secret"].as_str().unwrap().to_string();

        let manifest = manifest_of("echo").replacen("id = \"nexus-labs/echo\"", "id = \"ada-tools/ada-echo\"", 1);
        let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
        let publish = |version: &str| {
            let manifest = manifest.replacen("version = \"0.1.0\"", &format!("version = \"{version}\""), 1);
            let body = form(&[("manifest", manifest.as_bytes()), ("component", &component)]);
            Request::post("/v1/publish")
                .header(header::AUTHORIZATION, format!("Bearer {developer}"))
                .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
                .body(Body::from(body))
                .unwrap()
        };
        let (status, _, body) = env.raw(publish("0.1.0")).await;
        assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));

        // The agreement moves on (as if ada-tools had accepted only an older one).
        sqlx::query("UPDATE partner_agreements SET version = '2026-06' WHERE publisher = 'ada-tools'")
            .execute(env.market.db.writer())
            .await
            .unwrap();
        let (status, _, body) = env.raw(publish("0.2.0")).await;
        let refused: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("agreement_not_accepted")));
        assert!(refused["error"]["message"].as_str().unwrap().contains("Partner program"), "{refused}");
        let versions = "SELECT COUNT(*) FROM plugin_versions WHERE plugin_id = 'ada-tools/ada-echo'";
        assert_eq!(count(&env, versions).await, 1, "nothing written");
        // nexus-labs, created by an operator, has no agreement on record and is not held.
        env.publish_sample("echo", nexus_sample_plugins::ECHO, manifest_of("echo"), "0.3.0").await;

        // The developer may not accept it; the owner does, in the console, once.
        let refused = partner_program::accept_agreement(&env.market, &dev, "ada-tools", AGREEMENT_VERSION).await;
        assert_eq!(refused.unwrap_err().code().as_str(), "forbidden");
        let mut console = Browser::new(&env);
        let page = console.get("/console/sign-in").await;
        let csrf = Browser::csrf_of(&page);
        console
            .post("/console/sign-in", &[("csrf", csrf.as_str()), ("email", "ada@example.com"), ("password", PASSWORD)])
            .await;
        let page = console.get("/console/partner-program").await;
        assert!(page.body.contains("ada-tools publishes again once you accept version"), "{}", page.body);
        let csrf = Browser::csrf_of(&page);
        let stale = [("csrf", csrf.as_str()), ("publisher", "ada-tools"), ("agreement_version", "2026-06")];
        assert_eq!(console.post("/console/partner-program/agreement", &stale).await.status, StatusCode::FORBIDDEN);
        let accept = [("csrf", csrf.as_str()), ("publisher", "ada-tools"), ("agreement_version", AGREEMENT_VERSION)];
        let accepted = console.post("/console/partner-program/agreement", &accept).await;
        assert_eq!(accepted.location.as_deref(), Some("/console/partner-program?accepted=ada-tools"));
        let page = console.get("/console/partner-program?accepted=ada-tools").await;
        assert!(!page.body.contains("publishes again once you accept"), "{}", page.body);
        let (status, _, body) = env.raw(publish("0.2.0")).await;
        assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
        let accepted = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action = 'partner.agreement_accepted'").await;
        assert_eq!(accepted, 1);

        // Another new version, and the owner accepts from four places at once: one record, one entry.
        sqlx::query("DELETE FROM partner_agreements WHERE publisher = 'ada-tools' AND version = $1")
            .bind(AGREEMENT_VERSION)
            .execute(env.market.db.writer())
            .await
            .unwrap();
        let accepting =
            (0..4).map(|_| partner_program::accept_agreement(&env.market, &ada, "ada-tools", AGREEMENT_VERSION));
        for outcome in futures_util::future::join_all(accepting).await {
            outcome.unwrap();
        }
        let current = format!(
            "SELECT COUNT(*) FROM partner_agreements WHERE publisher = 'ada-tools' AND version = '{AGREEMENT_VERSION}'"
        );
        assert_eq!(count(&env, &current).await, 1);
        let accepted = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action = 'partner.agreement_accepted'").await;
        assert_eq!(accepted, 2);
    })
}

/// A site on loopback serving `body` at the well-known path (404 while it is empty).
pub(super) async fn site(body: Arc<std::sync::Mutex<String>>) -> String {
    let app = axum::Router::new().route(
        "/.well-known/nexus-verification.txt",
        axum::routing::get(move || {
            let body = body.lock().unwrap().clone();
            async move { if body.is_empty() { (StatusCode::NOT_FOUND, body) } else { (StatusCode::OK, body) } }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address.to_string()
}

#[test]
fn a_publisher_verifies_its_domain_and_loses_the_badge_with_it() {
    on_both(|postgres| async move {
        let options = Options { host: Some(super::webhooks::loopback_host()), ..Options::default() };
        let env = Env::with(postgres, options).await;
        let served = Arc::new(std::sync::Mutex::new(String::new()));
        let domain = site(served.clone()).await;
        let path = "/v1/publishers/nexus-labs/domain";
        let claim = |domain: &str| json!({ "domain": domain }).to_string();

        // Not a domain, or one the operator's outbound policy keeps out: refused, nothing kept.
        for bad in [
            "not a domain",
            "localhost",
            "printer.local",
            "example.com/x",
            "https://example.com",
            "10.0.0.1",
            "8.8.8.8",
        ] {
            let (status, refused) = env.call("PUT", path, Some(&env.publisher), Some(&claim(bad))).await;
            assert_eq!(
                (status, &refused["error"]["code"]),
                (StatusCode::BAD_REQUEST, &json!("invalid_request")),
                "{bad}: {refused}"
            );
        }
        assert_eq!(count(&env, "SELECT COUNT(*) FROM publisher_domains").await, 0);
        let (status, _) = env.get(path, &env.publisher).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let ghost =
            env.call("PUT", "/v1/publishers/ghost/domain", Some(&env.operator), Some(&claim("ghost.example"))).await;
        assert_eq!(ghost.0, StatusCode::NOT_FOUND, "an operator claims only for a publisher that exists");
        assert_eq!(count(&env, "SELECT COUNT(*) FROM publisher_domains").await, 0);

        let (status, claimed) = env.call("PUT", path, Some(&env.publisher), Some(&claim(&domain))).await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        assert_eq!(claimed["url"], format!("http://{domain}/.well-known/nexus-verification.txt"));
        assert_eq!(claimed["verified"], false);
        let token = claimed["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("nexus-verification="), "{token}");

        // Not served yet: the check says why, and there is no badge.
        let (status, checked) = env.post(&format!("{path}/check"), &env.publisher, json!({})).await;
        assert_eq!((status, &checked["verified"]), (StatusCode::OK, &json!(false)), "{checked}");
        assert!(checked["last_error"].as_str().unwrap().ends_with("answered 404 Not Found"), "{checked}");

        // Served: four checks at once verify it once.
        *served.lock().unwrap() = format!("# Nexus\n{token}\n");
        let check_path = format!("{path}/check");
        let checks = (0..4).map(|_| env.post(&check_path, &env.publisher, json!({})));
        for (status, checked) in futures_util::future::join_all(checks).await {
            assert_eq!((status, &checked["verified"]), (StatusCode::OK, &json!(true)), "{checked}");
        }
        let verified = "SELECT COUNT(*) FROM audit_log WHERE action = 'publisher.domain_verified'";
        assert_eq!(count(&env, verified).await, 1);
        let (_, catalog) = env.get("/v1/catalog?q=echo", &env.publisher).await;
        assert_eq!(catalog["items"][0]["verified_domain"], domain, "{catalog}");
        let mut browser = Browser::new(&env);
        let page = browser.get("/console/catalog/nexus-labs/echo").await;
        assert!(page.body.contains(&format!("✓ verified {domain}")), "{}", page.body);

        // Only the publisher's managers (and operators) see or check it.
        let (status, _) = env.get(path, &env.tenant("globex").await).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, ci) = env
            .post("/v1/publishers/nexus-labs/tokens", &env.publisher, json!({ "scopes": ["publish"], "label": "ci" }))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, refused) = env.get(path, ci["secret"].as_str().unwrap()).await;
        assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("missing_scope")));

        // The file goes away: the next check (an operator's) takes the badge.
        served.lock().unwrap().clear();
        let (_, checked) = env.post(&format!("{path}/check"), &env.operator, json!({})).await;
        assert_eq!(checked["verified"], false, "{checked}");
        let (_, catalog) = env.get("/v1/catalog?q=echo", &env.publisher).await;
        assert_eq!(catalog["items"][0].get("verified_domain"), None, "{catalog}");
        let unverified = "SELECT COUNT(*) FROM audit_log WHERE action = 'publisher.domain_unverified'";
        assert_eq!(count(&env, unverified).await, 2, "the first failed check and the lost badge");

        // The partner's page shows where it stands and claims another through its form.
        let mut partner = Browser::new(&env);
        partner.sign_in(&env.publisher).await;
        let page = partner.get("/console/partners/nexus-labs").await;
        assert!(page.body.contains(&format!("{domain} is not verified yet")), "{}", page.body);
        assert!(page.body.contains("The last check failed"), "{}", page.body);
        let csrf = Browser::csrf_of(&page);
        let other = format!("127.0.0.2:{}", domain.rsplit(':').next().unwrap());
        let claimed = partner.post("/console/partners/nexus-labs/domain", &[("csrf", &csrf), ("domain", &other)]).await;
        assert_eq!(claimed.location.as_deref(), Some("/console/partners/nexus-labs#domain"));
        let (_, now) = env.get(path, &env.publisher).await;
        assert_eq!(
            (&now["domain"], &now["verified"], &now["last_error"]),
            (&json!(other), &json!(false), &Value::Null)
        );
        assert_ne!(now["token"], json!(token), "a new claim, a new token");
    })
}

#[test]
fn partner_tiers_follow_twelve_months_of_gross_once_a_day_or_an_operators_hand() {
    on_both(|postgres| async move {
        let clock = Arc::new(ManualClock::at(nexus_registry::db::now_ms()));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let env = Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await;
        member(&env, "lin@example.com", ("publisher", "nexus-labs"), Role::Owner).await;
        let (status, acme) =
            env.post("/v1/publishers", &env.operator, json!({ "id": "acme", "display_name": "Acme" })).await;
        assert_eq!(status, StatusCode::CREATED);
        let acme = acme["secret"].as_str().unwrap().to_string();

        // Tiers: refused with what is wrong; then Registered, Select (40.00 EUR, its own
        // share) and Premier (by hand only).
        let env = &env;
        let put = |key: &str, body: Value| {
            let uri = format!("/v1/partner-tiers/{key}");
            async move { env.call("PUT", &uri, Some(&env.operator), Some(&body.to_string())).await }
        };
        for (key, body, status, code) in [
            ("Select", json!({ "name": "Select", "rank": 2 }), StatusCode::BAD_REQUEST, "invalid_id"),
            ("select", json!({ "name": "", "rank": 2 }), StatusCode::BAD_REQUEST, "invalid_request"),
            (
                "select",
                json!({ "name": "Select", "rank": 2, "thresholds": { "XXX": 1 } }),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                "select",
                json!({ "name": "Select", "rank": 2, "thresholds": { "EUR": 0 } }),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                "select",
                json!({ "name": "Select", "rank": 2, "share_tiers": [{ "up_to": 10, "rate_bp": 100 }] }),
                StatusCode::BAD_REQUEST,
                "invalid_policy",
            ),
        ] {
            let (answer, refused) = put(key, body).await;
            assert_eq!((answer, refused["error"]["code"].as_str()), (status, Some(code)), "{key}: {refused}");
        }
        let (status, refused) =
            env.call("PUT", "/v1/partner-tiers/select", Some(&env.publisher), Some(r#"{"name":"S","rank":2}"#)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
        assert_eq!(put("registered", json!({ "name": "Registered", "rank": 1 })).await.0, StatusCode::OK);
        let select = json!({ "name": "Select", "rank": 2, "thresholds": { "EUR": 4000 },
                             "share_tiers": [{ "up_to": 1000, "rate_bp": 0 }, { "rate_bp": 1000 }] });
        assert_eq!(put("select", select).await.0, StatusCode::OK);
        let (status, _) =
            put("premier", json!({ "name": "Premier", "rank": 3, "automatic": false, "badge": "Premier ★" })).await;
        assert_eq!(status, StatusCode::OK);
        let (status, clash) = put("gold", json!({ "name": "Gold", "rank": 3 })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{clash}");
        assert!(clash["error"]["message"].as_str().unwrap().contains("rank 3 is the tier premier's"), "{clash}");
        assert_eq!(count(env, "SELECT COUNT(*) FROM partner_tiers").await, 3);
        let (_, tiers) = env.call("GET", "/v1/partner-tiers", None, None).await;
        let keys: Vec<&str> = tiers.as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["premier", "select", "registered"]);

        // nexus-labs sells 49.00 EUR; acme nothing.
        let plan = json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time", "currency": "EUR", "price_minor": 4900 });
        let (status, body) = env.post("/v1/plugins/nexus-labs/chat-notifier/plans", &env.publisher, plan).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let globex = env.tenant("globex").await;
        env.install(
            &globex,
            "nexus-labs/chat-notifier",
            json!({ "plan": "lifetime", "secrets": { "webhook-url": "https://hooks.slack.com/services/T0/B0/test" } }),
        )
        .await;

        // Four nodes check at once: one runs today's slot, which places each partner once.
        let runs = (0..4).map(|_| nexus_marketplace::partner_tiers::run_if_due(&env.market));
        let ran: Vec<_> = futures_util::future::join_all(runs).await.into_iter().map(Result::unwrap).collect();
        let changes: Vec<_> = ran.iter().flatten().collect();
        assert_eq!(changes.len(), 1, "{ran:?}");
        let mut moved: Vec<(String, String)> = changes[0].iter().map(|c| (c.publisher.clone(), c.to.clone())).collect();
        moved.sort();
        assert_eq!(moved, [("acme".to_string(), "registered".to_string()), ("nexus-labs".into(), "select".into())]);
        assert!(nexus_marketplace::partner_tiers::run_if_due(&env.market).await.unwrap().is_none(), "once a day");
        let changed = "SELECT COUNT(*) FROM audit_log WHERE action = 'partner.tier_changed'";
        assert_eq!(count(env, changed).await, 2);
        // Select's share applies to nexus-labs from now on; the partner is mailed.
        let policies = "SELECT COUNT(*) FROM share_policies WHERE publisher = 'nexus-labs'";
        assert_eq!(count(env, policies).await, 1);
        let mails = "SELECT COUNT(*) FROM mail_outbox WHERE kind = 'partner-tier' AND recipient = 'lin@example.com' \
                     AND subject = 'nexus-labs is now a Select partner'";
        assert_eq!(count(env, mails).await, 1);
        let (_, catalog) = env.call("GET", "/v1/catalog?q=chat", None, None).await;
        assert_eq!(catalog["items"][0]["tier_badge"], "Select", "{catalog}");
        let (_, own) = env.get("/v1/publishers/nexus-labs/tier", &env.publisher).await;
        assert_eq!((&own["tier"], &own["manual"]), (&json!("select"), &json!(false)));
        let (status, _) = env.get("/v1/publishers/nexus-labs/tier", &acme).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // By hand: acme is Premier, and a run leaves it there until the operators lift it.
        let (status, refused) =
            env.call("PUT", "/v1/publishers/acme/tier", Some(&env.operator), Some(r#"{"tier":"gold"}"#)).await;
        assert_eq!((status, &refused["error"]["code"]), (StatusCode::NOT_FOUND, &json!("not_found")));
        let (status, premier) =
            env.call("PUT", "/v1/publishers/acme/tier", Some(&env.operator), Some(r#"{"tier":"premier"}"#)).await;
        assert_eq!(
            (status, &premier["badge"], &premier["manual"]),
            (StatusCode::OK, &json!("Premier ★"), &json!(true))
        );
        let (_, none) = env.post("/v1/partner-tiers/recompute", &env.operator, json!({})).await;
        assert_eq!(none, json!([]));
        let (status, _) = env.call("DELETE", "/v1/publishers/acme/tier", Some(&env.operator), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, back) = env.get("/v1/publishers/acme/tier", &acme).await;
        assert_eq!((&back["tier"], &back["manual"]), (&json!("registered"), &json!(false)));

        // A year on, nexus-labs' 49.00 EUR is out of the window: the next day's run moves it down.
        clock.advance(366 * 86_400_000);
        let ran = nexus_marketplace::partner_tiers::run_if_due(&env.market).await.unwrap().unwrap();
        assert_eq!(ran.len(), 1);
        assert_eq!(
            (ran[0].publisher.as_str(), ran[0].from.as_deref(), ran[0].to.as_str()),
            ("nexus-labs", Some("select"), "registered")
        );
    })
}

#[test]
fn members_make_and_revoke_the_organizations_tokens_in_the_console() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        env.tenant("ada-shop").await;
        let ada = member(&env, "ada@example.com", ("tenant", "ada-shop"), Role::Owner).await;
        member(&env, "vi@example.com", ("tenant", "ada-shop"), Role::Viewer).await;
        member(&env, "dev@example.com", ("publisher", "nexus-labs"), Role::Developer).await;

        let (mut console, _) = console_sign_in(&env, "ada@example.com").await;
        let page = console.get("/console/organization/tokens").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("<td>initial</td>"), "the tenant's first token: {}", page.body);
        let csrf = Browser::csrf_of(&page);
        for (fields, problem) in [
            (vec![("label", "ci"), ("expires_in_days", "0")], "expires_in_days must be at least 1"),
            (vec![("label", "ci")], "at least one scope"),
            (vec![("label", "ci"), ("scope", "admin")], "`admin` is not a scope you hold"),
        ] {
            let mut form = vec![("csrf", csrf.as_str())];
            form.extend(fields);
            let refused = console.post("/console/organization/tokens", &form).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{problem}: {}", refused.body);
            assert!(refused.body.contains(problem), "{problem} not in {}", refused.body);
        }
        let form = [
            ("csrf", csrf.as_str()),
            ("label", "ci"),
            ("scope", "read"),
            ("scope", "events"),
            ("expires_in_days", "30"),
        ];
        let made = console.post("/console/organization/tokens", &form).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        let marker = "<code id=\"new-token\">";
        let at = made.body.find(marker).unwrap() + marker.len();
        let secret: String = made.body[at..].chars().take_while(|c| *c != '<').collect();
        assert!(secret.starts_with("nxt_"), "{secret}");
        let (_, me) = env.get("/v1/whoami", &secret).await;
        assert_eq!(
            (&me["scopes"], &me["created_by"]),
            (&json!(["events", "read"]), &json!(format!("tenant:ada-shop:{ada}")))
        );
        let (_, audit) = env.get("/v1/audit?action=token.issued&actor=tenant:ada-shop", &env.operator).await;
        assert_eq!(audit["items"][0]["person"], "ada@example.com", "{audit}");
        // The list names the maker; the secret is not shown again.
        let page = console.get("/console/organization/tokens").await;
        assert!(page.body.contains(&format!("tenant:ada-shop:{ada}")) && !page.body.contains(&secret), "{}", page.body);

        // Revoked from the console, it stops working.
        let id = me["token_id"].as_str().unwrap();
        let revoked = console.post(&format!("/console/organization/tokens/{id}/revoke"), &[("csrf", &csrf)]).await;
        assert_eq!(revoked.location.as_deref(), Some("/console/organization/tokens"));
        let (status, _) = env.get("/v1/whoami", &secret).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let again = console.post(&format!("/console/organization/tokens/{id}/revoke"), &[("csrf", &csrf)]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);

        // A viewer and a publisher's developer may not manage tokens.
        for email in ["vi@example.com", "dev@example.com"] {
            // (The developer's only organization is nexus-labs, which the session acts as.)
            let (mut browser, _) = console_sign_in(&env, email).await;
            let page = browser.get("/console/organization/tokens").await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{email}: {}", page.body);
            assert!(page.body.contains("missing_scope"), "{email}: {}", page.body);
        }
    })
}
