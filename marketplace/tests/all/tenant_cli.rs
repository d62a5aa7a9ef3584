//! The tenant's path through the real binary: an operator creates the tenant, the tenant
//! installs plugins (consent with --yes, refused without a terminal), lists its installs and
//! sends events, and sees exit code 1 when a plugin fails. SQLite only: CLI tests are slow.

use std::process::Output;

use super::common::{issued_token as token, nexus, serve};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn tenant_installs_lists_and_sends_events_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_dir = data.to_str().unwrap();
    let server = serve(&data);
    let config_home = dir.path().join("config");
    let with_token = |token: &str| {
        [
            ("NEXUS_REGISTRY", server.url.clone()),
            ("NEXUS_TOKEN", token.to_string()),
            ("XDG_CONFIG_HOME", config_home.to_str().unwrap().to_string()),
        ]
    };
    let run = |args: &[&str], env: &[(&str, String); 3]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        nexus(args, &env)
    };

    let operator = with_token(&token(&nexus(&["operator", "token", "--init", "--data-dir", data_dir], &[])));
    let publisher = with_token(&token(&nexus(&["publisher", "create", "nexus-labs", "--data-dir", data_dir], &[])));
    for plugin in ["echo", "tax-calculator"] {
        let (_, component, _) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == plugin).unwrap();
        let manifest =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../sample-plugins/{plugin}/nexus.toml"));
        let published = run(&["publish", component, "--manifest", manifest.to_str().unwrap(), "--no-sign"], &publisher);
        assert!(published.status.success(), "{}", stderr(&published));
    }

    let created = run(&["tenant", "create", "globex", "--display-name", "Globex"], &operator);
    assert!(stdout(&created).starts_with("created tenant globex\ntoken id  "), "{}", stdout(&created));
    let tenant = with_token(&token(&created));
    let not_operator = run(&["tenant", "create", "initech"], &tenant);
    assert_eq!(not_operator.status.code(), Some(2));
    assert!(stderr(&not_operator).contains("[forbidden]"), "{}", stderr(&not_operator));

    let installed = run(&["install", "nexus-labs/echo", "--yes", "--config", "prefix=>> "], &tenant);
    assert_eq!(installed.status.code(), Some(0), "{}", stderr(&installed));
    assert_eq!(
        stderr(&installed),
        "nexus-labs/echo@0.1.0 asks for:\n  config  Reads an optional prefix to put before the payload\n\
         on plan   Free (free, revision 1): no charge\n"
    );
    let out = stdout(&installed);
    let install_id = out.lines().find_map(|l| l.strip_prefix("id        ")).unwrap().to_string();
    assert!(install_id.starts_with("ins_"), "{out}");
    assert_eq!(
        out,
        format!(
            "installed nexus-labs/echo\nid        {install_id}\nversion   0.1.0 (requirement ^0.1)\n\
             status    active\nplan      free\n"
        )
    );

    let secret_file = dir.path().join("rates");
    std::fs::write(&secret_file, "s3cr3t-value\n").unwrap();
    let secret_arg = format!("api-key=@{}", secret_file.display());
    let tax = run(
        &["install", "nexus-labs/tax-calculator", "-y", "--requirement", "^0.1", "--secret", &secret_arg, "--json"],
        &tenant,
    );
    assert_eq!(tax.status.code(), Some(0), "{}", stderr(&tax));
    let tax_install: serde_json::Value = serde_json::from_slice(&tax.stdout).unwrap();
    assert_eq!(tax_install["requirement"], "^0.1");
    assert_eq!(tax_install["plan"], "per-calculation");
    assert_eq!(tax_install["secret_names"], serde_json::json!(["api-key"]));
    assert_eq!(tax_install["grants"]["capabilities"], serde_json::json!(["log", "config", "kv", "usage"]));
    assert!(stderr(&tax).contains("  kv      Keeps running tax totals per region"), "{}", stderr(&tax));
    assert!(!format!("{}{}", stdout(&tax), stderr(&tax)).contains("s3cr3t"));

    let listed = run(&["installs"], &tenant);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let table = stdout(&listed);
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ID", "PLUGIN", "VERSION", "STATUS", "PENDING", "UPGRADE"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert!(rows.contains(&vec![install_id.as_str(), "nexus-labs/echo", "0.1.0", "active", "-"]), "{table}");
    let tax_id = tax_install["id"].as_str().unwrap();
    assert!(rows.contains(&vec![tax_id, "nexus-labs/tax-calculator", "0.1.0", "active", "-"]), "{table}");
    assert_eq!(rows.len(), 2, "{table}");

    let sent = run(&["events", "send", "--type", "t.x", "--payload", r#"{"a":1}"#, "--id", "evt-cli-1"], &tenant);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    let out = stdout(&sent);
    assert!(out.starts_with("event evt-cli-1\nnexus-labs/echo@0.1.0  ok  "), "{out}");
    assert!(out.ends_with("  >> {\"a\":1}\n"), "{out}");
    assert_eq!(out.lines().count(), 2, "tax-calculator does not handle t.x: {out}");
    // A file of events goes in order, one receipt each; a bad line sends nothing and is named.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, "# two events\n{\"type\": \"t.x\", \"id\": \"evt-f1\"}\n\n{\"type\": \"t.x\", \"id\": \"evt-f2\", \"payload\": {\"b\": 2}}\n").unwrap();
    let sent = run(&["events", "send", "--file", file.to_str().unwrap()], &tenant);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    let out = stdout(&sent);
    assert!(out.starts_with("event evt-f1\nnexus-labs/echo@0.1.0  ok  "), "{out}");
    assert!(out.contains("\nevent evt-f2\nnexus-labs/echo@0.1.0  ok  "), "{out}");
    assert!(out.ends_with("  >> {\"b\":2}\n"), "{out}");
    std::fs::write(&file, "{\"type\": \"t.x\", \"id\": \"evt-f3\"}\n{\"typ\": \"t.x\"}\n").unwrap();
    let refused = run(&["events", "send", "--file", file.to_str().unwrap()], &tenant);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let expected = format!("{}:2: not an event (unknown field `typ`", file.display());
    assert!(stderr(&refused).contains(&expected), "{}", stderr(&refused));
    assert_eq!(stdout(&refused), "", "nothing was sent");

    // tax-calculator has no `rates` config, so it fails while echo succeeds: exit code 1.
    let order = r#"{"amount_minor":100,"region":"eu"}"#;
    let mixed = run(&["events", "send", "--type", "order.created", "--payload", order, "--json"], &tenant);
    assert_eq!(mixed.status.code(), Some(1), "{}", stderr(&mixed));
    let receipt: serde_json::Value = serde_json::from_slice(&mixed.stdout).unwrap();
    let mut outcomes: Vec<(&str, &str)> = receipt["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["plugin"].as_str().unwrap(), d["outcome"].as_str().unwrap()))
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, [("nexus-labs/echo", "ok"), ("nexus-labs/tax-calculator", "plugin_error")]);

    // The same, queued: the server's worker delivers it; the failure retrying cannot fix
    // ends `failed`, and the tenant replays it.
    let queued =
        run(&["events", "send", "--async", "--type", "order.created", "--payload", order, "--id", "evt-q1"], &tenant);
    assert_eq!(queued.status.code(), Some(0), "{}", stderr(&queued));
    assert!(stdout(&queued).starts_with("event evt-q1 (2 delivery(ies))\n"), "{}", stdout(&queued));
    let started = std::time::Instant::now();
    let shown = loop {
        let shown = run(&["events", "show", "evt-q1", "--json"], &tenant);
        assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
        let event: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        let mut states: Vec<(String, String)> = event["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["plugin"].as_str().unwrap().to_string(), d["state"].as_str().unwrap().to_string()))
            .collect();
        states.sort();
        if states.iter().all(|(_, state)| state != "queued" && state != "running") {
            break states;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "still delivering: {event}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let expected = [("nexus-labs/echo", "applied"), ("nexus-labs/tax-calculator", "failed")];
    assert_eq!(shown, expected.map(|(p, s)| (p.to_string(), s.to_string())));
    let failed = run(&["events", "deliveries", "--state", "failed"], &tenant);
    let line = stdout(&failed);
    assert!(line.contains("  nexus-labs/tax-calculator  failed  attempts 1  plugin_error: "), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    let id = line.split_whitespace().next().unwrap();
    let replayed = run(&["events", "replay", id], &tenant);
    assert_eq!(
        stdout(&replayed),
        "queued 1 deliveries again; `nexus events deliveries` follows them\n",
        "{}",
        stderr(&replayed)
    );
    assert_eq!(stdout(&run(&["events", "deliveries", "--state", "dead"], &tenant)), "no dead deliveries\n");
    assert_eq!(
        stdout(&run(&["events", "replay", "--all-dead"], &tenant)),
        "nothing to replay: no delivery is in that state\n"
    );
    // Webhook endpoints from the CLI.
    let none = run(&["webhooks", "list"], &tenant);
    assert_eq!(stdout(&none), "no webhook endpoints yet: `nexus webhooks add <url> --kind plugin.action` adds one\n");
    let added = run(
        &["webhooks", "add", "https://hooks.example.com/nexus", "--kind", "plugin.action", "--kind", "bill.issued"],
        &tenant,
    );
    assert_eq!(added.status.code(), Some(0), "{}", stderr(&added));
    let lines: Vec<String> = stdout(&added).lines().map(String::from).collect();
    let endpoint = lines[0].split_whitespace().next().unwrap().to_string();
    assert!(lines[0].ends_with("https://hooks.example.com/nexus  enabled  bill.issued,plugin.action"), "{lines:?}");
    assert!(lines[1].starts_with("secret    whsec_"), "{lines:?}");
    assert!(stdout(&run(&["webhooks", "list"], &tenant)).starts_with(&endpoint));
    let rotated = run(&["webhooks", "rotate", &endpoint, "--overlap-hours", "2"], &tenant);
    assert!(stdout(&rotated).starts_with("secret    whsec_") && stdout(&rotated) != lines[1], "{}", stderr(&rotated));
    assert_eq!(stdout(&run(&["webhooks", "log", &endpoint], &tenant)), format!("nothing posted to {endpoint} yet\n"));
    assert_eq!(stdout(&run(&["webhooks", "remove", &endpoint], &tenant)), format!("removed {endpoint}\n"));
    let gone = run(&["webhooks", "remove", &endpoint], &tenant);
    assert_eq!(gone.status.code(), Some(2));
    assert!(stderr(&gone).contains("[not_found]"), "{}", stderr(&gone));
    let bad_kind = run(&["webhooks", "add", "https://hooks.example.com/x", "--kind", "everything"], &tenant);
    assert_eq!(bad_kind.status.code(), Some(2));
    assert!(
        stderr(&bad_kind).contains("--kind everything is not a webhook kind; use one of plugin.action,"),
        "{}",
        stderr(&bad_kind)
    );
    let bad_state = run(&["events", "deliveries", "--state", "gone"], &tenant);
    assert_eq!(bad_state.status.code(), Some(2));
    assert!(
        stderr(&bad_state).contains("--state gone is not a delivery state; use one of queued, running,"),
        "{}",
        stderr(&bad_state)
    );

    let again = run(&["install", "nexus-labs/echo", "--yes"], &tenant);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again)
            .contains("already has nexus-labs/echo installed; change it or uninstall it first [already_installed]"),
        "{}",
        stderr(&again)
    );

    let unattended = run(&["install", "nexus-labs/echo"], &tenant);
    assert_eq!(unattended.status.code(), Some(2));
    assert!(
        stderr(&unattended).ends_with(
            "error: cannot ask for consent: standard input is not a terminal; pass --yes to grant what is listed above\n"
        ),
        "{}",
        stderr(&unattended)
    );

    let bad_config = run(&["install", "nexus-labs/echo", "--yes", "--config", "prefix"], &tenant);
    assert_eq!(bad_config.status.code(), Some(2));
    assert_eq!(stderr(&bad_config), "error: --config `prefix` is not KEY=VALUE; write it as --config name=value\n");
    let bad_secret = run(&["install", "nexus-labs/echo", "--yes", "--secret", "sk_live_123"], &tenant);
    assert_eq!(bad_secret.status.code(), Some(2));
    assert!(stderr(&bad_secret).contains("a --secret is not KEY=VALUE"), "{}", stderr(&bad_secret));
    assert!(!stderr(&bad_secret).contains("sk_live_123"), "{}", stderr(&bad_secret));
    let bad_payload = run(&["events", "send", "--type", "t.x", "--payload", "{a:1}"], &tenant);
    assert_eq!(bad_payload.status.code(), Some(2));
    assert!(stderr(&bad_payload).starts_with("error: --payload is not valid JSON ("), "{}", stderr(&bad_payload));
}

#[test]
fn a_tenant_manages_an_install_through_the_cli_without_curl() {
    let market = super::common::RealMarket::new();
    let server = market.serve(&[], &[]);
    market.publish(&server.url, "echo");
    let operator = [("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", market.operator.as_str())];
    let tenant = token(&nexus(&["tenant", "create", "globex"], &operator));
    let env = [("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", tenant.as_str())];
    let ok = |output: Output| {
        assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
        stdout(&output)
    };
    // A token pasted with its line break still works, and a wrong one says so.
    let pasted = format!("{tenant}\n");
    ok(nexus(&["installs"], &[("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", pasted.as_str())]));
    let wrong = nexus(&["installs"], &[("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", "nxt_wrong")]);
    assert!(stderr(&wrong).contains("run `nexus login` again, or check --token / NEXUS_TOKEN"), "{}", stderr(&wrong));
    let installed = ok(nexus(&["install", "nexus-labs/echo", "--yes", "--requirement", "^0.1"], &env));
    let id = installed.lines().find_map(|l| l.strip_prefix("id        ")).unwrap().to_string();

    // Settings: a new config and a secret from a file, shown by name only.
    let secret = std::env::temp_dir().join(format!("nexus-cli-secret-{}", std::process::id()));
    std::fs::write(&secret, "hush\n").unwrap();
    let from_file = format!("token=@{}", secret.display());
    let set = ok(nexus(&["installs", "settings", &id, "--config", "prefix=> ", "--secret", &from_file], &env));
    std::fs::remove_file(&secret).unwrap();
    assert_eq!(set, "config    {\"prefix\":\"> \"}\nsecrets   token (sealed, not shown)\n");
    let removed = ok(nexus(&["installs", "settings", &id, "--remove-secret", "token"], &env));
    assert!(removed.ends_with("secrets    (sealed, not shown)\n"), "{removed}");

    // Invocations, as a table.
    ok(nexus(&["events", "send", "--type", "t.x", "--id", "evt-1", "--payload", "{}"], &env));
    let listed = ok(nexus(&["installs", "invocations", &id], &env));
    let row: Vec<&str> = listed.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[1], row[2], row[3]), ("evt-1", "t.x", "ok"), "{listed}");
    assert!(listed.ends_with("1 invocation(s) in all\n"), "{listed}");

    // A version asking for one more capability waits; the upgrade shows it and asks.
    // Written elsewhere than the sample's folder, so without the sample's `[media]` (last).
    let without_media = super::common::manifest_of("echo").split("\n[media]").next().unwrap();
    let echo = without_media.replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1).replacen(
        "[[pricing]]",
        "[capabilities.kv]\nreason = \"Remembers the last payload\"\n\n[[pricing]]",
        1,
    );
    let manifest = std::env::temp_dir().join(format!("nexus-cli-echo-{}.toml", std::process::id()));
    std::fs::write(&manifest, echo).unwrap();
    let publisher = [("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", market.publisher.as_str())];
    let (_, component, _) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == "echo").unwrap();
    ok(nexus(&["publish", component, "--manifest", manifest.to_str().unwrap(), "--no-sign"], &publisher));
    std::fs::remove_file(&manifest).unwrap();
    let unattended = nexus(&["installs", "upgrade", &id], &env);
    assert_eq!(unattended.status.code(), Some(2), "{}", stderr(&unattended));
    assert!(stderr(&unattended).contains("nexus-labs/echo 0.1.0 → 0.1.1"), "{}", stderr(&unattended));
    assert!(stderr(&unattended).contains("kv      Remembers the last payload"), "{}", stderr(&unattended));
    assert_eq!(ok(nexus(&["installs", "upgrade", &id, "--yes"], &env)), format!("{id} runs 0.1.1 now\n"));
    let nothing = nexus(&["installs", "upgrade", &id, "--yes"], &env);
    assert!(stderr(&nothing).contains("waits for no upgrade"), "{}", stderr(&nothing));

    // Resume refuses what is not paused; uninstall keeps history.
    let resume = nexus(&["installs", "resume", &id], &env);
    assert!(stderr(&resume).contains("[not_paused]"), "{}", stderr(&resume));
    let gone = ok(nexus(&["installs", "uninstall", &id], &env));
    assert!(gone.starts_with(&format!("uninstalled {id} (nexus-labs/echo)")), "{gone}");
    let history = ok(nexus(&["installs", "--all"], &env));
    assert!(history.contains("uninstalled"), "{history}");
}

