//! `nexus plugin test`: a project's sample events (`events/*.json`) through the real host,
//! each compared with what its case expects. Only what a case names is compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Args;
use nexus_host::capability::kv::KvQuota;
use nexus_host::{
    Grants, Host, HostPattern, Invocation, InvocationContext, InvocationError, KvScope, KvStore, Level, Limits,
    MemoryKv, Plugin, PluginErrorKind, Secrets,
};
use nexus_registry::Manifest;
use serde::Deserialize;
use serde_json::Value;

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
    // One line per problem: what the plugin put in one (an error message, data) is shown
    // escaped, so it cannot start a line of its own that reads like a verdict.
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
    Err(shown)
}

/// What differs between the actions a plugin asked for and the case's: the count, or else
/// the first action that is not the expected one (its position, what it was, what was
/// expected).
fn action_problem(actions: &[ExpectedAction], expected: &[ExpectedAction]) -> Option<String> {
    let shown = |a: &ExpectedAction| format!("{} {}", a.kind, a.payload);
    if actions.len() != expected.len() {
        let all: Vec<String> = actions.iter().map(shown).collect();
        return Some(format!(
            "{} action(s) [{}], expected {} action(s)",
            actions.len(),
            all.join(", "),
            expected.len()
        ));
    }
    let (n, (got, want)) = actions.iter().zip(expected).enumerate().find(|(_, (got, want))| got != want)?;
    Some(format!("action {} is {}, expected {}", n + 1, shown(got), shown(want)))
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
                problems.extend(action_problem(&actions, expected));
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
    if let Some(expected) = &expect.logs {
        let logged: Vec<ExpectedLog> =
            report.logs.iter().map(|line| ExpectedLog { level: line.level, message: line.message.clone() }).collect();
        if &logged != expected {
            let shown: Vec<String> = logged.iter().map(|l| format!("{:?} {:?}", l.level, l.message)).collect();
            problems.push(format!("logged [{}], expected {} line(s)", shown.join(", "), expected.len()));
        }
    }
    problems
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

fn compare_kv(expected: &BTreeMap<String, KvValue>, stored: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in expected {
        match stored.get(key) {
            None => problems.push(format!("kv {key:?} is absent, expected {}", value.0)),
            Some(bytes) if !value.matches(bytes) => {
                problems.push(format!("kv {key:?} is {:?}, expected {}", String::from_utf8_lossy(bytes), value.0))
            }
            Some(_) => {}
        }
    }
    for (key, bytes) in stored {
        if !expected.contains_key(key) {
            problems.push(format!("kv {key:?} is {:?}, expected no such key", String::from_utf8_lossy(bytes)));
        }
    }
    problems
}

fn compare_requests(expected: &[ExpectedRequest], received: &[Received]) -> Vec<String> {
    let mut problems = Vec::new();
    if expected.len() != received.len() {
        let shown: Vec<String> = received.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        problems.push(format!(
            "the sink received {} request(s) [{}], expected {}",
            received.len(),
            shown.join(", "),
            expected.len()
        ));
        return problems;
    }
    for (n, (want, got)) in expected.iter().zip(received).enumerate() {
        let which = format!("sink request {}", n + 1);
        if !want.method.eq_ignore_ascii_case(&got.method) || want.path != got.path {
            problems.push(format!("{which} is {} {}, expected {} {}", got.method, got.path, want.method, want.path));
        }
        if let Some(body) = &want.body {
            let text = String::from_utf8_lossy(&got.body);
            let same = match body {
                Value::String(expected) => *expected == text,
                other => serde_json::from_slice::<Value>(&got.body).is_ok_and(|value| &value == other),
            };
            if !same {
                problems.push(format!("{which} body is {}, expected {body}", output::shown(&text)));
            }
        }
        for (name, value) in &want.headers {
            match got.headers.get(&name.to_ascii_lowercase()) {
                Some(actual) if actual == value => {}
                Some(actual) => problems.push(format!("{which} header {name} is {actual:?}, expected {value:?}")),
                None => problems.push(format!("{which} has no header {name}, expected {value:?}")),
            }
        }
    }
    problems
}

/// A loopback HTTP server for a case's `{{sink}}`: records every request and answers with the
/// case's `sink_answer`.
struct Sink {
    port: u16,
    host: HostPattern,
    state: Arc<Mutex<SinkState>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct SinkState {
    answer: SinkAnswer,
    received: Vec<Received>,
}

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Sink {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("cannot open a local port")?;
        let port = listener.local_addr()?.port();
        let host = format!("127.0.0.1:{port}").parse().map_err(|e| anyhow::anyhow!("the sink's address: {e}"))?;
        let state = Arc::new(Mutex::new(SinkState::default()));
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = shared.clone();
            async move { record(&state, request).await }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port, host, state, server })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn host(&self) -> HostPattern {
        self.host.clone()
    }

    /// Forgets the last case's requests and answers the next ones with `answer`.
    fn begin(&self, answer: SinkAnswer) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = SinkState { answer, received: Vec::new() };
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).received.clone()
    }
}

/// The most of a request body the sink keeps (the host's own request limit is smaller).
const SINK_BODY_LIMIT: usize = 4 << 20;

async fn record(state: &Mutex<SinkState>, request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, SINK_BODY_LIMIT).await.map(|b| b.to_vec()).unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    state.received.push(Received { method: parts.method.to_string(), path, headers, body });
    // `run_case` allows only 100..=599, which `from_u16` accepts.
    let status = axum::http::StatusCode::from_u16(state.answer.status).unwrap_or(axum::http::StatusCode::OK);
    (status, axum::Json(state.answer.body.clone())).into_response()
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: &str, payload: Value) -> ExpectedAction {
        ExpectedAction { kind: kind.into(), payload }
    }

    #[test]
    fn an_action_that_differs_is_named_by_position_and_content() {
        let expected = [action("crm.note", serde_json::json!({ "text": "hi" })), action("crm.tag", "vip".into())];
        let same = [action("crm.note", serde_json::json!({ "text": "hi" })), action("crm.tag", "vip".into())];
        assert_eq!(action_problem(&same, &expected), None);
        let other = [action("crm.note", serde_json::json!({ "text": "hi" })), action("crm.tag", "new".into())];
        assert_eq!(
            action_problem(&other, &expected).as_deref(),
            Some(r#"action 2 is crm.tag "new", expected crm.tag "vip""#)
        );
        assert_eq!(
            action_problem(&other[..1], &expected).as_deref(),
            Some(r#"1 action(s) [crm.note {"text":"hi"}], expected 2 action(s)"#)
        );
    }
}
