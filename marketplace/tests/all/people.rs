//! People (issue #24): sign up with an organization, confirm the address from the mailed
//! link, sign in with a password, be limited after failures, reset the password by mail,
//! sign out everywhere; through the console's forms as a browser sends them, on both
//! backends. Mail is read where it really goes: `.eml` files in the outbox folder, and a
//! real SMTP server on loopback (`aiosmtpd` from PyPI, which `.ci/run` installs).

use std::path::Path;
use std::sync::Arc;

use axum::http::StatusCode;
use nexus_marketplace::billing::{BillingConfig, Clock, ManualClock, SandboxProvider};
use nexus_marketplace::ids::PersonId;
use nexus_marketplace::mail::{self, Mailer};
use nexus_marketplace::people;

use super::common::{Env, Options, on_both};
use super::console::{Answer, Browser};

const PASSWORD: &str = "plum-orbit-lantern-42";

async fn count(env: &Env, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&env.market.db.pool).await.unwrap()
}

/// The text of every `.eml` file in `folder`, oldest first by name order of their ids is
/// not time order, so callers look for what they expect rather than a position.
fn mails_in(folder: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut mails: Vec<String> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    mails.sort();
    mails
}

/// The link's secret after `marker` in the mail to `to` that contains it.
fn link_in(mails: &[String], to: &str, marker: &str) -> String {
    let mail = mails
        .iter()
        .find(|mail| mail.contains(&format!("To: {to}")) && mail.contains(marker))
        .unwrap_or_else(|| panic!("no mail to {to} with {marker} in {mails:?}"));
    let start = mail.find(marker).unwrap() + marker.len();
    mail[start..].chars().take_while(char::is_ascii_hexdigit).collect()
}

/// Fills in a signed-out form: GET `page`, then POST `action` with its CSRF value.
async fn submit(browser: &mut Browser<'_>, page: &str, action: &str, fields: &[(&str, &str)]) -> Answer {
    let form = browser.get(page).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let csrf = Browser::csrf_of(&form);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    browser.post(action, &all).await
}

async fn sign_up(browser: &mut Browser<'_>, email: &str, password: &str, organization: &str) -> Answer {
    let fields = [
        ("name", "Ada Shop"),
        ("email", email),
        ("password", password),
        ("organization", organization),
        ("organization_name", "Ada's Shop"),
    ];
    submit(browser, "/console/sign-up", "/console/sign-up", &fields).await
}

async fn sign_in(browser: &mut Browser<'_>, email: &str, password: &str) -> Answer {
    submit(browser, "/console/sign-in", "/console/sign-in", &[("email", email), ("password", password)]).await
}

