//! `nexus plugin run`: one event through one component, with the same host, grants and
//! limits the marketplace uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use nexus_host::{
    Capability, Compiler, DirKv, Event, Grants, Host, HostConfig, HostPattern, InvocationContext, KvStore, Limits,
    MemoryKv, OutboundPolicy, Secrets,
};
use serde::Deserialize;

use super::output;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plugin component (.wasm) to run.
    component: PathBuf,
    /// The event as JSON, or @file: {"type": "invoice.paid", "id": "evt_1", "payload": {...}}.
    /// `id` defaults to "evt-local"; `payload` (any JSON) to {}.
    #[arg(long)]
    event: String,
    /// A config value for the install (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,
    /// A secret for the install (repeatable). Never printed.
    #[arg(long = "secret", value_name = "KEY=VALUE", value_parser = key_value)]
    secrets: Vec<(String, String)>,
    /// A host the plugin may call: name, name:port or *.domain (repeatable).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<HostPattern>,
    /// Keep the install's KV data in this folder between runs (default: in memory).
    #[arg(long, value_name = "DIR")]
    kv_dir: Option<PathBuf>,
    /// Withhold a capability (repeatable): log, config, secrets, kv, http, usage.
    #[arg(long = "deny", value_name = "CAPABILITY")]
    deny: Vec<Capability>,
    /// The install id, which scopes KV data.
    #[arg(long, default_value = "local")]
    install: String,
    /// Fuel (about one per wasm instruction) for this run.
    #[arg(long)]
    fuel: Option<u64>,
    /// Linear memory limit in MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Wall-clock limit in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Where precompiled components are cached (default: ~/.cache/nexus/components).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Print the outcome and report as JSON.
    #[arg(long)]
    json: bool,
}

/// An event as a builder writes it, for `--event` and `nexus plugin test` cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventArg {
    #[serde(default = "default_id")]
    pub(super) id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default = "empty_object")]
    payload: serde_json::Value,
}

impl EventArg {
    pub(super) fn into_event(self) -> anyhow::Result<Event> {
        if self.event_type.is_empty() {
            bail!("the event needs a non-empty \"type\"");
        }
        Ok(Event { id: self.id, event_type: self.event_type, payload: self.payload.to_string() })
    }
}

