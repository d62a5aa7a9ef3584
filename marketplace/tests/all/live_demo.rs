//! The README's main job, `nexus serve --demo`, run as a user runs it: it seeds, serves,
//! keeps events flowing into recorded invocations, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::runtime;

#[test]
fn serve_demo_seeds_a_live_marketplace_with_events_flowing() {
    let temp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .env("TMPDIR", temp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut operator, mut globex) = (None, None, None);
    let mut people: Vec<(String, String, String)> = Vec::new();
    let mut outbox = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        // `  person        <email> / <password>  (<what they are>)`
        if let Some(rest) = line.strip_prefix("  person") {
            let (credentials, about) = rest.trim().split_once("  (").unwrap();
            let (email, password) = credentials.split_once(" / ").unwrap();
            people.push((email.to_string(), password.to_string(), about.trim_end_matches(')').to_string()));
        }
        if let Some(rest) = line.strip_prefix("mail (sign-up and reset links) is written to ") {
            outbox = Some(rest.to_string());
        }
        if let Some(rest) = line.strip_prefix("Nexus demo marketplace on ") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        let token = line.split_whitespace().nth(1).map(str::to_owned);
        if line.starts_with("  operator ") {
            operator = token;
        } else if line.starts_with("  tenant ") && line.ends_with("(globex)") {
            globex = token;
        } else if line.starts_with("try:") {
            break;
        }
    }
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let (url, operator, globex) = (url.unwrap(), operator.unwrap(), globex.unwrap());
    let about: Vec<String> = people.iter().map(|(email, _, about)| format!("{email}: {about}")).collect();
    assert_eq!(about.len(), 6, "{people:?}");
    assert!(about[0].starts_with("grace@nexus.example: operator; two-step key "), "{about:?}");
    assert_eq!(
        &about[1..],
        [
            "lin@nexus-labs.example: owner of publisher:nexus-labs",
            "sam@nexus-labs.example: finance of publisher:nexus-labs",
            "ada@globex.example: owner of tenant:globex",
            "bo@globex.example: admin of tenant:globex",
            "kim@initech.example: owner of tenant:initech; partner application pending",
        ]
    );
    assert!(outbox.as_deref().is_some_and(|o| o.starts_with(temp.path().to_str().unwrap()) && o.ends_with("/outbox")));
    signs_in_from_the_command_line(&url, &people);

    runtime().block_on(async {
        let client = reqwest::Client::new();
        let get = |path: String, token: &str| {
            let request = client.get(format!("{url}{path}")).bearer_auth(token);
            async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
        };
        let catalog = get("/v1/catalog?sort=name".into(), &globex).await;
        let ids: Vec<&str> = catalog["items"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "acme-tools/webhook-relay",
                "nexus-labs/chat-notifier",
                "nexus-labs/echo",
                "nexus-labs/pii-redactor",
                "nexus-labs/tax-calculator"
            ]
        );
        assert_eq!(catalog["items"][0]["latest_version"], "1.1.0");
        // Today's tier run placed the partners: nexus-labs sold over 50.00, acme-tools did not.
        assert_eq!(
            (&catalog["items"][0]["tier_badge"], &catalog["items"][1]["tier_badge"]),
            (&json!("Registered"), &json!("Select"))
        );
        assert!(catalog["items"][4]["featured"].as_bool().unwrap());
        let detail = get("/v1/catalog/nexus-labs/echo".into(), &globex).await;
        assert_eq!(detail["versions"][0]["signed"], true);
        // Every listing has a description, links and a changelog for its newest version.
        for id in &ids {
            let detail = get(format!("/v1/catalog/{id}"), &globex).await;
            assert!(detail["description_html"].as_str().is_some_and(|d| d.starts_with("<p>")), "{id}: {detail}");
            assert!(detail["links"]["documentation"].is_string(), "{id}: {detail}");
            assert!(detail["versions"][0]["changelog_html"].is_string(), "{id}: {detail}");
        }
        // Tenants reviewed what they use; nexus-labs replied to one; initech found it helpful.
        let tax = get("/v1/catalog/nexus-labs/tax-calculator".into(), &globex).await;
        assert_eq!(tax["rating"], json!({ "count": 2, "average": 4.5, "by_stars": [0, 0, 0, 1, 1] }));
        let reviews = get("/v1/catalog/nexus-labs/tax-calculator/reviews?sort=helpful".into(), &globex).await;
        assert_eq!(
            (reviews["items"][0]["organization"].as_str(), reviews["items"][0]["helpful"].as_i64()),
            (Some("Globex Corporation"), Some(1))
        );
        assert!(reviews["items"][0]["reply"]["body"].as_str().unwrap().contains("Canadian provinces"), "{reviews}");
        let profile = get("/v1/publishers/nexus-labs/profile".into(), &globex).await;
        assert_eq!(
            (profile["rating_count"].as_i64(), profile["website"].as_str()),
            (Some(4), Some("https://nexus-labs.example"))
        );
        // The console is served beside the API: the catalog page lists the same listings,
        // the featured one first.
        let page = client.get(format!("{url}/console/catalog")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        let featured = page.find("Featured listings").unwrap();
        assert!(
            page[featured..]
                .starts_with("Featured listings\">\n<li>\n  <a href=\"/console/catalog/nexus-labs/tax-calculator\""),
            "{page}"
        );
        for id in &ids {
            assert!(page.contains(&format!("<strong>{id}</strong>")), "{id} not on the console's catalog");
        }
        // Every demo listing has an icon (on its card too) and two captioned screenshots,
        // served from this server as PNG.
        for id in &ids {
            let detail = get(format!("/v1/catalog/{id}"), &globex).await;
            let icon = detail["icon"]["url"].as_str().unwrap_or_else(|| panic!("{id} has no icon: {detail}"));
            assert!(page.contains(&format!("<img class=\"card-icon\" src=\"{icon}\"")), "{id}'s card has no icon");
            let shots = detail["screenshots"].as_array().unwrap();
            assert_eq!(shots.len(), 2, "{id}: {detail}");
            assert!(shots.iter().all(|s| s["caption"].is_string() && s["width"] == 640), "{id}: {detail}");
            let served = client.get(format!("{url}{}", shots[1]["url"].as_str().unwrap())).send().await.unwrap();
            assert_eq!(
                (served.status().as_u16(), &served.headers()["content-type"]),
                (200, &"image/png".parse().unwrap())
            );
        }

        let installs = get("/v1/installs".into(), &globex).await;
        let plugins: Vec<&str> =
            installs["items"].as_array().unwrap().iter().map(|i| i["plugin"].as_str().unwrap()).collect();
        assert_eq!(plugins, ["nexus-labs/echo", "nexus-labs/tax-calculator", "nexus-labs/pii-redactor"]);
        // Events flow by themselves: every globex install gets invocations, all ok.
        let deadline = Instant::now() + Duration::from_secs(30);
        for install in installs["items"].as_array().unwrap() {
            let path = format!("/v1/installs/{}/invocations", install["id"].as_str().unwrap());
            loop {
                let history = get(path.clone(), &globex).await;
                if history["total"].as_u64().unwrap() > 0 {
                    assert!(history["items"].as_array().unwrap().iter().all(|i| i["outcome"] == "ok"), "{history}");
                    break;
                }
                assert!(Instant::now() < deadline, "no invocations for {path}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let audit = get("/v1/audit?action=install.created".into(), &operator).await;
        // chat-notifier is listed but not installed: it posts to a real Slack workspace, and
        // a demo has none, so each of its runs would fail.
        assert_eq!(audit["total"], 5);
        // The history's records are dated in its month, as its bills are: the installs were
        // made and audited a month ago, and every period counts the partners and listings
        // that existed by its end.
        let now = nexus_registry::db::now_ms();
        let installed: Vec<i64> =
            audit["items"].as_array().unwrap().iter().map(|e| e["at"].as_i64().unwrap()).collect();
        assert!(installed.iter().all(|at| *at < now - 28 * 86_400_000), "{audit}");
        let seeded = installed.iter().min().unwrap();
        let ecosystem = get("/v1/metrics/ecosystem?interval=month".into(), &operator).await;
        let lived: Vec<&Value> = ecosystem
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["period_end"].as_i64().unwrap() > *seeded + 60_000)
            .collect();
        assert!(lived.len() >= 2, "the history's month and this one: {ecosystem}");
        for period in lived {
            assert_eq!((&period["partners"], &period["listings"]), (&json!(2), &json!(5)), "{ecosystem}");
            assert!(period["active_partners"].as_i64().unwrap() <= 2, "{period}");
        }
        // The command-line sign-ins above are audited with the person behind each token.
        let logins = get("/v1/audit?action=person.logged_in".into(), &operator).await;
        let persons: Vec<&str> =
            logins["items"].as_array().unwrap().iter().map(|e| e["person"].as_str().unwrap()).collect();
        assert_eq!(persons, ["grace@nexus.example", "sam@nexus-labs.example", "bo@globex.example"], "{logins}");

        // A month of money lived through before serving, on the real billing path.
        let charges = get("/v1/charges?per_page=100".into(), &globex).await;
        let mut lines: Vec<(&str, &str, &str)> = charges["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["amount_minor"].as_i64().unwrap() > 0)
            .map(|c| (c["plugin"].as_str().unwrap(), c["line"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect();
        lines.sort();
        lines.dedup();
        assert_eq!(
            lines,
            [
                ("nexus-labs/echo", "one-time", "collected"),
                ("nexus-labs/pii-redactor", "proration", "collected"),
                ("nexus-labs/pii-redactor", "subscription", "collected"),
                ("nexus-labs/tax-calculator", "usage:tax-calculations", "collected"),
            ],
            "{charges}"
        );
        let echo = charges["items"].as_array().unwrap().iter().find(|c| c["line"] == "one-time").unwrap();
        assert_eq!((echo["amount_minor"].as_i64(), echo["refunded_minor"].as_i64()), (Some(4900), Some(900)));
        let initech = get("/v1/charges?tenant=initech&per_page=100".into(), &operator).await;
        let relay = initech["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["plugin"] == "acme-tools/webhook-relay")
            .min_by_key(|c| c["period_start"].as_i64())
            .unwrap();
        assert_eq!((relay["status"].as_str(), relay["attempts"].as_i64()), (Some("collected"), Some(2)), "{relay}");
        // The partners were paid out at the end of the month: nexus-labs in both currencies,
        // acme-tools' 14.40 USD carried forward under the 25.00 minimum.
        let payouts = get("/v1/publishers/nexus-labs/payouts".into(), &operator).await;
        let mut paid: Vec<(&str, &str)> = payouts
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["currency"].as_str().unwrap(), p["status"].as_str().unwrap()))
            .collect();
        paid.sort();
        assert_eq!(paid, [("EUR", "paid"), ("USD", "paid")], "{payouts}");
        let acme = get("/v1/publishers/acme-tools/payouts".into(), &operator).await;
        assert_eq!(acme, serde_json::json!([]));
        let verify = get("/v1/ledger/verify".into(), &operator).await;
        assert_eq!(verify["ok"], true, "{verify}");
        let sales = get("/v1/publishers/acme-tools/sales".into(), &operator).await;
        let row = &sales["rows"][0];
        // acme-tools' policy: 20% of every sale.
        assert_eq!(row["fee_minor"].as_i64().unwrap() * 5, row["gross_minor"].as_i64().unwrap(), "{sales}");
    });

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

/// The demo's people sign in with `nexus login`, act through their profiles and log out.
fn signs_in_from_the_command_line(url: &str, people: &[(String, String, String)]) {
    use super::common::nexus;
    let config = tempfile::tempdir().unwrap();
    let env = [("NEXUS_CONFIG_DIR", config.path().to_str().unwrap())];
    let login = |email: &str, extra: &[&str]| {
        let (_, password, _) = people.iter().find(|(e, _, _)| e == email).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"));
        command.args(["login", "--registry", url, "--email", email, "--password-stdin"]).args(extra);
        command.env("NEXUS_CONFIG_DIR", config.path()).env_remove("NEXUS_TOKEN").env_remove("NEXUS_PROFILE");
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let text = |output: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    };

    let bo = login("bo@globex.example", &[]);
    assert!(bo.status.success(), "{}", text(&bo));
    assert!(text(&bo).starts_with(&format!("Signed in to {url} as bo@globex.example: tenant:globex (admin;")));
    let file = config.path().join("credentials.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let me = nexus(&["whoami"], &env);
    assert!(text(&me).contains("organization  tenant:globex\nperson        bo@globex.example\n"), "{}", text(&me));
    let installs = nexus(&["installs"], &env);
    assert!(text(&installs).contains("nexus-labs/echo"), "{}", text(&installs));
    // The profile's token never goes to another server.
    let elsewhere = nexus(&["installs", "--registry", "http://127.0.0.1:9"], &env);
    assert_eq!(elsewhere.status.code(), Some(2));
    assert!(
        text(&elsewhere).contains(&format!("profile `default` signed in to {url}, not http://127.0.0.1:9")),
        "{}",
        text(&elsewhere)
    );

    // Sam (finance) reads nexus-labs' sales under another profile, with no scope to publish.
    let sam = login("sam@nexus-labs.example", &["--profile", "sam"]);
    assert!(text(&sam).contains("publisher:nexus-labs (finance; scopes: none, reading only)"), "{}", text(&sam));
    let sales = nexus(&["sales", "nexus-labs", "--profile", "sam"], &env);
    assert!(text(&sales).contains("balance owed to nexus-labs"), "{}", text(&sales));

    // The operator needs the code from the printed key.
    let refused = login("grace@nexus.example", &["--profile", "ops"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).contains("[second_factor_required] — pass --code"), "{}", text(&refused));
    let (_, _, about) = people.iter().find(|(e, _, _)| e == "grace@nexus.example").unwrap();
    let key = about.rsplit(' ').next().unwrap();
    let bytes = totp_rs::Secret::Encoded(key.to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, "grace".into()).unwrap();
    let code = totp.generate_current().unwrap();
    let grace = login("grace@nexus.example", &["--profile", "ops", "--code", &code]);
    assert!(text(&grace).contains("as grace@nexus.example: operator (owner;"), "{}", text(&grace));
    let tenants = nexus(&["whoami", "--profile", "ops"], &env);
    assert!(text(&tenants).contains("person        grace@nexus.example"), "{}", text(&tenants));

    // Logging out ends the token on the server and forgets the profile.
    let out = nexus(&["logout"], &env);
    assert_eq!(text(&out), "Signed out: the token revoked, and profile `default` is forgotten.\n");
    let after = nexus(&["whoami"], &env);
    assert_eq!(after.status.code(), Some(2));
    assert!(text(&after).contains("no API token: run `nexus login` (profile `default`)"), "{}", text(&after));
    let again = nexus(&["logout"], &env);
    assert_eq!(text(&again), "Not signed in under profile `default`: nothing to do.\n");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("[profiles.sam]") && saved.contains("[profiles.ops]") && !saved.contains("bo@globex"));
}