#[test]
fn a_person_signs_up_confirms_the_address_signs_in_resets_and_signs_out_everywhere() {
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let tenants_before = count(&env, "SELECT COUNT(*) FROM tenants").await;
        let mut browser = Browser::new(&env);

        // Bad input is refused with what is wrong, and nothing is written.
        for (email, password, organization, problem) in [
            ("ada@example.com", "short-1", "ada-shop", "at least 12 characters; this one has 7"),
            ("ada@example.com", "password1234", "ada-shop", "among the most common"),
            ("ada@example.com", "ada@example.com-2026", "ada-shop", "must not contain your email address"),
            ("not-an-address", PASSWORD, "ada-shop", "is not an email address"),
            ("ada@example.com", PASSWORD, "Not An Id", "tenant"),
        ] {
            let answer = sign_up(&mut browser, email, password, organization).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{email} {password}: {}", answer.body);
            assert!(answer.body.contains(problem), "{problem} not in {}", answer.body);
        }
        let stale = browser.post("/console/sign-up", &[("csrf", "forged"), ("email", "ada@example.com")]).await;
        assert_eq!(stale.status, StatusCode::FORBIDDEN);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM people").await, 0);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM tenants").await, tenants_before);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM mail_outbox").await, 0);

        // Signed up: the person, their organization and their ownership, and one mail.
        let answer = sign_up(&mut browser, " Ada@Example.com ", PASSWORD, "ada-shop").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(answer.body.contains("We mailed a link to ada@example.com"), "{}", answer.body);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM people WHERE email = 'ada@example.com'").await, 1);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM tenants WHERE id = 'ada-shop'").await, 1);
        let owner =
            "SELECT COUNT(*) FROM memberships WHERE org_kind = 'tenant' AND org_id = 'ada-shop' AND role = 'owner'";
        assert_eq!(count(&env, owner).await, 1);
        // The same address again is answered the same, and writes only a notice to it.
        let again = sign_up(&mut Browser::new(&env), "ada@example.com", PASSWORD, "ada-other").await;
        assert_eq!(again.status, StatusCode::OK);
        assert!(again.body.contains("We mailed a link to ada@example.com"));
        assert_eq!(count(&env, "SELECT COUNT(*) FROM people").await, 1);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM tenants WHERE id = 'ada-other'").await, 0);
        // A taken organization id is the organization's business, not the address's.
        let taken = sign_up(&mut Browser::new(&env), "bob@example.com", PASSWORD, "ada-shop").await;
        assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
        assert!(taken.body.contains("ada-shop is taken"), "{}", taken.body);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM people").await, 1);

        // Not confirmed yet: the right password is not enough.
        let early = sign_in(&mut browser, "ada@example.com", PASSWORD).await;
        assert_eq!(early.status, StatusCode::FORBIDDEN, "{}", early.body);
        assert!(early.body.contains("confirm ada@example.com first"), "{}", early.body);
        assert_eq!(mail::send_due(&env.market).await.unwrap(), 2, "the link and the notice");
        let mails = mails_in(&env.outbox());
        assert_eq!(mails.len(), 2, "{mails:?}");
        assert!(mails.iter().any(|m| m.contains("Subject: You already have a Nexus account")), "{mails:?}");
        let link = link_in(&mails, "ada@example.com", "/console/verify?link=");
        assert_eq!(link.len(), 48, "{mails:?}");
        let confirmed = browser.get(&format!("/console/verify?link={link}")).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
        assert!(confirmed.body.contains("Your address is confirmed"));
        let reused = browser.get(&format!("/console/verify?link={link}")).await;
        assert_eq!(reused.status, StatusCode::BAD_REQUEST);
        assert!(reused.body.contains("already used or has expired"), "{}", reused.body);

        // A wrong password and an unknown address get the same answer.
        let wrong = sign_in(&mut browser, "ada@example.com", "not-the-password").await;
        let unknown = sign_in(&mut browser, "nobody@example.com", PASSWORD).await;
        for answer in [&wrong, &unknown] {
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
            assert!(answer.body.contains("the email address or the password is wrong"), "{}", answer.body);
        }
        // Signed in, the person acts as their organization.
        let signed = sign_in(&mut browser, "ADA@example.com", PASSWORD).await;
        assert_eq!((signed.status, signed.location.as_deref()), (StatusCode::SEE_OTHER, Some("/console/installs")));
        let installs = browser.get("/console/installs").await;
        assert_eq!(installs.status, StatusCode::OK, "{}", installs.body);
        assert!(installs.body.contains("Signed in as <strong>ada-shop</strong>"), "{}", installs.body);
        assert!(installs.body.contains("Sign out everywhere"));
        let mut laptop = Browser::new(&env);
        assert_eq!(sign_in(&mut laptop, "ada@example.com", PASSWORD).await.status, StatusCode::SEE_OTHER);

        // Sign out everywhere ends both sessions.
        let csrf = Browser::csrf_of(&installs);
        let out = browser.post("/console/sign-out-everywhere", &[("csrf", &csrf)]).await;
        assert_eq!(out.location.as_deref(), Some("/console/sign-in"));
        for session in [&mut browser, &mut laptop] {
            let page = session.get("/console/installs").await;
            assert_eq!(page.location.as_deref(), Some("/console/sign-in?next=%2Fconsole%2Finstalls"), "{}", page.body);
        }

        // A reset is answered the same for an address nobody has, and mailed only to Ada.
        let asked = submit(&mut browser, "/console/reset", "/console/reset", &[("email", "ada@example.com")]).await;
        let nobody = submit(&mut browser, "/console/reset", "/console/reset", &[("email", "eve@example.com")]).await;
        assert_eq!((asked.status, nobody.status), (StatusCode::OK, StatusCode::OK));
        assert_eq!(asked.body, nobody.body);
        assert_eq!(mail::send_due(&env.market).await.unwrap(), 1);
        let mails = mails_in(&env.outbox());
        let reset = link_in(&mails, "ada@example.com", "/console/reset/");
        let page = format!("/console/reset/{reset}");
        let weak = submit(&mut browser, &page, &page, &[("password", "tiny")]).await;
        assert_eq!(weak.status, StatusCode::BAD_REQUEST, "{}", weak.body);
        let new_password = "quartz-meadow-violin-77";
        let done = submit(&mut browser, &page, &page, &[("password", new_password)]).await;
        assert_eq!(done.status, StatusCode::OK, "the link outlived the weak try: {}", done.body);
        let twice = submit(&mut browser, &page, &page, &[("password", "another-fine-password-9")]).await;
        assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.body);
        assert_eq!(sign_in(&mut browser, "ada@example.com", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(sign_in(&mut browser, "ada@example.com", new_password).await.status, StatusCode::SEE_OTHER);

        // Nothing secret was kept or audited by value.
        let stored: String =
            sqlx::query_scalar("SELECT password_hash FROM people").fetch_one(&env.market.db.pool).await.unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        let audit: Vec<String> =
            sqlx::query_scalar("SELECT action || ' ' || detail FROM audit_log WHERE actor LIKE 'person:%'")
                .fetch_all(&env.market.db.pool)
                .await
                .unwrap();
        assert_eq!(audit.len(), 4, "signed up, confirmed, signed out everywhere, reset: {audit:?}");
        for line in &audit {
            for secret in [PASSWORD, new_password, &link, &reset] {
                assert!(!line.contains(secret), "{line}");
            }
        }
        let links: i64 =
            count(&env, &format!("SELECT COUNT(*) FROM person_links WHERE secret_sha256 = '{link}'")).await;
        assert_eq!(links, 0, "links are kept as hashes");
    })
}

