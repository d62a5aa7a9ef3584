//! `nexus plugin test`: a project's sample events (`events/*.json`) through the real host,
//! each compared with what its case expects. Only what a case names is compared.

mod compare;
mod sink;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use nexus_host::capability::kv::KvQuota;
use nexus_host::{
    Grants, Host, Invocation, InvocationContext, KvScope, KvStore, Level, Limits, MemoryKv, Plugin, PluginErrorKind,
    Secrets,
};
use nexus_registry::Manifest;
use serde::Deserialize;
use serde_json::Value;

use self::compare::{compare, compare_kv, compare_requests};
use self::sink::Sink;
use super::check::{check, locate};
use crate::cli::output;
use crate::cli::plugin_run::{EventArg, LocalHost};

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
    /// The install's KV data before the event, as [`KvValue`]s.
    #[serde(default)]
    kv: BTreeMap<String, KvValue>,
    /// What the `{{sink}}` server answers during this case (default `200 {"ok":true}`).
    #[serde(default)]
    sink_answer: SinkAnswer,
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
    /// The install's whole KV data after the event.
    kv: Option<BTreeMap<String, KvValue>>,
    /// Every log line, in order.
    logs: Option<Vec<ExpectedLog>>,
    /// Every request the `{{sink}}` server received, in order.
    sink_requests: Option<Vec<ExpectedRequest>>,
}

/// A KV value in a case: a JSON string is the value's text; any other JSON value stands for
/// its compact JSON text, and compares as JSON (so `{"total": 3}` matches `{"total":3}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
struct KvValue(Value);

impl KvValue {
    fn bytes(&self) -> Vec<u8> {
        match &self.0 {
            Value::String(text) => text.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        }
    }

    fn matches(&self, stored: &[u8]) -> bool {
        match &self.0 {
            Value::String(text) => text.as_bytes() == stored,
            other => serde_json::from_slice::<Value>(stored).is_ok_and(|value| &value == other),
        }
    }
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedLog {
    level: Level,
    message: String,
}

/// A request the sink received. `body` compares as JSON when the received body is JSON and
/// `body` is not a string; `headers` names only the headers to compare (lowercase names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedRequest {
    method: String,
    path: String,
    body: Option<Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkAnswer {
    status: u16,
    #[serde(default = "ok_body")]
    body: Value,
}

impl Default for SinkAnswer {
    fn default() -> Self {
        Self { status: 200, body: ok_body() }
    }
}

fn ok_body() -> Value {
    serde_json::json!({ "ok": true })
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
pub async fn test_project(hosts: &LocalHost, dir: &Path, only: Option<&str>) -> anyhow::Result<Tally> {
    let (component_path, manifest_text) = locate(dir, None)?;
    let component =
        std::fs::read(&component_path).with_context(|| format!("cannot read {}", component_path.display()))?;
    eprintln!("loading {} ({} KiB)...", component_path.display(), component.len() / 1024);
    let checked = match check(hosts, &manifest_text, component).await {
        Ok(checked) => checked,
        Err(refusal) => bail!("the component would not be published: {refusal} (see `nexus plugin check`)"),
    };
    let cases = case_files(dir, only)?;
    let sink = Sink::start().await?;
    let mut tally = Tally::default();
    for path in &cases {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("case").to_string();
        match run_case(&checked.host, &checked.plugin, &checked.manifest, path, &name, &sink).await {
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
        dir.join(super::CASES_FOLDER).display()
    );
    Ok(tally)
}

fn case_files(dir: &Path, only: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
    let folder = dir.join(super::CASES_FOLDER);
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
    let case = read_case(path, name, sink)?;
    let event = case.event.into_event().map_err(|e| e.to_string())?;
    // What a tenant accepting the manifest grants, and the local sink.
    let mut hosts = manifest.requested_hosts();
    hosts.push(sink.host());
    let grants = Grants { capabilities: manifest.capability_set().into_iter().collect(), allowed_hosts: hosts };
    let scope = KvScope { tenant: "local".into(), install: format!("test-{name}") };
    let kv = Arc::new(MemoryKv::new());
    seed(&kv, &scope, &case.kv).await?;
    if !(100..=599).contains(&case.sink_answer.status) {
        return Err(format!("{}: sink_answer.status must be an HTTP status, 100 to 599", path.display()));
    }
    sink.begin(case.sink_answer);
    let context = InvocationContext {
        tenant: scope.tenant.clone(),
        install: scope.install.clone(),
        grants,
        config: case.config,
        secrets: case.secrets.into_iter().collect::<Secrets>(),
        kv: kv.clone(),
        limits: Limits::default(),
    };
    let invocation = host.invoke(plugin, context, &event).await;
    let mut problems = compare(&case.expect, &invocation);
    if let Some(expected) = &case.expect.kv {
        problems.extend(compare_kv(expected, &read_all(&kv, &scope).await?));
    }
    if let Some(expected) = &case.expect.sink_requests {
        problems.extend(compare_requests(expected, &sink.received()));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(explain(&problems, &invocation))
}

/// Reads the case at `path`, `{{sink}}` replaced by the sink's URL; an event without an id
/// of its own gets `evt-<name>`.
fn read_case(path: &Path, name: &str, sink: &Sink) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.replace("{{sink}}", &sink.url());
    let mut case: Case = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}: not a valid case: {e}; a case has `event`, `expect` and optionally `config`, `secrets`, `kv`, \
             `sink_answer` (docs/builders.md, \"Test cases\")",
            path.display(),
            e.line()
        )
    })?;
    if case.event.id == crate::cli::plugin_run::default_id() {
        case.event.id = format!("evt-{name}");
    }
    Ok(case)
}

/// One line per problem, then what the plugin wrote: what the plugin put in one (an error
/// message, data) is shown escaped, so it cannot start a line of its own that reads like a
/// verdict.
fn explain(problems: &[String], invocation: &Invocation) -> String {
    let mut shown = problems.iter().map(|problem| output::shown(problem)).collect::<Vec<_>>().join("\n");
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
    shown
}

async fn seed(kv: &MemoryKv, scope: &KvScope, entries: &BTreeMap<String, KvValue>) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let writes = entries.iter().map(|(key, value)| (key.clone(), Some(value.bytes()))).collect();
    kv.commit(scope, writes, KvQuota { keys: u64::MAX, bytes: u64::MAX }, None)
        .await
        .map_err(|e| format!("cannot seed the case's kv: {e}"))
}

async fn read_all(kv: &MemoryKv, scope: &KvScope) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut entries = BTreeMap::new();
    for key in kv.list_keys(scope, "").await.map_err(|e| e.to_string())? {
        if let Some(value) = kv.get(scope, &key).await.map_err(|e| e.to_string())? {
            entries.insert(key, value);
        }
    }
    Ok(entries)
}
