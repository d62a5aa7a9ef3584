//! `nexus plugin run`: outcomes, exit codes and error messages.

use std::process::{Command, Output};

use nexus_sample_plugins::{ECHO, PANICKER, TAX_CALCULATOR, TERMINAL_FORGER};

fn nexus(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nexus")).args(args).arg("--cache-dir").arg(cache).output().expect("run nexus")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_successful_run_prints_the_outcome_and_exits_zero() {
    let cache = tempfile::tempdir().unwrap();
    let args =
        ["plugin", "run", ECHO, "--event", r#"{"type":"ping","id":"e1","payload":{"n":1}}"#, "--config", "prefix=>"];
    let output = nexus(&args, cache.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("(nexus:plugin@1.0.0), compiled in"), "{text}");
    assert!(text.contains("outcome   ok\ndata      >{\"n\":1}\n"), "{text}");
    assert!(text.contains("0 HTTP request(s), 0 KV write(s) committed"), "{text}");

    // The second run takes the precompiled component from the cache folder.
    let again = nexus(&args, cache.path());
    assert!(stdout(&again).contains("loaded from the precompiled cache in"), "{}", stdout(&again));
}

#[test]
fn plugin_text_is_printed_with_control_characters_escaped() {
    let cache = tempfile::tempdir().unwrap();
    let output = nexus(&["plugin", "run", TERMINAL_FORGER, "--event", r#"{"type":"x"}"#], cache.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for raw in ['\u{1b}', '\r', '\u{7}', '\u{8}'] {
        assert!(!text.contains(raw), "{raw:?} reached the terminal: {text:?}");
    }
    assert!(text.contains("data      \\u{1b}]0;pwned\\u{7}done\\u{8}\n"), "{text}");
    assert!(text.contains("action    email.send\\u{1b}[31m {\"to\":\"a\\u{7}\"}\n"), "{text}");
    assert!(text.contains("info  \\u{1b}[2J\\u{1b}[Hscreen cleared\n"), "{text}");
    assert!(text.contains("info  line one\\rOVERWRITTEN\n"), "{text}");
    assert!(text.contains("info  ok\\nfake: outcome ok\n"), "{text}");
    assert!(!text.lines().any(|line| line.starts_with("fake:")), "{text}");
}

#[test]
fn json_output_carries_the_result_and_the_report() {
    let cache = tempfile::tempdir().unwrap();
    let output = nexus(&["plugin", "run", PANICKER, "--event", r#"{"type":"x","id":"e9"}"#, "--json"], cache.path());
    assert_eq!(output.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(document["result"]["error"]["code"], "panicked");
    assert_eq!(document["result"]["error"]["message"], "plugin gave up on event e9");
    assert_eq!(document["report"]["outcome"], "panicked");
    assert_eq!(document["report"]["contract"], "1.0");
}

#[test]
fn kv_dir_keeps_state_between_runs() {
    let (cache, kv) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let kv_dir = kv.path().to_str().unwrap();
    let run = |id: &str| {
        let event = format!(
            r#"{{"type":"order.created","id":"{id}","payload":{{"order_id":"o","amount_minor":1000,"currency":"EUR","region":"DE"}}}}"#
        );
        let args = [
            "plugin",
            "run",
            TAX_CALCULATOR,
            "--event",
            &event,
            "--config",
            "rates=DE=1900",
            "--kv-dir",
            kv_dir,
            "--json",
        ];
        let output = nexus(&args, cache.path());
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        let data: serde_json::Value = serde_json::from_str(document["result"]["ok"]["data"].as_str().unwrap()).unwrap();
        data["region_tax_total_minor"].as_i64().unwrap()
    };
    assert_eq!(run("a"), 190);
    assert_eq!(run("b"), 380);
    assert!(kv.path().join("local").join("local.json").exists());
}

#[test]
fn bad_input_gets_a_message_and_exit_code_two() {
    let cache = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["plugin", "run", ECHO, "--event", "{not json"], "--event must be JSON like"),
        (&["plugin", "run", ECHO, "--event", r#"{"type":"x","bogus":1}"#], "unknown field `bogus`"),
        (&["plugin", "run", "/nonexistent.wasm", "--event", r#"{"type":"x"}"#], "cannot read /nonexistent.wasm"),
        (&["plugin", "run", "Cargo.toml", "--event", r#"{"type":"x"}"#], "was refused [not_a_component]"),
        (&["plugin", "run", ECHO, "--event", r#"{"type":"x"}"#, "--deny", "files"], "unknown capability `files`"),
    ];
    for (args, message) in cases {
        let output = nexus(args, cache.path());
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(message), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn the_demo_runs_every_plugin_with_the_expected_outcomes() {
    let output = Command::new(env!("CARGO_BIN_EXE_nexus")).arg("demo").output().expect("run demo");
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}\n{}", stderr(&output));
    assert!(text.contains("all at once: 200/200 echo invocations served and 30/30 hostile invocations contained"));
    assert!(text.contains("demo finished: every outcome as expected"));
    for (name, _) in nexus_sample_plugins::ALL {
        assert!(text.contains(&format!("── {name} · ")), "{name} missing from the demo");
    }
}