#[test]
fn sign_in_is_limited_per_address_and_concurrent_sign_ups_make_one_account() {
    on_both(|postgres| async move {
        let env = Arc::new(Env::new(postgres).await);
        let tenants_before = count(&env, "SELECT COUNT(*) FROM tenants").await;
        // Eight sign-ups of one address at once: one account, one organization.
        let signups = (0..8).map(|n| {
            let env = env.clone();
            async move {
                let mut browser = Browser::new(&env);
                sign_up(&mut browser, "cy@example.com", PASSWORD, &format!("cy-shop-{n}")).await.status
            }
        });
        let statuses = futures_util::future::join_all(signups).await;
        assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
        assert_eq!(count(&env, "SELECT COUNT(*) FROM people").await, 1);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM memberships").await, 1);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM tenants").await, tenants_before + 1);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM person_links WHERE purpose = 'verify'").await, 1);
        mail::send_due(&env.market).await.unwrap();
        let link = link_in(&mails_in(&env.outbox()), "cy@example.com", "/console/verify?link=");
        people::verify_email(&env.market, &link).await.unwrap();

        // Twice the limit of guesses at once: exactly the limit is checked, the rest refused
        // unchecked; then even the right password is refused.
        let failures = (0..2 * people::MAX_FAILURES_PER_EMAIL).map(|_| {
            people::sign_in(&env.market, "http://nexus.test", "cy@example.com", "wrong-password-1", "10.0.0.1")
        });
        let mut codes: Vec<&str> = Vec::new();
        for failed in futures_util::future::join_all(failures).await {
            codes.push(match failed.unwrap_err().code().as_str() {
                "sign_in_failed" => "sign_in_failed",
                "rate_limited" => "rate_limited",
                other => panic!("{other}"),
            });
        }
        let checked = codes.iter().filter(|c| **c == "sign_in_failed").count() as i64;
        assert_eq!(checked, people::MAX_FAILURES_PER_EMAIL, "{codes:?}");
        let limited = people::sign_in(&env.market, "http://nexus.test", "cy@example.com", PASSWORD, "10.0.0.2").await;
        assert_eq!(limited.unwrap_err().code().as_str(), "rate_limited");
        let mut browser = Browser::new(&env);
        let page = sign_in(&mut browser, "cy@example.com", PASSWORD).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
        // An unknown address is limited the same way, so a limit reveals nothing either.
        for _ in 0..people::MAX_FAILURES_PER_EMAIL {
            let failed = people::sign_in(&env.market, "http://nexus.test", "zed@example.com", PASSWORD, "10.0.0.3");
            assert_eq!(failed.await.unwrap_err().code().as_str(), "sign_in_failed");
        }
        let limited = people::sign_in(&env.market, "http://nexus.test", "zed@example.com", PASSWORD, "10.0.0.4").await;
        assert_eq!(limited.unwrap_err().code().as_str(), "rate_limited");
        let counted = count(&env, "SELECT COUNT(*) FROM sign_in_failures WHERE subject = 'email:cy@example.com'").await;
        assert_eq!(counted, people::MAX_FAILURES_PER_EMAIL);
    })
}

/// A real SMTP server on loopback (`python3 -m aiosmtpd`), keeping what it receives in a
/// maildir; stopped when dropped.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    /// `None` (with a note) where aiosmtpd is not installed, outside CI.
    fn start() -> Option<Self> {
        let have = std::process::Command::new("python3").args(["-c", "import aiosmtpd"]).status();
        if !have.is_ok_and(|status| status.success()) {
            assert!(std::env::var_os("NEXUS_REQUIRE_GUEST_TOOLCHAINS").is_none(), "aiosmtpd is not installed");
            eprintln!("skipping the SMTP test: `python3 -m pip install aiosmtpd` to run it");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "aiosmtpd did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(Self { child, port, maildir })
    }

    /// Every message received, as its raw text.
    fn received(&self) -> Vec<String> {
        let new = self.maildir.path().join("mail").join("new");
        mails_in_any(&new)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mails_in_any(folder: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    entries.map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap()).collect()
}

#[test]
fn mail_leaves_by_smtp_and_is_retried_while_the_server_is_down() {
    on_both(|postgres| async move {
        let Some(smtp) = SmtpServer::start() else { return };
        let clock = Arc::new(ManualClock::at(nexus_registry::db::now_ms()));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        // Port 9 on loopback: nothing listens there.
        let down = Mailer::smtp("smtp://127.0.0.1:9", Mailer::DEFAULT_FROM).unwrap();
        let options = Options { billing: Some(billing.clone()), mailer: Some(down), ..Options::default() };
        let env = Env::with(postgres, options).await;
        let mut browser = Browser::new(&env);
        assert_eq!(sign_up(&mut browser, "dee@example.com", PASSWORD, "dee-shop").await.status, StatusCode::OK);
        assert_eq!(mail::send_due(&env.market).await.unwrap(), 1);
        let state = "SELECT state || ' ' || attempts FROM mail_outbox";
        let retrying: String = sqlx::query_scalar(state).fetch_one(&env.market.db.pool).await.unwrap();
        assert_eq!(retrying, "retrying 1");
        assert_eq!(mail::send_due(&env.market).await.unwrap(), 0, "not due yet");
        clock.advance(nexus_marketplace::runner::worker::MAX_WAIT_MS);
        assert_eq!(mail::send_due(&env.market).await.unwrap(), 1, "due again, and refused again");
        let error: String =
            sqlx::query_scalar("SELECT last_error FROM mail_outbox").fetch_one(&env.market.db.pool).await.unwrap();
        assert!(error.starts_with("the SMTP server refused it"), "{error}");
        assert!(!error.contains("/console/verify"), "no body in the error: {error}");
        drop(env);

        // A node whose mailer reaches the server sends at once.
        let up = Mailer::smtp(&format!("smtp://127.0.0.1:{}", smtp.port), "Nexus <nexus@example.org>").unwrap();
        let options = Options { billing: Some(billing), mailer: Some(up), ..Options::default() };
        let env = Env::with(postgres, options).await;
        let mut browser = Browser::new(&env);
        assert_eq!(sign_up(&mut browser, "eli@example.com", PASSWORD, "eli-shop").await.status, StatusCode::OK);
        assert_eq!(mail::send_due(&env.market).await.unwrap(), 1);
        let sent: String = sqlx::query_scalar(state).fetch_one(&env.market.db.pool).await.unwrap();
        assert_eq!(sent, "sent 1");
        let received = smtp.received();
        assert_eq!(received.len(), 1, "{received:?}");
        assert!(received[0].contains("To: eli@example.com"), "{}", received[0]);
        assert!(received[0].contains("From: Nexus <nexus@example.org>"), "{}", received[0]);
        let link = link_in(&received, "eli@example.com", "/console/verify?link=");
        people::verify_email(&env.market, &link).await.unwrap();
        assert_eq!(sign_in(&mut browser, "eli@example.com", PASSWORD).await.status, StatusCode::SEE_OTHER);
    })
}

/// A signed-in browser of a confirmed person who owns the tenant `tenant`.
async fn person<'a>(env: &'a Env, email: &str, tenant: &str) -> Browser<'a> {
    let (status, _) =
        env.post("/v1/tenants", &env.operator, serde_json::json!({ "id": tenant, "display_name": tenant })).await;
    assert_eq!(status, StatusCode::CREATED);
    people::add_confirmed_member(&env.market, email, "A Partner", PASSWORD, ("tenant", tenant), people::Role::Owner)
        .await
        .unwrap();
    let mut browser = Browser::new(env);
    assert_eq!(sign_in(&mut browser, email, PASSWORD).await.status, StatusCode::SEE_OTHER);
    browser
}

