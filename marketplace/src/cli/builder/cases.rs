//! `nexus plugin test`: a project's sample events (`events/*.json`) through the real host,
//! each compared with what its case expects. Only what a case names is compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use nexus_host::{
    Grants, Host, HostPattern, Invocation, InvocationContext, InvocationError, Limits, MemoryKv, Plugin,
    PluginErrorKind, Secrets,
};
use nexus_registry::Manifest;
use serde::Deserialize;
use serde_json::Value;

use super::check::{check, locate};
use crate::cli::output;
use crate::cli::plugin_run::EventArg;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// A plugin project folder (its last build and its events/ are used).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Run only the cases whose file name contains this.
    #[arg(long)]
    pub only: Option<String>,
}

/// One `events/<case>.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    event: EventArg,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    outcome: ExpectedOutcome,
    data: Option<Value>,
    actions: Option<Vec<ExpectedAction>>,
    error_kind: Option<PluginErrorKind>,
    usage: Option<BTreeMap<String, u64>>,
    http_requests: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExpectedOutcome {
    Ok,
    Error,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedAction {
    kind: String,
    payload: Value,
}

/// What the tests of a project came to.
#[derive(Debug, Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: Vec<String>,
}

pub async fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let host = super::local_host()?;
    let tally = test_project(&host, &args.path, args.only.as_deref()).await?;
    Ok(if tally.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Checks the project's last build, then runs its cases, printing one line per case.
pub async fn test_project(host: &Host, dir: &Path, only: Option<&str>) -> anyhow::Result<Tally> {
    let (component_path, manifest_text) = locate(dir, None)?;
    let component =
        std::fs::read(&component_path).with_context(|| format!("cannot read {}", component_path.display()))?;
    eprintln!("loading {} ({} KiB)...", component_path.display(), component.len() / 1024);
    let checked = match check(host, &manifest_text, component).await {
        Ok(checked) => checked,
        Err(refusal) => bail!("the component would not be published: {refusal} (see `nexus plugin check`)"),
    };
    let cases = case_files(dir, only)?;
    let sink = Sink::start().await?;
    let mut tally = Tally::default();
    for path in &cases {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("case").to_string();
        match run_case(host, &checked.plugin, &checked.manifest, path, &name, &sink).await {
            Ok(()) => {
                println!("ok      {name}");
                tally.passed += 1;
            }
            Err(problems) => {
                println!("FAILED  {name}");
                for problem in problems.lines() {
                    println!("        {problem}");
                }
                tally.failed.push(name);
            }
        }
    }
    println!(
        "{} passed, {} failed, of {} cases in {}",
        tally.passed,
        tally.failed.len(),
        cases.len(),
        dir.join("events").display()
    );
    Ok(tally)
}

fn case_files(dir: &Path, only: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
    let folder = dir.join("events");
    let entries = std::fs::read_dir(&folder)
        .with_context(|| format!("cannot read {}: write sample events there (see `nexus new`)", folder.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .filter(|path| {
            only.is_none_or(|part| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(part)))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} has no cases (*.json)", folder.display());
    }
    Ok(files)
}

/// Runs one case; the error lists every difference from what it expects.
async fn run_case(
    host: &Host,
    plugin: &Plugin,
    manifest: &Manifest,
    path: &Path,
    name: &str,
    sink: &Sink,
) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.replace("{{sink}}", &sink.url());
    let mut case: Case =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a valid case: {e}", path.display()))?;
    if case.event.id == crate::cli::plugin_run::default_id() {
        case.event.id = format!("evt-{name}");
    }
    let event = case.event.into_event().map_err(|e| e.to_string())?;
    // What a tenant accepting the manifest grants, and the local sink.
    let mut hosts = manifest.requested_hosts();
    hosts.push(sink.host());
    let grants = Grants { capabilities: manifest.capability_set().into_iter().collect(), allowed_hosts: hosts };
    let context = InvocationContext {
        tenant: "local".into(),
        install: format!("test-{name}"),
        grants,
        config: case.config,
        secrets: case.secrets.into_iter().collect::<Secrets>(),
        kv: Arc::new(MemoryKv::new()),
        limits: Limits::default(),
    };
    let invocation = host.invoke(plugin, context, &event).await;
    let problems = compare(&case.expect, &invocation);
    if problems.is_empty() {
        return Ok(());
    }
    let mut shown = problems.join("\n");
    if !invocation.report.logs.is_empty() || !invocation.report.stderr.is_empty() {
        shown.push_str("\nwhat the plugin wrote:");
        for line in &invocation.report.logs {
            let level = format!("{:?}", line.level).to_lowercase();
            shown.push_str(&format!("\n  log {level}: {}", output::shown(&line.message)));
        }
        for line in invocation.report.stderr.lines().take(20) {
            shown.push_str(&format!("\n  stderr: {}", output::shown(line)));
        }
    }
    Err(shown)
}

fn compare(expect: &Expect, invocation: &Invocation) -> Vec<String> {
    let mut problems = Vec::new();
    let report = &invocation.report;
    match (&invocation.result, expect.outcome) {
        (Ok(outcome), ExpectedOutcome::Ok) => {
            if let Some(expected) = &expect.data {
                let data = outcome.data.as_deref().map(serde_json::from_str::<Value>);
                match data {
                    Some(Ok(data)) if &data == expected => {}
                    Some(Ok(data)) => problems.push(format!("data is {data}, expected {expected}")),
                    Some(Err(_)) => problems.push(format!("data is not JSON: {:?}", outcome.data)),
                    None => problems.push(format!("no data, expected {expected}")),
                }
            }
            if let Some(expected) = &expect.actions {
                let actions: Vec<ExpectedAction> = outcome
                    .actions
                    .iter()
                    .map(|a| ExpectedAction {
                        kind: a.kind.clone(),
                        payload: serde_json::from_str(&a.payload).unwrap_or(Value::String(a.payload.clone())),
                    })
                    .collect();
                if &actions != expected {
                    let shown: Vec<String> = actions.iter().map(|a| format!("{} {}", a.kind, a.payload)).collect();
                    problems.push(format!("actions are [{}], expected {} action(s)", shown.join(", "), expected.len()));
                }
            }
        }
        (Ok(_), ExpectedOutcome::Error) => problems.push("succeeded, expected an error".into()),
        (Err(error), ExpectedOutcome::Ok) => {
            problems.push(format!("failed, expected success: {} [{}]", error, error.code()))
        }
        (Err(error), ExpectedOutcome::Error) => {
            if let Some(expected) = expect.error_kind {
                match error {
                    InvocationError::PluginError { kind, .. } if *kind == expected => {}
                    other => problems
                        .push(format!("failed with {other} [{}], expected a {expected:?} plugin error", other.code())),
                }
            }
        }
    }
    if let Some(expected) = &expect.usage
        && &report.usage != expected
    {
        problems.push(format!("usage is {:?}, expected {expected:?}", report.usage));
    }
    if let Some(expected) = expect.http_requests
        && report.http_requests != expected
    {
        problems.push(format!("made {} HTTP request(s), expected {expected}", report.http_requests));
    }
    problems
}

/// A loopback HTTP server for a case's `{{sink}}`: answers `200 {"ok":true}` to anything.
struct Sink {
    port: u16,
    host: HostPattern,
    server: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("cannot open a local port")?;
        let port = listener.local_addr()?.port();
        let host = format!("127.0.0.1:{port}").parse().map_err(|e| anyhow::anyhow!("the sink's address: {e}"))?;
        let app = axum::Router::new().fallback(|| async { axum::Json(serde_json::json!({ "ok": true })) });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port, host, server })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn host(&self) -> HostPattern {
        self.host.clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}
