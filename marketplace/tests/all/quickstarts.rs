//! The quickstarts (`docs/quickstart-{rust,python,js}.md`) run line by line exactly as a
//! builder types them, with the binary under test as `nexus` on the PATH: `nexus new`,
//! build, test, `nexus dev --marketplace &` (a local marketplace, the working copy published
//! as a development version and installed), an event whose delivery the dev loop prints
//! live, the partner's usage so far, and the release. Only the install line is not run (the
//! binary is the one built for the tests).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::builder::{builder_env, share_toolchain, toolchain};

/// The lines of the quickstart's shell blocks after the first (the install), without
/// comments and blank lines.
fn commands(markdown: &str) -> Vec<String> {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        match (inside, line.trim()) {
            (false, "```sh") => {
                inside = true;
                blocks.push(Vec::new());
            }
            (true, "```") => inside = false,
            (true, text) if !text.is_empty() && !text.starts_with('#') => {
                blocks.last_mut().unwrap().push(text.to_string())
            }
            _ => {}
        }
    }
    assert!(blocks.len() >= 2, "a quickstart has the install block, then the rest");
    assert!(blocks[0][0].contains("cargo install --path marketplace"), "{:?}", blocks[0]);
    blocks.into_iter().skip(1).flatten().collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Shell {
    cwd: PathBuf,
    env: Vec<(String, String)>,
    background: Option<(std::process::Child, mpsc::Receiver<String>)>,
    seen: Vec<String>,
}

impl Shell {
    fn command(&self, line: &str) -> std::process::Command {
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(line).current_dir(&self.cwd).stdin(std::process::Stdio::null());
        command.env_remove("NEXUS_TOKEN").env_remove("NEXUS_PROFILE").env_remove("NEXUS_REGISTRY");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs a line to its end; its stdout.
    fn run(&self, line: &str) -> String {
        let output = self.command(line).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "`{line}` in {} failed:\n{text}", self.cwd.display());
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn start(&mut self, line: &str) {
        let mut child = self
            .command(&format!("exec {line}"))
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
        self.background = Some((child, received));
    }

    /// The next line of the background command that starts with `prefix`; a round that
    /// ends (`dev: watching`) before the round's own line it waits for fails at once.
    fn expect(&mut self, prefix: &str) -> String {
        let (_, received) = self.background.as_ref().expect("a command runs in the background");
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                    assert!(
                        !(prefix.starts_with("dev: ") && line.starts_with("dev: watching")),
                        "the round ended before {prefix:?}:\n{}",
                        self.seen.join("\n")
                    );
                }
                Err(_) => panic!("the background command never printed {prefix:?}:\n{}", self.seen.join("\n")),
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.background {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_quickstart(lang: &str, markdown: &str) {
    let temp = tempfile::tempdir().unwrap();
    let bin = temp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nexus"), bin.join("nexus")).unwrap();
    let work = temp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut env: Vec<(String, String)> = builder_env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    env.push(("PATH".into(), path));
    env.push(("NEXUS_CONFIG_DIR".into(), temp.path().join("config").display().to_string()));
    env.push(("NEXUS_DEV_PORT".into(), free_port().to_string()));
    let mut shell = Shell { cwd: work, env, background: None, seen: Vec::new() };
    let lines = commands(markdown);
    let mut ran = Vec::new();
    for line in &lines {
        if let Some(folder) = line.strip_prefix("cd ") {
            shell.cwd = shell.cwd.join(folder.trim());
            share_toolchain(&shell.cwd, lang);
        } else if let Some(background) = line.strip_suffix('&') {
            shell.start(background.trim());
            assert_eq!(shell.expect("dev: all "), "dev: all 6 cases pass", "{lang}");
            let published = shell.expect("dev: published ");
            assert_eq!(published, "dev: published my-publisher/word-count 0.1.0-dev.1", "{lang}");
            let runs = shell.expect("dev: ins_");
            assert!(
                runs.ends_with(" runs 0.1.0-dev.1 for the development tenant; deliveries show below as they happen")
            );
        } else {
            let out = shell.run(line);
            check(lang, line, &out, &mut shell);
        }
        ran.push(line.clone());
    }
    assert_eq!(ran.len(), 8, "{lang}: every line of the quickstart ran: {ran:#?}");
    if lang == "rust" {
        again(&mut shell);
    }
}

/// A second `nexus dev --marketplace` on the same project, with its memory of the install
/// gone (as on another machine): it finds the tenant's live install and moves it to the next
/// development version instead of installing again.
fn again(shell: &mut Shell) {
    let first = shell.seen.iter().find(|l| l.starts_with("dev: ins_")).unwrap().clone();
    let install = first.split_whitespace().nth(1).unwrap().to_string();
    if let Some((mut child, _)) = shell.background.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let state = shell.cwd.join(".nexus/marketplace/dev.json");
    let mut remembered: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(remembered["installs"]["my-publisher/word-count"], install.as_str());
    remembered["installs"] = serde_json::json!({});
    std::fs::write(&state, remembered.to_string()).unwrap();
    shell.start("nexus dev --marketplace --plan per-word");
    assert_eq!(shell.expect("dev: published "), "dev: published my-publisher/word-count 0.1.0-dev.2");
    assert!(shell.expect("dev: ins_").starts_with(&format!("dev: {install} runs 0.1.0-dev.2 ")), "{:#?}", shell.seen);
}

/// What each step of the quickstart must have done.
fn check(lang: &str, line: &str, out: &str, shell: &mut Shell) {
    let words = line.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    match words.as_str() {
        "nexus new word-count" | "nexus build" => {}
        "nexus plugin test" => assert!(out.contains("6 passed, 0 failed, of 6 cases"), "{lang}: {out}"),
        "nexus events send" => {
            assert!(out.contains("ok"), "{lang}: {out}");
            let delivery = shell.expect("event document.submitted ");
            assert!(delivery.contains(" -> ok in "), "{lang}: {delivery}");
            assert!(delivery.ends_with("(0.1.0-dev.1)"), "{lang}: {delivery}");
            assert_eq!(shell.expect("    usage "), "    usage  words 4", "{lang}");
            assert_eq!(shell.expect("    kv set"), "    kv set     total-words = 4", "{lang}");
            assert_eq!(
                shell.expect("    charge "),
                "    charge +0.00 USD this period, 0.00 USD so far (charged when the period ends; `nexus usage --profile dev`)",
                "{lang}"
            );
        }
        "nexus usage --profile" => {
            assert!(
                out.contains("total USD: 1 install(s), 4 units, 0 billable, 0.00 USD if every period ended now"),
                "{lang}: {out}"
            );
        }
        "nexus publish --profile" => assert!(out.contains("published my-publisher/word-count@0.1.0 "), "{lang}: {out}"),
        other => panic!("{lang}: the quickstart has a step this test does not check: {other:?} ({line})"),
    }
}

#[test]
fn every_quickstart_runs_as_written() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    for lang in ["rust", "python", "js"] {
        if toolchain(lang).is_none() {
            continue;
        }
        let markdown = std::fs::read_to_string(docs.join(format!("quickstart-{lang}.md"))).unwrap();
        run_quickstart(lang, &markdown);
    }
}