async fn apply(browser: &mut Browser<'_>, namespace: &str, website: &str, agreement: &str) -> Answer {
    let page = browser.get("/console/partner-program").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = Browser::csrf_of(&page);
    let fields = [
        ("csrf", csrf.as_str()),
        ("company", "Ada Tools Ltd"),
        ("namespace", namespace),
        ("website", website),
        ("support_email", "help@ada-tools.example"),
        ("agreement_version", agreement),
    ];
    browser.post("/console/partner-program", &fields).await
}

#[test]
fn a_person_applies_to_the_partner_program_and_an_operator_decides() {
    use nexus_marketplace::partner_program::{self, AGREEMENT_VERSION, Application, Decision};
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let mut ada = person(&env, "ada@example.com", "ada-shop").await;
        let page = ada.get("/console/partner-program").await;
        assert!(page.body.contains("You have not applied yet."), "{}", page.body);

        // Refused with what is wrong, and nothing written.
        for (namespace, website, agreement, status, problem) in [
            ("Ada Tools", "https://ada-tools.example", AGREEMENT_VERSION, StatusCode::BAD_REQUEST, "publisher"),
            ("ada-tools", "http://ada-tools.example", AGREEMENT_VERSION, StatusCode::BAD_REQUEST, "https://"),
            ("ada-tools", "https://ada-tools.example", "", StatusCode::BAD_REQUEST, "partner agreement"),
            ("nexus-labs", "https://ada-tools.example", AGREEMENT_VERSION, StatusCode::CONFLICT, "is taken"),
        ] {
            let answer = apply(&mut ada, namespace, website, agreement).await;
            assert_eq!(answer.status, status, "{namespace} {website}: {}", answer.body);
            assert!(answer.body.contains(problem), "{problem} not in {}", answer.body);
        }
        assert_eq!(count(&env, "SELECT COUNT(*) FROM partner_applications").await, 0);

        let applied = apply(&mut ada, "ada-tools", "https://ada-tools.example", AGREEMENT_VERSION).await;
        assert_eq!(applied.location.as_deref(), Some("/console/partner-program?applied=ada-tools"));
        let page = ada.get("/console/partner-program?applied=ada-tools").await;
        assert!(
            page.body.contains("waiting for an operator") && page.body.contains("<td>pending</td>"),
            "{}",
            page.body
        );

        // Eight others want the same free namespace at once: one application is filed.
        let mut people_ids = Vec::new();
        for n in 0..8 {
            let email = format!("p{n}@example.com");
            let tenant = format!("shop-{n}");
            env.post("/v1/tenants", &env.operator, serde_json::json!({ "id": tenant, "display_name": tenant })).await;
            let id = people::add_confirmed_member(
                &env.market,
                &email,
                "P",
                PASSWORD,
                ("tenant", &tenant),
                people::Role::Owner,
            )
            .await
            .unwrap();
            people_ids.push(id);
        }
        let racing = people_ids.iter().map(|person| {
            let application = Application {
                company: "Racer".into(),
                namespace: "racer".into(),
                website: "https://racer.example".into(),
                support_email: "help@racer.example".into(),
                agreement_version: AGREEMENT_VERSION.into(),
            };
            partner_program::apply(&env.market, person, application)
        });
        let outcomes = futures_util::future::join_all(racing).await;
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
        for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert_eq!(refused.code().as_str(), "publisher_exists", "{refused}");
        }

        // The operator's queue; tenants do not see it.
        let tenant_page = ada.get("/console/operator/applications").await;
        assert_eq!(tenant_page.status, StatusCode::FORBIDDEN);
        let mut operator = Browser::new(&env);
        operator.sign_in(&env.operator).await;
        let queue = operator.get("/console/operator/applications").await;
        assert_eq!(queue.status, StatusCode::OK);
        assert!(queue.body.contains("ada@example.com") && queue.body.contains("Approve ada-tools"), "{}", queue.body);
        let id: String = sqlx::query_scalar("SELECT id FROM partner_applications WHERE namespace = 'ada-tools'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        let csrf = Browser::csrf_of(&queue);
        let approved = operator.post(&format!("/console/operator/applications/{id}/approve"), &[("csrf", &csrf)]).await;
        assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
        let again = operator.post(&format!("/console/operator/applications/{id}/approve"), &[("csrf", &csrf)]).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        assert!(again.body.contains("application_decided"), "{}", again.body);
        assert_eq!(count(&env, "SELECT COUNT(*) FROM publishers WHERE name = 'ada-tools'").await, 1);
        let owner =
            "SELECT COUNT(*) FROM memberships WHERE org_kind = 'publisher' AND org_id = 'ada-tools' AND role = 'owner'";
        assert_eq!(count(&env, owner).await, 1);

        // Ada now acts as either organization, and only hers.
        let installs = ada.get("/console/installs").await;
        assert!(installs.body.contains("<option value=\"publisher:ada-tools\""), "{}", installs.body);
        let csrf = Browser::csrf_of(&installs);
        let switched = ada.post("/console/switch", &[("csrf", &csrf), ("org", "publisher:ada-tools")]).await;
        assert_eq!(switched.location.as_deref(), Some("/console/partners/ada-tools"));
        let partner = ada.get("/console/partners/ada-tools").await;
        assert_eq!(partner.status, StatusCode::OK, "{}", partner.body);
        assert!(partner.body.contains("Signed in as <strong>ada-tools</strong> (publisher)"), "{}", partner.body);
        let other = ada.post("/console/switch", &[("csrf", &csrf), ("org", "publisher:nexus-labs")]).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND);

        // A rejection needs a reason, and the applicant reads it.
        let racer: nexus_marketplace::ids::ApplicationId =
            sqlx::query_scalar("SELECT id FROM partner_applications WHERE namespace = 'racer'")
                .fetch_one(&env.market.db.pool)
                .await
                .unwrap();
        let operator_caller =
            nexus_marketplace::accounts::authenticate(&env.market.db, &env.market.registry, &env.operator)
                .await
                .unwrap();
        let empty =
            partner_program::decide(&env.market, &operator_caller, &racer, Decision::Reject { reason: " ".into() });
        assert_eq!(empty.await.unwrap_err().code().as_str(), "invalid_request");
        // Four operators decide at once: one decision stands.
        let decisions = (0..4).map(|_| {
            partner_program::decide(
                &env.market,
                &operator_caller,
                &racer,
                Decision::Reject { reason: "no website yet".into() },
            )
        });
        let decided = futures_util::future::join_all(decisions).await;
        assert_eq!(decided.iter().filter(|d| d.is_ok()).count(), 1);
        assert!(decided.iter().filter_map(|d| d.as_ref().err()).all(|e| e.code().as_str() == "application_decided"));

        assert_eq!(mail::send_due(&env.market).await.unwrap(), 2);
        let mails = mails_in(&env.outbox());
        assert!(
            mails.iter().any(|m| m.contains("To: ada@example.com") && m.contains("ada-tools is yours")),
            "{mails:?}"
        );
        assert!(mails.iter().any(|m| m.contains("not approved") && m.contains("no website yet")), "{mails:?}");
        let audited = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'partner.%'").await;
        assert_eq!(audited, 4, "two applications, an approval, a rejection");
    })
}