pub(super) fn default_id() -> String {
    "evt-local".into()
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{arg}`")),
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let event = parse_event(&args.event)?;
    let bytes = std::fs::read(&args.component).with_context(|| {
        format!(
            "cannot read {} (build it with `cargo build --target wasm32-wasip2 --release`)",
            args.component.display()
        )
    })?;
    let hosts = LocalHost::new(args.cache_dir.clone())?;

    let started = Instant::now();
    if !args.json {
        eprintln!("loading {} ({} KiB)...", args.component.display(), bytes.len() / 1024);
    }
    let Loaded { host, plugin, source } = super::output::waiting(super::builder::check::COMPILING, hosts.load(&bytes))
        .await
        .map_err(|e| anyhow::anyhow!("{} was refused [{}]: {e}", args.component.display(), e.code()))?;
    let load_time = started.elapsed();
    let context = context(&args)?;
    let invocation = host.invoke(&plugin, context, &event).await;

    if args.json {
        let result = match &invocation.result {
            Ok(outcome) => serde_json::json!({ "ok": outcome }),
            Err(error) => serde_json::json!({ "error": error, "message": error.to_string() }),
        };
        let document = serde_json::json!({ "result": result, "report": invocation.report });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        println!(
            "plugin    {} ({}), {} in {}",
            plugin.digest(),
            plugin.contract(),
            source_name(source),
            output::duration(load_time)
        );
        output::print_invocation(&invocation, usize::MAX);
    }
    Ok(if invocation.result.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn parse_event(arg: &str) -> anyhow::Result<Event> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read the event file {path}"))?,
        None => arg.to_string(),
    };
    let event: EventArg = serde_json::from_str(&text).with_context(
        || r#"--event must be JSON like {"type": "user.signup", "id": "evt_1", "payload": {"email": "a@b.c"}}"#,
    )?;
    event.into_event()
}

fn context(args: &RunArgs) -> anyhow::Result<InvocationContext> {
    let mut grants = Grants::all(args.allow_hosts.clone());
    for capability in &args.deny {
        grants.capabilities.remove(capability);
    }
    let kv: Arc<dyn KvStore> = match &args.kv_dir {
        Some(dir) => Arc::new(DirKv::new(dir)),
        None => Arc::new(MemoryKv::new()),
    };
    let mut limits = Limits::default();
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(mib) = args.memory_mib {
        limits.memory_bytes = mib << 20;
    }
    if let Some(ms) = args.timeout_ms {
        limits.wall_clock = Duration::from_millis(ms);
    }
    Ok(InvocationContext {
        tenant: "local".into(),
        install: args.install.clone(),
        grants,
        config: args.config.iter().cloned().collect::<BTreeMap<_, _>>(),
        secrets: args.secrets.iter().cloned().collect::<Secrets>(),
        kv,
        limits,
    })
}

/// The hosts a builder's commands run plugins in: the marketplace's limits, a precompiled
/// cache that outlives the command, and outbound HTTP to local test servers.
///
/// Components compile with Winch first (a baseline compiler: a Python component in seconds
/// rather than a minute), and with Cranelift, the marketplace's compiler, when Winch cannot
/// compile them or `NEXUS_COMPILER=cranelift` asks for it. Both enforce the same limits.
pub(super) struct LocalHost {
    cache_dir: Option<PathBuf>,
    first: Arc<Host>,
    cranelift: tokio::sync::OnceCell<Arc<Host>>,
}

/// A component loaded by a [`LocalHost`], with the host that runs it.
pub(super) struct Loaded {
    pub host: Arc<Host>,
    pub plugin: Arc<nexus_host::Plugin>,
    pub source: nexus_host::LoadSource,
}

/// `NEXUS_COMPILER`: `winch` (the default for local commands) or `cranelift`.
pub(super) const COMPILER_VAR: &str = "NEXUS_COMPILER";

impl LocalHost {
    pub(super) fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let cache_dir = cache_dir.or_else(default_cache_dir);
        let compiler = match std::env::var(COMPILER_VAR).ok().as_deref() {
            None | Some("" | "winch") => Compiler::Winch,
            Some("cranelift") => Compiler::Cranelift,
            Some(other) => bail!("{COMPILER_VAR}={other:?} is not a compiler: use winch or cranelift"),
        };
        Ok(Self { first: Arc::new(host(cache_dir.clone(), compiler)?), cache_dir, cranelift: Default::default() })
    }

    /// Loads a component with the first compiler, or with Cranelift when the first cannot
    /// compile it (said on stderr). A component Cranelift refuses too gets Cranelift's
    /// reason, the one the marketplace would give.
    pub(super) async fn load(&self, bytes: &[u8]) -> Result<Loaded, nexus_host::LoadError> {
        let first = self.first.load(bytes).await;
        if self.first.config().compiler == Compiler::Cranelift {
            return first.map(|(plugin, source)| Loaded { host: self.first.clone(), plugin, source });
        }
        let reason = match first {
            Ok((plugin, source)) => return Ok(Loaded { host: self.first.clone(), plugin, source }),
            Err(error) => error,
        };
        let cranelift = self
            .cranelift
            .get_or_try_init(|| async { host(self.cache_dir.clone(), Compiler::Cranelift).map(Arc::new) })
            .await
            .map_err(|e| nexus_host::LoadError::Cache(format!("{e:#}")))?;
        let (plugin, source) = cranelift.load(bytes).await?;
        let reason = reason.to_string();
        eprintln!(
            "note: Winch cannot compile this component ({}); compiled with Cranelift instead",
            reason.lines().next().unwrap_or_default()
        );
        Ok(Loaded { host: cranelift.clone(), plugin, source })
    }
}

fn host(cache_dir: Option<PathBuf>, compiler: Compiler) -> anyhow::Result<Host> {
    Ok(Host::new(HostConfig {
        cache_dir,
        // A builder's own machine: local test servers on loopback and private networks are
        // fair game (`nexus serve` refuses them unless the operator allows a range).
        outbound: OutboundPolicy::local_testing(),
        compiler,
        ..HostConfig::default()
    })?)
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("nexus").join("components"))
}

fn source_name(source: nexus_host::LoadSource) -> &'static str {
    match source {
        nexus_host::LoadSource::Memory => "already loaded",
        nexus_host::LoadSource::Disk => "loaded from the precompiled cache",
        nexus_host::LoadSource::Compiled => "compiled",
    }
}
