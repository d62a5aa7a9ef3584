//! The console in a real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`): sign in as each role, search the catalog, complete the install
//! consent flow, download a statement CSV, sign out; a screenshot of every page goes to
//! `<target>/tmp/console-screenshots/`. Skips with a message where the browser is not
//! installed, unless `NEXUS_REQUIRE_BROWSER=1` (set by `.ci/run`, which installs it).
//!
//! The WebDriver client is the handful of W3C endpoints used here, over `reqwest`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use nexus_marketplace::server::{AppState, serve_on};
use serde_json::{Value, json};

use super::common::runtime;
use super::console::World;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    http: reqwest::Client,
    session: String,
    base: String,
    child: std::process::Child,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready
                && response.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start on {base}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,1600".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        } } });
        let created: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session =
            created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_string();
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Self { http, session, base, child, shots, _profile: profile }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.try_command(method, path, body).await;
        assert!(answer["error"].is_null(), "WebDriver {path}: {answer}");
        answer
    }

    /// A command's `value`, which holds `error` when WebDriver refused it.
    async fn try_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    /// Finds `css` and does `action` to it (`click`, or `value` with `body`), again while a
    /// navigation under way makes the element missing or stale (up to 10 s).
    async fn act(&self, css: &str, action: &str, body: Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .try_command(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css })))
                .await;
            let answer = match found[ELEMENT].as_str() {
                Some(element) => {
                    let path = format!("/element/{element}/{action}");
                    self.try_command(reqwest::Method::POST, &path, Some(body.clone())).await
                }
                None => found,
            };
            if answer["error"].is_null() {
                return;
            }
            assert!(Instant::now() < deadline, "WebDriver {action} {css}: {answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .command(reqwest::Method::POST, "/elements", Some(json!({ "using": "css selector", "value": css })))
            .await;
        found.as_array().unwrap().iter().map(|e| e[ELEMENT].as_str().unwrap().to_string()).collect()
    }

    async fn click(&self, css: &str) {
        self.act(css, "click", json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.act(css, "value", json!({ "text": text })).await;
    }

    async fn source(&self) -> String {
        self.command(reqwest::Method::GET, "/source", None).await.as_str().unwrap().to_string()
    }

    /// The page once it shows `text`: a click's navigation may still be under way when the
    /// click returns, more so on a loaded machine.
    async fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            assert!(Instant::now() < deadline, "{text:?} never appeared at {}:\n{source}", self.url().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_string()
    }

    async fn screenshot(&self, name: &str) {
        let shot = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// What a `fetch` of `path` from the page returns: the browser's own session does it.
    async fn fetch_text(&self, path: &str) -> String {
        let script = "const done = arguments[arguments.length - 1]; \
                      fetch(arguments[0], { credentials: 'same-origin' }).then(r => r.text()).then(done, e => done('failed: ' + e));";
        self.command(reqwest::Method::POST, "/execute/async", Some(json!({ "script": script, "args": [path] })))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Each image matching `css` once it has loaded (or failed): its decoded width and height
    /// (0 when it did not display) and its alt text. Lazy ones are scrolled into view first.
    async fn loaded_images(&self, css: &str) -> Value {
        let script = "const done = arguments[arguments.length - 1]; \
                      const images = [...document.querySelectorAll(arguments[0])]; \
                      images.forEach(i => i.scrollIntoView()); \
                      Promise.all(images.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; }))) \
                      .then(() => { window.scrollTo(0, 0); done(images.map(i => [i.naturalWidth, i.naturalHeight, i.alt])); });";
        self.command(reqwest::Method::POST, "/execute/async", Some(json!({ "script": script, "args": [css] }))).await
    }

    async fn sign_in(&self, site: &str, token: &str) {
        self.open(&format!("{site}/console/sign-in")).await;
        self.screenshot("sign-in").await;
        self.type_into("#token", token).await;
        self.click("#token-form button[type=submit]").await;
    }

    async fn sign_out(&self) {
        self.click("header form[action='/console/sign-out'] button").await;
        self.wait_for("Sign in with an API token").await;
        assert!(self.url().await.ends_with("/console/sign-in"), "signed out to the sign-in page");
    }

    async fn end(&self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

fn browser_installed() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

#[test]
fn each_role_uses_the_console_in_a_real_browser() {
    if !browser_installed() {
        assert!(
            std::env::var("NEXUS_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "NEXUS_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
        );
        eprintln!(
            "SKIPPED each_role_uses_the_console_in_a_real_browser: {CHROMIUM} and {CHROMEDRIVER} are not installed \
             (apt-get update && apt-get install -y chromium chromium-driver); .ci/run installs them"
        );
        return;
    }
    runtime().block_on(async {
        let world = World::new().await;
        let env = &world.env;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let site = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState { market: env.market.clone(), public_url: site.clone() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, state, async {
            let _ = stopped.await;
        }));
        let driver = Driver::start().await;
        // chat-notifier's listing shows its sample icon and screenshots.
        for (path, image) in [
            ("icon", "icon.png"),
            ("screenshots/1?caption=The%20event%20log", "screenshot-1.png"),
            ("screenshots/2", "screenshot-2.png"),
        ] {
            let bytes = nexus_sample_plugins::media("chat-notifier", &format!("media/{image}")).unwrap();
            let request = axum::http::Request::put(format!("/v1/plugins/nexus-labs/chat-notifier/media/{path}"))
                .header("authorization", format!("Bearer {}", env.publisher))
                .body(axum::body::Body::from(bytes))
                .unwrap();
            assert_eq!(env.raw(request).await.0, 200, "{path}");
        }

        // A tenant: search, read the listing, consent, install.
        driver.sign_in(&site, &world.initech).await;
        driver.wait_for("Nothing installed yet").await;
        assert!(driver.url().await.ends_with("/console/installs"), "{}", driver.url().await);
        driver.screenshot("tenant-installs-empty").await;
        driver.open(&format!("{site}/console/catalog")).await;
        driver.type_into("input[name=q]", "chat").await;
        driver.click("form.search button").await;
        let results = driver.wait_for("Results").await;
        assert!(results.contains("nexus-labs/chat-notifier") && !results.contains("nexus-labs/tax-calculator"));
        assert_eq!(driver.loaded_images("img.card-icon").await, json!([[128, 128, ""]]), "the card's icon");
        driver.screenshot("catalog-search").await;
        driver.click("a[href='/console/catalog/nexus-labs/chat-notifier']").await;
        driver.wait_for("What it asks for").await;
        // The images display under the console's CSP: decoded at their size, with alt text.
        assert_eq!(
            driver.loaded_images("img.listing-icon, ul.screenshots img").await,
            json!([
                [128, 128, "nexus-labs/chat-notifier icon"],
                [640, 400, "The event log"],
                [640, 400, "Screenshot 2 of nexus-labs/chat-notifier"]
            ])
        );
        driver.screenshot("listing").await;
        driver.click("a[href='/console/catalog/nexus-labs/chat-notifier/install']").await;
        // Consent is one decision: what it may do is listed, and one button grants it all.
        let form = driver.wait_for("Grant and install").await;
        assert!(form.contains("will be able to") && driver.find_all("input[type=checkbox]").await.is_empty());
        driver.screenshot("install-consent").await;
        driver.type_into("#setting-channel", "#ops").await;
        driver.type_into("#secret-webhook-url", "https://hooks.slack.com/services/T/B/sk-browser-SECRET-7").await;
        driver.click("form.stack > button[type=submit]").await;
        let installed = driver.wait_for("Installed.").await;
        assert!(driver.url().await.contains("?installed=1"), "{installed}");
        assert!(installed.contains("webhook-url"));
        assert!(!installed.contains("sk-browser-SECRET-7"));
        driver.screenshot("install-done").await;
        let install_page = driver.url().await;
        driver.open(&format!("{site}/console/installs")).await;
        assert!(driver.source().await.contains("nexus-labs/chat-notifier"));
        driver.screenshot("tenant-installs").await;
        driver.open(&format!("{site}/console/bills?period=2026-11")).await;
        driver.screenshot("tenant-bill").await;
        // On a 400 px wide screen the tenant's pages do not scroll sideways.
        driver.command(reqwest::Method::POST, "/window/rect", Some(json!({ "width": 400, "height": 900 }))).await;
        for page in [format!("{site}/console/installs"), install_page, format!("{site}/console/bills?period=2026-11")] {
            driver.open(&page).await;
            let script = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];";
            let widths = driver
                .command(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] })))
                .await;
            let (scroll, client) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
            assert!(scroll <= client, "{page} scrolls sideways at 400 px: {scroll} > {client}");
            assert!(client <= 420, "the window is narrow: {client}");
        }
        driver.screenshot("tenant-bill-narrow").await;
        driver.command(reqwest::Method::POST, "/window/rect", Some(json!({ "width": 1280, "height": 1600 }))).await;
        driver.sign_out().await;

        // The partner: earnings, a statement, its CSV, a payout.
        driver.sign_in(&site, &env.publisher).await;
        driver.wait_for("Balance owed to you").await;
        assert!(driver.url().await.ends_with("/console/partners/nexus-labs"), "{}", driver.url().await);
        let earnings = driver.source().await;
        assert!(earnings.contains("<svg") && earnings.contains("51.00 EUR"), "{earnings}");
        driver.screenshot("partner-earnings").await;
        driver.click("a[href='/console/partners/nexus-labs/statements/2026-11']").await;
        driver.wait_for("Closing balance").await;
        driver.screenshot("partner-statement").await;
        let csv = driver.fetch_text("/console/partners/nexus-labs/statements/2026-11.csv").await;
        let (_, _, api) = env
            .raw(
                axum::http::Request::get("/v1/publishers/nexus-labs/statements/2026-11.csv")
                    .header("authorization", format!("Bearer {}", env.publisher))
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(csv, String::from_utf8(api).unwrap());
        std::fs::write(driver.shots.join("statement-2026-11.csv"), &csv).unwrap();
        driver.open(&format!("{site}/console/partners/nexus-labs/payouts/{}", world.payout)).await;
        assert!(driver.source().await.contains("Lines it settles"));
        driver.screenshot("partner-payout").await;
        // Another partner's pages are refused in the browser too.
        driver.open(&format!("{site}/console/operator")).await;
        assert!(driver.source().await.contains("forbidden"));
        driver.open(&format!("{site}/console/catalog")).await;
        driver.sign_out().await;

        // The operator: figures, a listing featured through its form, the audit log, the ledger.
        driver.sign_in(&site, &env.operator).await;
        driver.wait_for("Run payouts now").await;
        assert!(driver.url().await.ends_with("/console/operator"));
        driver.screenshot("operator-dashboard").await;
        driver
            .type_into(
                "form[action='/console/operator/listings/nexus-labs/echo/feature'] input[name=reason]",
                "Staff pick",
            )
            .await;
        driver.click("form[action='/console/operator/listings/nexus-labs/echo/feature'] button").await;
        driver.wait_for("nexus-labs/echo: feature done").await;
        driver.open(&format!("{site}/console/catalog")).await;
        let catalog = driver.source().await;
        let featured = catalog.find("Featured listings").unwrap();
        assert!(
            catalog[featured..]
                .find("nexus-labs/echo")
                .is_some_and(|at| at < catalog[featured..].find("All listings").unwrap())
        );
        driver.screenshot("catalog-featured").await;
        driver.open(&format!("{site}/console/operator/audit")).await;
        // The featuring just done, by this operator, on that listing.
        let audit = driver.source().await;
        assert!(audit.contains("<td>listing.featured</td><td>nexus-labs/echo</td>"), "{audit}");
        driver.screenshot("operator-audit").await;
        driver.open(&format!("{site}/console/operator/ledger")).await;
        assert!(driver.source().await.contains("The ledger balances"));
        driver.screenshot("operator-ledger").await;
        // The directories, and a refund from a charge's receipt: reason, confirmation, figures.
        driver.open(&format!("{site}/console/operator/tenants?q=glob")).await;
        assert!(driver.source().await.contains("<code>globex</code>"));
        driver.screenshot("operator-tenants").await;
        driver.open(&format!("{site}/console/operator/partners")).await;
        assert!(driver.source().await.contains("<code>nexus-labs</code>"));
        driver.screenshot("operator-partners").await;
        let (_, charges) = env.get("/v1/charges?tenant=globex", &env.operator).await;
        let charge = charges["items"][0]["id"].as_str().unwrap().to_string();
        driver.open(&format!("{site}/console/charges/{charge}")).await;
        driver.type_into("#amount", "10.00").await;
        driver.type_into("#reason", "late delivery").await;
        driver.click("#confirm").await;
        driver.click("form[action$='/refund'] button[type=submit]").await;
        let refunded = driver.wait_for("Refunded 10.00 EUR.").await;
        assert!(refunded.contains("<strong>50.00 EUR</strong>"), "net paid after the refund: {refunded}");
        driver.screenshot("operator-receipt").await;
        driver.open(&format!("{site}/console/partners/nexus-labs")).await;
        driver.wait_for("Money actions").await;
        driver.screenshot("operator-partner").await;
        driver.sign_out().await;

        // Reviews on a listing: globex (which has run echo for two days) reviews it, nexus-labs
        // replies, an operator hides the review.
        sqlx::query("UPDATE installs SET created_at = created_at - 172800000 WHERE tenant_id = 'globex'")
            .execute(env.market.db.writer())
            .await
            .unwrap();
        let listing = format!("{site}/console/catalog/nexus-labs/echo");
        driver.sign_in(&site, &world.globex).await;
        driver.wait_for("/console/sign-out").await;
        driver.open(&listing).await;
        driver.wait_for("Publish your review").await;
        driver.click("input[name=rating][value='4']").await;
        driver.type_into("input[name=title]", "Solid <b>in</b> a browser").await;
        driver.type_into("textarea[name=body]", "Works.").await;
        driver.click("form.review-form button").await;
        let reviewed = driver.wait_for("Thank you: your review is published.").await;
        assert!(
            reviewed.contains("Solid &lt;b&gt;in&lt;/b&gt; a browser") && reviewed.contains("4.0 out of 5"),
            "{reviewed}"
        );
        driver.screenshot("listing-reviewed").await;
        driver.sign_out().await;
        driver.sign_in(&site, &env.publisher).await;
        driver.wait_for("/console/sign-out").await;
        driver.open(&listing).await;
        driver.wait_for("Edit this listing's text").await;
        driver.click("ol.reviews details summary").await;
        driver.type_into("ol.reviews form[action$='/reply'] textarea", "Thanks, globex!").await;
        driver.click("ol.reviews form[action$='/reply'] button").await;
        let replied = driver.wait_for("Your reply is published.").await;
        assert!(replied.contains("Reply from nexus-labs") && replied.contains("Thanks, globex!"), "{replied}");
        driver.screenshot("listing-replied").await;
        driver.sign_out().await;
        driver.sign_in(&site, &env.operator).await;
        driver.wait_for("/console/sign-out").await;
        driver.open(&listing).await;
        driver.wait_for("Hide</summary>").await;
        driver.click("ol.reviews details summary").await;
        driver.type_into("ol.reviews form[action$='/hide'] input[name=text]", "Test review").await;
        driver.click("ol.reviews form[action$='/hide'] button").await;
        let hidden = driver.wait_for("The review is hidden; its author sees why.").await;
        assert!(
            hidden.contains("Hidden ") && hidden.contains("Show again"),
            "operators still see it, marked: {hidden}"
        );
        driver.screenshot("listing-review-hidden").await;
        driver.sign_out().await;

        // A person: signs up with an organization, confirms the address from the mail,
        // signs in with the password, and signs out everywhere.
        driver.open(&format!("{site}/console/sign-up")).await;
        driver.wait_for("Create an account").await;
        for (field, value) in [
            ("#name", "Bea Browser"),
            ("#email", "bea@example.com"),
            ("#password", "meadow-copper-signal-8"),
            ("#organization", "bea-shop"),
            ("#organization_name", "Bea's Shop"),
        ] {
            driver.type_into(field, value).await;
        }
        driver.screenshot("sign-up").await;
        driver.click("form.stack button[type=submit]").await;
        driver.wait_for("We mailed a link to bea@example.com").await;
        assert_eq!(nexus_marketplace::mail::send_due(&env.market).await.unwrap(), 1);
        let mail =
            std::fs::read_dir(env.outbox()).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap());
        let mail = mail.into_iter().find(|m| m.contains("To: bea@example.com")).unwrap();
        let link = mail.lines().find(|line| line.contains("/console/verify?link=")).unwrap().trim();
        assert!(link.starts_with(&format!("{site}/console/verify?link=")), "links name the public URL: {link}");
        driver.open(link).await;
        driver.wait_for("Your address is confirmed").await;
        driver.open(&format!("{site}/console/sign-in")).await;
        driver.type_into("#email", "bea@example.com").await;
        driver.type_into("#password", "meadow-copper-signal-8").await;
        driver.click("#password-form button[type=submit]").await;
        driver.wait_for("Nothing installed yet").await;
        assert!(driver.source().await.contains("Signed in as <strong>bea-shop</strong>"));
        driver.screenshot("person-signed-in").await;

        // Bea applies to the partner program; an operator approves; Bea acts as the new
        // publisher and claims her domain.
        driver.open(&format!("{site}/console/partner-program")).await;
        driver.wait_for("You have not applied yet.").await;
        for (field, value) in [
            ("#company", "Bea Tools"),
            ("#namespace", "bea-tools"),
            ("#website", "https://bea-tools.example"),
            ("#support_email", "help@bea-tools.example"),
        ] {
            driver.type_into(field, value).await;
        }
        driver.click("form[action='/console/partner-program'] input[name=agreement_version]").await;
        driver.screenshot("partner-application").await;
        driver.click("form[action='/console/partner-program'] button[type=submit]").await;
        driver.wait_for("is waiting for an operator").await;
        driver.sign_out().await;
        driver.sign_in(&site, &env.operator).await;
        driver.wait_for("Run payouts now").await;
        driver.open(&format!("{site}/console/operator/applications")).await;
        driver.wait_for("Approve bea-tools").await;
        driver.screenshot("operator-applications").await;
        driver.click("form[action$='/approve'] button").await;
        driver.wait_for("Done: bea-tools approved").await;
        driver.sign_out().await;
        driver.open(&format!("{site}/console/sign-in")).await;
        driver.type_into("#email", "bea@example.com").await;
        driver.type_into("#password", "meadow-copper-signal-8").await;
        driver.click("#password-form button[type=submit]").await;
        // Two organizations now: the header offers the switch.
        driver.wait_for("Act as").await;
        driver.click("#switch-org option[value='publisher:bea-tools']").await;
        driver.click("header form[action='/console/switch'] button").await;
        driver.wait_for("Verified domain").await;
        assert!(driver.url().await.ends_with("/console/partners/bea-tools"), "{}", driver.url().await);
        driver.type_into("#domain-name", "bea-tools.example").await;
        driver.click("form[action='/console/partners/bea-tools/domain'] button").await;
        let claimed = driver.wait_for("bea-tools.example is not verified yet").await;
        assert!(claimed.contains("nexus-verification="), "the token to serve is shown");

        // She publishes and sells through the API with a token from the sign-in API; the
        // partner page shows the sale.
        let login = json!({ "email": "bea@example.com", "password": "meadow-copper-signal-8",
                            "organization": "publisher:bea-tools" });
        let (status, token) = env.call("POST", "/v1/login", None, Some(&login.to_string())).await;
        assert_eq!(status, axum::http::StatusCode::CREATED, "{token}");
        let token = token["secret"].as_str().unwrap().to_string();
        let manifest =
            super::common::manifest_of("echo").replacen("id = \"nexus-labs/echo\"", "id = \"bea-tools/bea-echo\"", 1);
        let component = nexus_sample_plugins::bytes(nexus_sample_plugins::ECHO).unwrap();
        let form = super::common::form(&[("manifest", manifest.as_bytes()), ("component", &component)]);
        let publish = axum::http::Request::post("/v1/publish")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", format!("multipart/form-data; boundary={}", super::common::BOUNDARY))
            .body(axum::body::Body::from(form))
            .unwrap();
        let (status, _, body) = env.raw(publish).await;
        assert_eq!(status, axum::http::StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
        let plan = json!({ "key": "lifetime", "name": "Lifetime", "model": "one-time", "currency": "EUR",
                           "price_minor": 2500 });
        let (status, body) = env.post("/v1/plugins/bea-tools/bea-echo/plans", &token, plan).await;
        assert_eq!(status, axum::http::StatusCode::CREATED, "{body}");
        env.install(&world.initech, "bea-tools/bea-echo", json!({ "plan": "lifetime" })).await;
        driver.open(&format!("{site}/console/partners/bea-tools")).await;
        let sold = driver.wait_for("bea-tools/bea-echo").await;
        assert!(sold.contains("25.00 EUR"), "{sold}");
        driver.screenshot("partner-first-sale").await;
        driver.click("form[action='/console/sign-out-everywhere'] button").await;
        driver.wait_for("Sign in with an API token").await;

        driver.end().await;
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        for name in ["catalog-search", "install-consent", "partner-earnings", "operator-dashboard"] {
            assert!(driver.shots.join(format!("{name}.png")).exists());
        }
    });
}