#[test]
fn an_organization_invites_members_changes_roles_and_always_keeps_an_owner() {
    use nexus_marketplace::organizations::{self, Org};
    on_both(|postgres| async move {
        let env = Env::new(postgres).await;
        let mut ada = person(&env, "ada@example.com", "ada-shop").await;
        let mut bob = person(&env, "bob@example.com", "bob-shop").await;
        let mut cy = person(&env, "cy@example.com", "cy-shop").await;
        let ada_id: PersonId = sqlx::query_scalar("SELECT id FROM people WHERE email = 'ada@example.com'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();
        let bob_id: PersonId = sqlx::query_scalar("SELECT id FROM people WHERE email = 'bob@example.com'")
            .fetch_one(&env.market.db.pool)
            .await
            .unwrap();

        let page = ada.get("/console/organization").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("Members of ada-shop") && page.body.contains("Send the invitation"));
        let csrf = Browser::csrf_of(&page);
        for (email, role, status, problem) in [
            ("bob@example.com", "wizard", StatusCode::BAD_REQUEST, "there is no role `wizard`"),
            ("ada@example.com", "viewer", StatusCode::CONFLICT, "already a member"),
            ("not an address", "viewer", StatusCode::BAD_REQUEST, "is not an email address"),
        ] {
            let answer =
                ada.post("/console/organization/invite", &[("csrf", &csrf), ("email", email), ("role", role)]).await;
            assert_eq!(answer.status, status, "{email} {role}: {}", answer.body);
            assert!(answer.body.contains(problem), "{problem} not in {}", answer.body);
        }
        assert_eq!(count(&env, "SELECT COUNT(*) FROM invitations").await, 0);
        let sent = ada
            .post(
                "/console/organization/invite",
                &[("csrf", &csrf), ("email", "Bob@Example.com"), ("role", "developer")],
            )
            .await;
        assert_eq!(sent.location.as_deref(), Some("/console/organization?done=invitation+sent"), "{}", sent.body);
        assert_eq!(mail::send_due(&env.market).await.unwrap(), 1);
        let link = link_in(&mails_in(&env.outbox()), "bob@example.com", "/console/invitations/");
        let path = format!("/console/invitations/{link}");

        // Only Bob accepts it, once; then his session acts as ada-shop, as a developer.
        let shown = cy.get(&path).await;
        let cy_csrf = Browser::csrf_of(&shown);
        let wrong = cy.post(&path, &[("csrf", &cy_csrf)]).await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
        assert!(wrong.body.contains("this invitation is for bob@example.com"), "{}", wrong.body);
        let shown = bob.get(&path).await;
        assert!(shown.body.contains("Accept the invitation"), "{}", shown.body);
        let bob_csrf = Browser::csrf_of(&shown);
        let joined = bob.post(&path, &[("csrf", &bob_csrf)]).await;
        assert_eq!(joined.location.as_deref(), Some("/console/installs"), "{}", joined.body);
        let again = bob.post(&path, &[("csrf", &bob_csrf)]).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
        let page = bob.get("/console/organization").await;
        assert!(page.body.contains("Members of ada-shop"), "{}", page.body);
        assert!(!page.body.contains("Send the invitation"), "developers do not manage members");
        assert!(page.body.contains("Signed in as <strong>ada-shop</strong>"));
        // A developer cannot remove the owner.
        let csrf = Browser::csrf_of(&page);
        let refused = bob.post(&format!("/console/organization/members/{ada_id}/remove"), &[("csrf", &csrf)]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

        // Ada makes Bob an owner; then both step down at once: one of them stays owner.
        let org = Org { kind: "tenant", id: "ada-shop" };
        organizations::change_role(&env.market, org, &ada_id, &bob_id, "owner").await.unwrap();
        let (ada_steps, bob_steps) = tokio::join!(
            organizations::change_role(&env.market, org, &ada_id, &ada_id, "admin"),
            organizations::change_role(&env.market, org, &bob_id, &bob_id, "admin"),
        );
        let outcomes = [ada_steps, bob_steps];
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
        let refused = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
        assert_eq!(refused.code().as_str(), "last_owner");
        let owners = "SELECT COUNT(*) FROM memberships WHERE org_id = 'ada-shop' AND role = 'owner'";
        assert_eq!(count(&env, owners).await, 1);
        // The one still owner cannot leave; the other can.
        let owner = if outcomes[0].is_ok() { &bob_id } else { &ada_id };
        let other = if outcomes[0].is_ok() { &ada_id } else { &bob_id };
        let stuck = organizations::remove(&env.market, org, owner, owner).await.unwrap_err();
        assert_eq!(stuck.code().as_str(), "last_owner");
        organizations::remove(&env.market, org, other, other).await.unwrap();
        assert_eq!(count(&env, "SELECT COUNT(*) FROM memberships WHERE org_id = 'ada-shop'").await, 1);
        let audited = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'member.%'").await;
        assert_eq!(audited, 5, "invited, joined, made owner, stepped down, left");
    })
}

/// The code an authenticator app shows for `secret` (base32) at `ms`.
fn code_at(secret: &str, ms: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "x@example.com".into()).unwrap();
    totp.generate((ms / 1000) as u64)
}