#[test]
fn reviews_replies_and_listing_text_through_the_cli() {
    let market = super::common::RealMarket::new();
    let server = market.serve(&[], &[]);
    market.publish(&server.url, "echo");
    let consent = serde_json::json!({ "capabilities": ["config"], "hosts": [] });
    let (tenant, install) = super::common::runtime().block_on(market.tenant_with_install(
        &server.url,
        "globex",
        "nexus-labs/echo",
        consent,
        serde_json::json!({}),
    ));
    let as_ = |token: &str, url: &str| [("NEXUS_REGISTRY", url.to_string()), ("NEXUS_TOKEN", token.to_string())];
    let run = |args: &[&str], env: &[(&str, String); 2]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        nexus(args, &env)
    };
    let sent = run(&["events", "send", "--type", "t.x", "--payload", "{}"], &as_(&tenant, &server.url));
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    let early =
        run(&["reviews", "write", "nexus-labs/echo", "--rating", "5", "--title", "Great"], &as_(&tenant, &server.url));
    assert_eq!(early.status.code(), Some(2));
    assert!(
        stderr(&early).contains("[review_not_allowed] — an organization reviews a plugin after a day of using it"),
        "{}",
        stderr(&early)
    );
    let empty = run(&["reviews", "list", "nexus-labs/echo"], &as_(&tenant, &server.url));
    assert_eq!(stdout(&empty), "nexus-labs/echo: no ratings yet\nno reviews yet\n");
    drop(server);

    // Two days on (the marketplace's clock moved), globex may review what it ran.
    let server = market.serve(&[], &[("NEXUS_CLOCK_OFFSET_MS", "172800000")]);
    let tenant_env = as_(&tenant, &server.url);
    let body = "Line one\noutcome   ok";
    let written =
        run(&["reviews", "write", "nexus-labs/echo", "--rating", "4", "--title", "Solid", "--body", body], &tenant_env);
    assert_eq!(written.status.code(), Some(0), "{}", stderr(&written));
    let review = stdout(&written).split_whitespace().next().unwrap().to_string();
    assert_eq!(stdout(&written), format!("{review} ★★★★☆ of nexus-labs/echo (version 0.1.0): published\n"));
    let again = run(&["reviews", "write", "nexus-labs/echo", "--rating", "3", "--title", "Solid enough"], &tenant_env);
    assert_eq!(
        stdout(&again),
        format!("{review} ★★★☆☆ of nexus-labs/echo (version 0.1.0): updated\n"),
        "{}",
        stderr(&again)
    );

    let publisher_env = as_(&market.publisher, &server.url);
    let replied = run(&["reviews", "reply", &review, "--body", "Thanks!"], &publisher_env);
    assert_eq!(
        stdout(&replied),
        format!("replied to {review} (its author and every reader see it)\n"),
        "{}",
        stderr(&replied)
    );
    let listed = run(&["reviews", "list", "nexus-labs/echo"], &tenant_env);
    let out = stdout(&listed);
    assert!(out.starts_with("nexus-labs/echo: 3.0 out of 5 from 1 review(s)\n\n"), "{out}");
    assert!(out.contains("    Solid enough\n"), "{out}");
    assert!(out.ends_with("  reply from the publisher:\n    Thanks!\n"), "{out}");
    let operator_env = as_(&market.operator, &server.url);
    let hidden = run(&["reviews", "hide", &review, "--reason", "Test"], &operator_env);
    assert_eq!(stdout(&hidden), format!("hid {review}; its author sees why: Test\n"), "{}", stderr(&hidden));
    let shown = run(&["reviews", "hide", &review, "--show"], &operator_env);
    assert_eq!(stdout(&shown), format!("{review} is shown again\n"));

    let description = market.data.join("listing.md");
    std::fs::write(&description, "Echoes **everything**.").unwrap();
    let edited = run(
        &[
            "listing",
            "edit",
            "nexus-labs/echo",
            "--description-file",
            description.to_str().unwrap(),
            "--support",
            "mailto:help@nexus-labs.example",
        ],
        &publisher_env,
    );
    assert_eq!(
        stdout(&edited),
        "nexus-labs/echo's listing text is updated until its next version brings its own\n",
        "{}",
        stderr(&edited)
    );
    let nothing = run(&["listing", "edit", "nexus-labs/echo"], &publisher_env);
    assert!(stderr(&nothing).contains("nothing to change"), "{}", stderr(&nothing));
    let deleted = run(&["reviews", "delete", "nexus-labs/echo"], &tenant_env);
    assert_eq!(stdout(&deleted), "deleted your organization's review of nexus-labs/echo\n", "{}", stderr(&deleted));
    let _ = install;
}
