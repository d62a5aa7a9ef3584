//! The builder's path through the real binary, in each language: `nexus new`, `nexus build`,
//! `nexus plugin check`, `nexus plugin test`, publish to a running server, install as a
//! tenant, an event, a version that asks for one more capability, consent, and the event
//! again. Python and JavaScript toolchains come from PyPI and npm; without python3 or npm on
//! the machine those tests say so and stop (`.ci/run` sets `NEXUS_REQUIRE_GUEST_TOOLCHAINS`,
//! so CI fails instead).

use std::path::{Path, PathBuf};
use std::process::Output;

use super::common::{RealMarket, issued_token, nexus};

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Where builds and compiled components are kept between test runs.
pub(super) fn cache(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("builder").join(name)
}

/// The environment of a builder's commands: one cargo target folder and one component
/// cache for every project, kept between runs.
pub(super) fn builder_env() -> Vec<(&'static str, String)> {
    vec![
        ("CARGO_TARGET_DIR", cache("cargo-target").display().to_string()),
        ("XDG_CACHE_HOME", cache("xdg-cache").display().to_string()),
    ]
}

fn run_in(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let env = builder_env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"));
    command.args(args).current_dir(dir).env_remove("NEXUS_TOKEN").stdin(std::process::Stdio::null());
    for (key, value) in all {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn ok_in(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> String {
    let output = run_in(dir, args, extra);
    assert_eq!(output.status.code(), Some(0), "nexus {args:?} in {}:\n{}", dir.display(), text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether the language's toolchain can run here; `None` with the reason when it cannot.
pub(super) fn toolchain(lang: &str) -> Option<()> {
    let (program, args): (&str, &[&str]) = match lang {
        "python" => ("python3", &["-m", "venv", "--help"]),
        "js" => ("npm", &["--version"]),
        _ => return Some(()),
    };
    let found = std::process::Command::new(program).args(args).output().is_ok_and(|o| o.status.success());
    if found {
        return Some(());
    }
    let message = format!("{lang}: `{program}` is not usable here, so its builder tests do not run");
    assert!(std::env::var_os("NEXUS_REQUIRE_GUEST_TOOLCHAINS").is_none(), "{message}");
    eprintln!("skipped: {message} (install it, or see docs/builders.md)");
    None
}

/// Python and JavaScript projects share one toolchain install per language: the venv and
/// node_modules `nexus build` would create in each are links to one kept between runs.
pub(super) fn share_toolchain(project: &Path, lang: &str) {
    let shared = match lang {
        "python" => {
            let venv = cache("python-venv");
            if !venv.join("bin").join("componentize-py").exists() {
                assert!(
                    std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status().unwrap().success()
                );
                let status = std::process::Command::new(venv.join("bin").join("pip"))
                    .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                    .arg(project.join("requirements.txt"))
                    .status()
                    .unwrap();
                assert!(status.success(), "pip install -r requirements.txt");
            }
            venv
        }
        "js" => {
            // Named node_modules: Node resolves a linked package's own imports from its real path.
            let root = cache("js-toolchain");
            if !root.join("node_modules").join(".package-lock.json").exists() {
                std::fs::create_dir_all(&root).unwrap();
                for file in ["package.json", "package-lock.json"] {
                    std::fs::copy(project.join(file), root.join(file)).unwrap();
                }
                let status = std::process::Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--silent"])
                    .current_dir(&root)
                    .status()
                    .unwrap();
                assert!(status.success(), "npm ci");
            }
            root.join("node_modules")
        }
        _ => return,
    };
    let link = project.join(if lang == "python" { ".venv" } else { "node_modules" });
    if !link.exists() {
        std::os::unix::fs::symlink(&shared, link).unwrap();
    }
}

/// `nexus new` in `parent`, ready to build.
fn new_project(parent: &Path, name: &str, lang: &str, template: &str) -> PathBuf {
    let created =
        ok_in(parent, &["new", name, "--lang", lang, "--template", template, "--publisher", "nexus-labs"], &[]);
    assert!(created.starts_with(&format!("created ./{name} ({lang} plugin from the {template} template")), "{created}");
    let project = parent.join(name);
    share_toolchain(&project, lang);
    project
}

/// Edits a project file: each `from` must be there.
fn edit(path: &Path, replacements: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{} has no `{from}`", path.display());
        text = text.replacen(from, to, 1);
    }
    std::fs::write(path, text).unwrap();
}

/// What each language's transform code needs to report one `contacts` unit per event.
fn report_usage(project: &Path, lang: &str) {
    match lang {
        "rust" => edit(
            &project.join("src/lib.rs"),
            &[(
                "    log::info(&format!(\"normalized",
                "    nexus_plugin_sdk::usage::report(\"contacts\", 1)?;\n    log::info(&format!(\"normalized",
            )],
        ),
        "python" => edit(
            &project.join("src/app.py"),
            &[
                ("from wit_world.imports import config\n", "from wit_world.imports import config, usage\n"),
                ("    sdk.info(f\"normalized", "    usage.report(\"contacts\", 1)\n    sdk.info(f\"normalized"),
            ],
        ),
        _ => edit(
            &project.join("src/index.js"),
            &[
                (
                    "import * as log from './nexus-log.js';",
                    "import { report } from 'nexus:plugin/usage@1.0.0';\n\nimport * as log from './nexus-log.js';",
                ),
                ("  log.info(`normalized", "  report('contacts', 1);\n  log.info(`normalized"),
            ],
        ),
    }
}

fn bump_code_version(project: &Path, lang: &str) {
    match lang {
        "rust" => edit(&project.join("Cargo.toml"), &[("version = \"0.1.0\"", "version = \"0.1.1\"")]),
        "python" => edit(&project.join("src/app.py"), &[("VERSION = \"0.1.0\"", "VERSION = \"0.1.1\"")]),
        _ => edit(&project.join("src/index.js"), &[("const VERSION = '0.1.0';", "const VERSION = '0.1.1';")]),
    }
}

const CONTACT: &str = r#"{"email":" Ada@Example.com ","name":"Ada King Lovelace","phone":"+44 20 7946 0000"}"#;
const NORMALIZED: &str = r#"{"country":"GB","email":"ada@example.com","first_name":"Ada","last_name":"King Lovelace","phone":"442079460000"}"#;

/// The whole loop for one language.
fn builder_loop(lang: &str) {
    if toolchain(lang).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = format!("contact-clean-{lang}");
    let project = new_project(dir.path(), &name, lang, "transform");

    let built = ok_in(&project, &["build"], &[]);
    assert!(built.starts_with("built     "), "{built}");
    let checked = ok_in(&project, &["plugin", "check"], &[]);
    assert!(
        checked.starts_with(&format!("ok        nexus-labs/{name}@0.1.0 ("))
            && checked.contains("capabilities: log, config"),
        "{checked}"
    );
    let tested = ok_in(&project, &["plugin", "test"], &[]);
    assert!(tested.contains("5 passed, 0 failed, of 5 cases"), "{tested}");

    // Publish to a running marketplace; a tenant installs it and sends an event.
    let market = RealMarket::new();
    let server = market.serve(&[], &[]);
    let publisher = [("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", market.publisher.as_str())];
    let published = ok_in(&project, &["publish", "--no-sign"], &publisher);
    assert!(published.starts_with(&format!("published nexus-labs/{name}@0.1.0 (")), "{published}");
    let operator = [("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", market.operator.as_str())];
    let tenant = issued_token(&nexus(&["tenant", "create", "globex"], &operator));
    let as_tenant = [("NEXUS_REGISTRY", server.url.as_str()), ("NEXUS_TOKEN", tenant.as_str())];
    let id = format!("nexus-labs/{name}");
    let installed = ok_in(&project, &["install", &id, "--yes", "--config", "default-country=gb"], &as_tenant);
    let install = installed.lines().find_map(|l| l.strip_prefix("id        ")).unwrap().to_string();
    let send = |event: &str| {
        let args = ["events", "send", "--type", "contact.updated", "--id", event, "--payload", CONTACT, "--json"];
        let receipt: serde_json::Value = serde_json::from_str(&ok_in(&project, &args, &as_tenant)).unwrap();
        let deliveries = receipt["deliveries"].as_array().unwrap().clone();
        assert_eq!(deliveries.len(), 1, "{receipt}");
        deliveries[0].clone()
    };
    let first = send("evt-1");
    assert_eq!((first["outcome"].as_str(), first["version"].as_str()), (Some("ok"), Some("0.1.0")), "{first}");
    assert_eq!(
        first["data"].as_str().map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap()),
        Some(serde_json::from_str(NORMALIZED).unwrap()),
        "{first}"
    );

    // Version 0.1.1 reports usage: one more capability. A manifest bumped without the code
    // is refused before upload, naming both versions.
    edit(
        &project.join("nexus.toml"),
        &[
            ("version = \"0.1.0\"", "version = \"0.1.1\""),
            ("[[pricing]]", "[capabilities.usage]\nreason = \"Counts the contacts normalized\"\n\n[[pricing]]"),
        ],
    );
    ok_in(&project, &["plugin", "wit"], &[]);
    report_usage(&project, lang);
    ok_in(&project, &["build"], &[]);
    let mismatch = run_in(&project, &["plugin", "check"], &[]);
    assert_eq!(mismatch.status.code(), Some(1), "{}", text(&mismatch));
    assert!(
        text(&mismatch).contains("describe() reports version `0.1.0` (nexus.toml says `0.1.1`)")
            && text(&mismatch).contains("[describe_mismatch]"),
        "{}",
        text(&mismatch)
    );
    bump_code_version(&project, lang);
    ok_in(&project, &["build"], &[]);
    let checked = ok_in(&project, &["plugin", "check"], &[]);
    assert!(checked.contains("capabilities: log, config, usage"), "{checked}");
    let published = ok_in(&project, &["publish", "--no-sign"], &publisher);
    assert!(published.starts_with(&format!("published nexus-labs/{name}@0.1.1 (")), "{published}");
    assert!(
        published.ends_with(
            "installs  0 moved to it, 1 waiting for their tenant's consent, 0 left behind (their requirement excludes it)\n"
        ),
        "{published}"
    );

    // The install keeps 0.1.0 until its tenant consents to what is new.
    assert_eq!(send("evt-2")["version"], "0.1.0");
    let upgraded = ok_in(&project, &["installs", "upgrade", &install, "-y"], &as_tenant);
    assert_eq!(upgraded, format!("{install} runs 0.1.1 now\n"));
    let second = send("evt-3");
    assert_eq!((second["outcome"].as_str(), second["version"].as_str()), (Some("ok"), Some("0.1.1")), "{second}");
    let invocations = ok_in(&project, &["installs", "invocations", &install, "--json"], &as_tenant);
    let invocations: serde_json::Value = serde_json::from_str(&invocations).unwrap();
    let usage: Vec<(String, serde_json::Value)> = invocations["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["event_id"].as_str().unwrap().to_string(), i["usage"].clone()))
        .collect();
    assert!(usage.contains(&("evt-3".into(), serde_json::json!({"contacts": 1}))), "{invocations}");
    assert!(usage.contains(&("evt-1".into(), serde_json::json!({}))), "{invocations}");
    // The record keeps the plugin's log lines for its tenant.
    let logged: Vec<&str> = invocations["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["event_id"] == "evt-3")
        .flat_map(|i| i["logs"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap()))
        .collect();
    assert_eq!(logged, ["normalized the contact of event evt-3"], "{invocations}");

    // The publisher sees how each version does, without any tenant's data.
    let health = ok_in(&project, &["plugin", "health", &id, "--json"], &publisher);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let figures: Vec<(&str, i64, i64, i64)> = health
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap(),
                v["invocations"].as_i64().unwrap(),
                v["ok"].as_i64().unwrap(),
                v["error_rate_bp"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(figures, [("0.1.1", 1, 1, 0), ("0.1.0", 2, 2, 0)], "{health}");
    assert!(!health.to_string().contains("ada@example.com"), "{health}");
}

#[test]
fn a_rust_builder_goes_from_nothing_to_an_upgraded_install() {
    builder_loop("rust");
}

#[test]
fn a_python_builder_goes_from_nothing_to_an_upgraded_install() {
    builder_loop("python");
}

#[test]
fn a_javascript_builder_goes_from_nothing_to_an_upgraded_install() {
    builder_loop("js");
}

/// Copies a sample project without what its builds and toolchains left in it.
fn copy_project(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["node_modules", ".venv", "dist", "target", "__pycache__"].iter().any(|skip| name == *skip) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_project(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

#[test]
fn every_template_and_sample_builds_and_passes_its_events_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let mut projects = Vec::new();
    for lang in ["rust", "python", "js"] {
        if toolchain(lang).is_none() {
            continue;
        }
        for template in ["webhook", "metered"] {
            projects.push(new_project(dir.path(), &format!("{template}-{lang}"), lang, template));
        }
        let sample = match lang {
            "python" => Some("python/lead-scorer"),
            "js" => Some("js/ticket-router"),
            _ => None,
        };
        if let Some(sample) = sample {
            let copy = dir.path().join(sample.replace('/', "-"));
            copy_project(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample-plugins").join(sample), &copy);
            share_toolchain(&copy, lang);
            projects.push(copy);
        }
    }
    for project in &projects {
        ok_in(project, &["build"], &[]);
        let tested = ok_in(project, &["plugin", "test"], &[]);
        let cases = std::fs::read_dir(project.join("events")).unwrap().count();
        assert!(
            tested.contains(&format!("{cases} passed, 0 failed, of {cases} cases")),
            "{}: {tested}",
            project.display()
        );
        // Local commands compile with Winch; the marketplace with Cranelift. Each language's
        // metered template gives the same results both ways, case by case.
        if project.file_name().is_some_and(|name| name.to_string_lossy().starts_with("metered-")) {
            let cranelift = ok_in(project, &["plugin", "test"], &[("NEXUS_COMPILER", "cranelift")]);
            assert_eq!(cranelift, tested, "{}: Winch and Cranelift disagree", project.display());
        }
    }
}

#[test]
fn builder_commands_refuse_what_publish_would_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let bad_name = run_in(dir.path(), &["new", "Bad_Name"], &[]);
    assert_eq!(bad_name.status.code(), Some(2), "{}", text(&bad_name));
    assert!(text(&bad_name).contains("`my-publisher/Bad_Name` is not a valid plugin id"), "{}", text(&bad_name));
    let project = new_project(dir.path(), "words", "rust", "metered");
    let again = run_in(dir.path(), &["new", "words"], &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("./words already exists; choose another name or --dir"), "{}", text(&again));
    let unbuilt = run_in(&project, &["plugin", "check"], &[]);
    assert_eq!(unbuilt.status.code(), Some(2));
    assert!(
        text(&unbuilt).contains("has no build newer than its sources: run `nexus build` there first"),
        "{}",
        text(&unbuilt)
    );

    // A case's KV data, log lines and sink requests are compared exactly, and each
    // difference is named.
    ok_in(&project, &["build"], &[]);
    let wrong = project.join("events/zz-wrong.json");
    std::fs::write(
        &wrong,
        r#"{"event": {"type": "document.submitted", "payload": {"text": "a b"}},
            "kv": {"total-words": "1"},
            "expect": {"outcome": "ok", "kv": {"total-words": "2", "other": "x"},
                       "logs": [{"level": "info", "message": "nothing"}],
                       "sink_requests": [{"method": "GET", "path": "/x"}]}}"#,
    )
    .unwrap();
    let failed = run_in(&project, &["plugin", "test", "--only", "zz-wrong"], &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    for line in [
        "FAILED  zz-wrong",
        r#"kv "other" is absent, expected "x""#,
        r#"kv "total-words" is "3", expected "2""#,
        ", expected 1 line(s)",
        "the sink received 0 request(s) [], expected 1",
        "0 passed, 1 failed, of 1 cases",
    ] {
        assert!(text(&failed).contains(line), "{line:?} missing from:\n{}", text(&failed));
    }
    std::fs::remove_file(&wrong).unwrap();

    // A case with a typo is named by file and line, with what a case may hold.
    let typo = project.join("events/zz-typo.json");
    std::fs::write(&typo, "{\n  \"event\": {\"type\": \"document.submitted\"},\n  \"expekt\": {}\n}\n").unwrap();
    let failed = run_in(&project, &["plugin", "test", "--only", "zz-typo"], &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let expected = "./events/zz-typo.json:3: not a valid case: unknown field `expekt`";
    assert!(text(&failed).contains(expected), "{expected:?} missing from:\n{}", text(&failed));
    assert!(text(&failed).contains("a case has `event`, `expect` and optionally"), "{}", text(&failed));
    std::fs::remove_file(&typo).unwrap();

    // A manifest that does not parse, or breaks a rule, is named by file and line, with the fix.
    let manifest = project.join("nexus.toml");
    let good = std::fs::read_to_string(&manifest).unwrap();
    let line_of = |start: &str| good.lines().position(|l| l.starts_with(start)).unwrap() + 1;
    std::fs::write(&manifest, good.replacen("unit-price = \"0.01\"", "unit-price = 1", 1)).unwrap();
    let refused = run_in(&project, &["build"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let expected = format!(
        "{}:{}: manifest field pricing[1].unit-price is invalid: must be a decimal string in USD, such as \"9.99\"; \
         got 1 [manifest_invalid_field]; fix it there",
        manifest.canonicalize().unwrap().display(),
        line_of("unit-price")
    );
    assert!(text(&refused).contains(&expected), "{expected:?} missing from:\n{}", text(&refused));
    std::fs::write(&manifest, good.replacen("summary = \"", "summary = = \"", 1)).unwrap();
    let refused = run_in(&project, &["build"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let expected = format!(
        "{}:{}: manifest syntax error: line {}",
        manifest.canonicalize().unwrap().display(),
        line_of("summary"),
        line_of("summary")
    );
    assert!(text(&refused).contains(&expected), "{expected:?} missing from:\n{}", text(&refused));
    // The older price vocabulary still builds and checks, with one warning per use.
    let older = good.replacen("model = \"usage\"", "model = \"per-unit\"", 1).replacen(
        "unit-price = \"0.01\"",
        "unit-amount-minor = 1",
        1,
    );
    std::fs::write(&manifest, older).unwrap();
    ok_in(&project, &["build"], &[]);
    let checked = run_in(&project, &["plugin", "check"], &[]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    for warning in [
        "warning: pricing[1].model \"per-unit\" is deprecated: write model = \"usage\"",
        "warning: pricing[1].unit-amount-minor is deprecated: write unit-price = \"0.01\"",
    ] {
        assert!(text(&checked).contains(warning), "{warning:?} missing from:\n{}", text(&checked));
    }
    std::fs::write(&manifest, &good).unwrap();
    ok_in(&project, &["build"], &[]);

    // Python and JavaScript import their whole world: a world.wit that imports what
    // nexus.toml does not declare is refused before the toolchain runs, with the fix.
    let python = new_project(dir.path(), "narrow", "python", "transform");
    edit(&python.join("wit/world.wit"), &[("    import log;\n", "    import log;\n    import http;\n")]);
    let mismatch = run_in(&python, &["build"], &[]);
    assert_eq!(mismatch.status.code(), Some(2), "{}", text(&mismatch));
    assert!(
        text(&mismatch).contains(
            "does not match nexus.toml: it imports http but nexus.toml declares no capability for it (the registry \
             would refuse the component). Run `nexus plugin wit` to rewrite it from nexus.toml"
        ),
        "{}",
        text(&mismatch)
    );
    ok_in(&python, &["plugin", "wit"], &[]);
    assert!(!std::fs::read_to_string(python.join("wit/world.wit")).unwrap().contains("import http;"));

    // The code calls kv, so a manifest that stops declaring it is refused as publish would.
    edit(
        &project.join("nexus.toml"),
        &[("[capabilities.kv]\nreason = \"Keeps the running total of words counted (total-words)\"\n\n", "")],
    );
    // The manifest is a source too: a build older than it is not checked.
    ok_in(&project, &["build"], &[]);
    let undeclared = run_in(&project, &["plugin", "check"], &[]);
    assert_eq!(undeclared.status.code(), Some(1), "{}", text(&undeclared));
    assert!(
        text(&undeclared).contains(
            "refused   the component imports nexus:plugin/kv but the manifest does not declare capability kv \
             [undeclared_capability]"
        ),
        "{}",
        text(&undeclared)
    );
    let not_a_project = run_in(dir.path(), &["build"], &[]);
    assert_eq!(not_a_project.status.code(), Some(2));
    assert!(
        text(&not_a_project).contains("has no nexus.toml: run this in a plugin project"),
        "{}",
        text(&not_a_project)
    );
}

/// `nexus dev` as a builder leaves it running: every case passes, a change that breaks one
/// is tested again at once and named, and undoing it passes again; the build's own writes
/// (cargo's lockfile) start no round of their own.
#[test]
fn nexus_dev_tests_again_on_every_change() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let temp = tempfile::tempdir().unwrap();
    let project = new_project(temp.path(), "dev-loop", "rust", "transform");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"))
        .arg("dev")
        .current_dir(&project)
        .envs(builder_env())
        .env_remove("NEXUS_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut next = |prefix: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                    assert!(!line.starts_with("dev: changed"), "an unasked round before {prefix:?}: {seen:#?}");
                }
                Err(_) => panic!("`nexus dev` never printed {prefix:?}: {seen:#?}"),
            }
        }
    };
    let passing = next("dev: all ");
    assert_eq!(passing, "dev: all 5 cases pass");
    next("dev: watching");
    // A case that cannot pass: the full-contact event expecting other data.
    let mut case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("events/full-contact.json")).unwrap()).unwrap();
    case["expect"]["data"] = serde_json::json!({ "never": true });
    std::fs::write(project.join("events/wrong-data.json"), case.to_string()).unwrap();
    next("dev: changed, running again");
    assert_eq!(next("dev: 1 case(s) fail"), "dev: 1 case(s) fail: wrong-data");
    next("dev: watching");
    std::fs::remove_file(project.join("events/wrong-data.json")).unwrap();
    next("dev: changed, running again");
    assert_eq!(next("dev: all "), "dev: all 5 cases pass");
    next("dev: watching");
    let _ = child.kill();
    let _ = child.wait();
}