async fn enter_code(browser: &mut Browser<'_>, email: &str, code: &str) -> Answer {
    let page = sign_in(browser, email, PASSWORD).await;
    assert_eq!(page.status, StatusCode::OK, "the password step asks for a code: {}", page.body);
    assert!(page.body.contains("Enter the 6-digit code"), "{}", page.body);
    let csrf = Browser::csrf_of(&page);
    browser.post("/console/sign-in/code", &[("csrf", &csrf), ("code", code)]).await
}

#[test]
fn two_step_sign_in_takes_each_code_once_and_recovery_codes_once() {
    on_both(|postgres| async move {
        // Aligned to the start of a 30 s step, so a code stays current until the clock moves.
        let start = nexus_registry::db::now_ms() / 30_000 * 30_000;
        let clock = Arc::new(ManualClock::at(start));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let env = Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await;
        let mut ada = person(&env, "ada@example.com", "ada-shop").await;
        let page = ada.get("/console/security").await;
        assert!(page.body.contains("Two-step sign-in is off"), "{}", page.body);
        let csrf = Browser::csrf_of(&page);
        let started = ada.post("/console/security/start", &[("csrf", &csrf)]).await;
        let marker = "id=\"totp-secret\">";
        let at = started.body.find(marker).unwrap() + marker.len();
        let secret: String = started.body[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        assert!(started.body.contains("otpauth://totp/Nexus:ada%40example.com?secret="), "{}", started.body);
        let wrong = ada.post("/console/security/confirm", &[("csrf", &csrf), ("code", "000000")]).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
        let first_code = code_at(&secret, clock.now_ms());
        let confirmed = ada.post("/console/security/confirm", &[("csrf", &csrf), ("code", &first_code)]).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
        let recovery: Vec<String> = confirmed
            .body
            .split("<li><code>")
            .skip(1)
            .map(|part| part.split('<').next().unwrap().to_string())
            .collect();
        assert_eq!(recovery.len(), 10, "{}", confirmed.body);

        // The password alone no longer signs in; a wrong code, or the code already used, is refused.
        let mut phone = Browser::new(&env);
        let refused = enter_code(&mut phone, "ada@example.com", "123456").await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
        let replayed = enter_code(&mut phone, "ada@example.com", &first_code).await;
        assert_eq!(replayed.status, StatusCode::UNAUTHORIZED, "a code works once: {}", replayed.body);
        clock.advance(30_000);
        let fresh = enter_code(&mut phone, "ada@example.com", &code_at(&secret, clock.now_ms())).await;
        assert_eq!(fresh.location.as_deref(), Some("/console/installs"), "{}", fresh.body);
        assert_eq!(phone.get("/console/installs").await.status, StatusCode::OK);

        // A recovery code signs in once.
        let mut laptop = Browser::new(&env);
        let recovered = enter_code(&mut laptop, "ada@example.com", &recovery[3]).await;
        assert_eq!(recovered.status, StatusCode::SEE_OTHER, "{}", recovered.body);
        let mut again = Browser::new(&env);
        let reused = enter_code(&mut again, "ada@example.com", &recovery[3]).await;
        assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{}", reused.body);

        // Past the limit of wrong codes, even a right one waits for the window.
        for _ in 0..4 {
            let wrong = enter_code(&mut again, "ada@example.com", "999999").await;
            assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        }
        clock.advance(30_000);
        let locked = enter_code(&mut again, "ada@example.com", &code_at(&secret, clock.now_ms())).await;
        assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.body);

        // Turned off with a current code (after the window), the password alone signs in again.
        clock.advance(people::FAILURE_WINDOW_MS);
        let page = ada.get("/console/security").await;
        let csrf = Browser::csrf_of(&page);
        let off = ada
            .post("/console/security/disable", &[("csrf", &csrf), ("code", &code_at(&secret, clock.now_ms()))])
            .await;
        assert!(off.body.contains("Two-step sign-in is off"), "{}", off.body);
        assert_eq!(sign_in(&mut Browser::new(&env), "ada@example.com", PASSWORD).await.status, StatusCode::SEE_OTHER);
        let stored: i64 = count(&env, "SELECT COUNT(*) FROM recovery_codes").await;
        assert_eq!(stored, 0);
        let audited = count(&env, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'person.second_factor_%'").await;
        assert_eq!(audited, 2);
        let secret_audited =
            count(&env, &format!("SELECT COUNT(*) FROM audit_log WHERE detail LIKE '%{secret}%'")).await;
        assert_eq!(secret_audited, 0);
    })
}

#[test]
fn one_use_links_and_codes_work_once_when_used_at_once() {
    use nexus_marketplace::organizations::{self, Org};
    on_both(|postgres| async move {
        let start = nexus_registry::db::now_ms() / 30_000 * 30_000;
        let clock = Arc::new(ManualClock::at(start));
        let billing = BillingConfig::sandboxed(clock.clone(), Arc::new(SandboxProvider::default()));
        let env = Env::with(postgres, Options { billing: Some(billing), ..Options::default() }).await;
        let (status, _) =
            env.post("/v1/tenants", &env.operator, serde_json::json!({ "id": "ada-shop", "display_name": "A" })).await;
        assert_eq!(status, StatusCode::CREATED);
        let ada = people::add_confirmed_member(
            &env.market,
            "ada@example.com",
            "Ada",
            PASSWORD,
            ("tenant", "ada-shop"),
            people::Role::Owner,
        )
        .await
        .unwrap();
        env.post("/v1/tenants", &env.operator, serde_json::json!({ "id": "bob-shop", "display_name": "B" })).await;
        let bob = people::add_confirmed_member(
            &env.market,
            "bob@example.com",
            "Bob",
            PASSWORD,
            ("tenant", "bob-shop"),
            people::Role::Owner,
        )
        .await
        .unwrap();

        // One invitation accepted four times at once: one membership.
        let org = Org { kind: "tenant", id: "ada-shop" };
        organizations::invite(&env.market, "http://nexus.test", org, &ada, "bob@example.com", "developer")
            .await
            .unwrap();
        people::request_reset(&env.market, "http://nexus.test", "ada@example.com").await.unwrap();
        mail::send_due(&env.market).await.unwrap();
        let mails = mails_in(&env.outbox());
        let invitation = link_in(&mails, "bob@example.com", "/console/invitations/");
        let accepting = (0..4).map(|_| organizations::accept(&env.market, &invitation, &bob));
        let accepted = futures_util::future::join_all(accepting).await;
        assert_eq!(accepted.iter().filter(|a| a.is_ok()).count(), 1, "{accepted:?}");
        assert!(accepted.iter().filter_map(|a| a.as_ref().err()).all(|e| e.code().as_str() == "invalid_link"));
        assert_eq!(count(&env, "SELECT COUNT(*) FROM memberships WHERE org_id = 'ada-shop'").await, 2);

        // One reset link used four times at once: one new password.
        let reset = link_in(&mails, "ada@example.com", "/console/reset/");
        let passwords =
            ["first-new-password-1", "second-new-password-2", "third-new-password-3", "fourth-new-password-4"];
        let resetting = passwords.map(|password| people::reset_password(&env.market, &reset, password));
        let reset_outcomes = futures_util::future::join_all(resetting).await;
        assert_eq!(reset_outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{reset_outcomes:?}");
        let winner = passwords[reset_outcomes.iter().position(Result::is_ok).unwrap()];
        let signed = people::sign_in(&env.market, "http://nexus.test", "ada@example.com", winner, "test").await;
        assert!(signed.is_ok(), "the one password set signs in");

        // One authenticator code sent four times at once: one sign-in.
        let enrolment = people::second_factor::start(&env.market, &bob).await.unwrap();
        people::second_factor::confirm(&env.market, &bob, &code_at(&enrolment.secret_base32, clock.now_ms()))
            .await
            .unwrap();
        clock.advance(30_000);
        let code = code_at(&enrolment.secret_base32, clock.now_ms());
        let verifying = (0..4).map(|_| people::second_factor::verify(&env.market, &bob, &code));
        let verified = futures_util::future::join_all(verifying).await;
        assert_eq!(verified.iter().filter(|v| v.is_ok()).count(), 1, "{verified:?}");
        assert!(verified.iter().filter_map(|v| v.as_ref().err()).all(|e| e.code().as_str() == "sign_in_failed"));
    })
}

/// The partner's whole way through the JSON API: sign up and confirm the address, sign in
/// for a token, apply, be approved by an operator, verify the domain, publish a priced
/// plugin, sell it to a tenant, and be paid. (The browser test walks the console's way.)
#[test]
fn a_builder_signs_up_becomes_a_verified_partner_publishes_sells_and_is_paid() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use serde_json::json;
    on_both(|postgres| async move {
        let options = Options { host: Some(super::webhooks::loopback_host()), ..Options::default() };
        let env = Env::with(postgres, options).await;

        // Sign up and confirm through the JSON API; answers never say whether an address is known.
        let signup = json!({ "email": "ada@ada-tools.example", "name": "Ada", "password": PASSWORD,
                             "organization": "ada-shop", "organization_name": "Ada's Shop" });
        let (status, mailed) = env.call("POST", "/v1/signup", None, Some(&signup.to_string())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{mailed}");
        let (status, again) = env.call("POST", "/v1/signup", None, Some(&signup.to_string())).await;
        assert_eq!((status, &again), (StatusCode::ACCEPTED, &mailed));
        let weak = json!({ "email": "bo@example.com", "name": "Bo", "password": "short",
                           "organization": "bo-shop", "organization_name": "Bo" });
        let (status, refused) = env.call("POST", "/v1/signup", None, Some(&weak.to_string())).await;
        assert_eq!((status, &refused["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("weak_password")));
        mail::send_due(&env.market).await.unwrap();
        let link = link_in(&mails_in(&env.outbox()), "ada@ada-tools.example", "/console/verify?link=");
        let confirm = json!({ "link": link }).to_string();
        let (status, _) = env.call("POST", "/v1/signup/confirm", None, Some(&confirm)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, reused) = env.call("POST", "/v1/signup/confirm", None, Some(&confirm)).await;
        assert_eq!((status, &reused["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_link")));

        // A token for her tenant, and with it an application; an operator approves.
        let login = |organization: &str| {
            json!({ "email": "ada@ada-tools.example", "password": PASSWORD, "organization": organization }).to_string()
        };
        let (status, tenant) = env.call("POST", "/v1/login", None, Some(&login("tenant:ada-shop"))).await;
        assert_eq!(status, StatusCode::CREATED, "{tenant}");
        let tenant = tenant["secret"].as_str().unwrap().to_string();
        let (_, agreement) = env.call("GET", "/v1/partner-agreement", None, None).await;
        let application = json!({ "company": "Ada Tools", "namespace": "ada-tools", "website": "https://ada-tools.example",
                                  "support_email": "help@ada-tools.example", "agreement_version": agreement["version"] });
        let (status, refused) =
            env.post("/v1/partner-applications", &env.tenant("machine").await, application.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a machine's token applies for nobody: {refused}");
        let (status, applied) = env.post("/v1/partner-applications", &tenant, application).await;
        assert_eq!((status, &applied["state"]), (StatusCode::CREATED, &json!("pending")), "{applied}");
        let (_, mine) = env.get("/v1/partner-applications", &tenant).await;
        assert_eq!(mine[0]["namespace"], "ada-tools");
        let (_, queue) = env.get("/v1/partner-applications", &env.operator).await;
        let id = queue[0]["id"].as_str().unwrap().to_string();
        let decide = format!("/v1/partner-applications/{id}/decision");
        let (status, _) = env.post(&decide, &tenant, json!({ "decision": "approve" })).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, approved) = env.post(&decide, &env.operator, json!({ "decision": "approve" })).await;
        assert_eq!((status, &approved["state"]), (StatusCode::OK, &json!("approved")), "{approved}");
        mail::send_due(&env.market).await.unwrap();
        assert!(mails_in(&env.outbox()).iter().any(|m| m.contains("ada-tools is yours")));

        // A token for the new publisher, from the sign-in API.
        let (status, login) = env.call("POST", "/v1/login", None, Some(&login("publisher:ada-tools"))).await;
        assert_eq!(status, StatusCode::CREATED, "{login}");
        let token = login["secret"].as_str().unwrap().to_string();

        // The domain: claimed, served, verified.
        let served = Arc::new(std::sync::Mutex::new(String::new()));
        let domain = super::logins::site(served.clone()).await;
        let claim = json!({ "domain": domain }).to_string();
        let (status, claimed) = env.call("PUT", "/v1/publishers/ada-tools/domain", Some(&token), Some(&claim)).await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        *served.lock().unwrap() = claimed["token"].as_str().unwrap().to_string();
        let (_, checked) = env.post("/v1/publishers/ada-tools/domain/check", &token, json!({})).await;
        assert_eq!(checked["verified"], true, "{checked}");

        // Publish a plugin with a one-time price, under the new namespace.
        let manifest =
            super::common::manifest_of("echo").replacen("id = \"nexus-labs/echo\"", "id = \"ada-tools/ada-echo\"", 1);
        let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
        let form = super::common::form(&[("manifest", manifest.as_bytes()), ("component", &component)]);
        let request = Request::post("/v1/publish")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={}", super::common::BOUNDARY))
            .body(Body::from(form))
            .unwrap();
        let (status, _, published) = env.raw(request).await;
        assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&published));
        let plan = json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time", "currency": "EUR", "price_minor": 4900 });
        let (status, plan) = env.post("/v1/plugins/ada-tools/ada-echo/plans", &token, plan).await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        let (_, listed) = env.call("GET", "/v1/catalog?q=ada-echo", None, None).await;
        assert_eq!(listed["items"][0]["verified_domain"], domain, "{listed}");

        // A tenant buys it; the partner is paid its share at the payout run, and mailed.
        let globex = env.tenant("globex").await;
        let install = env.install(&globex, "ada-tools/ada-echo", json!({ "plan": "lifetime" })).await;
        let (_, charges) = env.get(&format!("/v1/charges?install={}", install["id"].as_str().unwrap()), &globex).await;
        assert_eq!(
            (&charges["items"][0]["status"], &charges["items"][0]["amount_minor"]),
            (&json!("collected"), &json!(4900))
        );
        let (status, run) = env.post("/v1/payouts/runs", &env.operator, json!({})).await;
        assert_eq!((status, &run["paid"]), (StatusCode::OK, &json!(1)), "{run}");
        let (_, payouts) = env.get("/v1/publishers/ada-tools/payouts", &token).await;
        assert_eq!((&payouts[0]["currency"], &payouts[0]["amount_minor"]), (&json!("EUR"), &json!(4900)), "{payouts}");
        mail::send_due(&env.market).await.unwrap();
        assert!(
            mails_in(&env.outbox()).iter().any(|m| m.contains("To: ada@ada-tools.example") && m.contains("49.00 EUR")),
            "the payout is mailed to the partner's owner"
        );

        // A new password through the API ends every token she signed in for.
        let reset = json!({ "email": "ada@ada-tools.example" }).to_string();
        let (status, _) = env.call("POST", "/v1/password-resets", None, Some(&reset)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        mail::send_due(&env.market).await.unwrap();
        let link = link_in(&mails_in(&env.outbox()), "ada@ada-tools.example", "/console/reset/");
        let new_password = json!({ "link": link, "password": "harbor-violet-engine-77" }).to_string();
        let (status, _) = env.call("POST", "/v1/password-resets/confirm", None, Some(&new_password)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        for old in [&token, &tenant] {
            let (status, _) = env.get("/v1/whoami", old).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    })
}
