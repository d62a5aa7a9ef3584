//! `nexus plugin check`: what `publish` would refuse, refused on the builder's machine with
//! the registry's own rules and codes, plus what only running the component can tell:
//! whether the host loads it, and whether `describe()` agrees with the manifest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use nexus_host::{Host, InvocationContext, Limits, MemoryKv, Plugin, Secrets};
use nexus_registry::{Manifest, PublishRequest};

use super::project::Project;
use crate::cli::plugin_run::{Loaded, LocalHost};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A plugin project folder, or a built component (.wasm).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// The manifest, when checking a .wasm that has no nexus.toml beside it.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
}

/// Why a component would not be published, with the code the registry or host would give.
#[derive(Debug)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.message, self.code)
    }
}

/// A component that passed: ready to publish.
pub struct Checked {
    pub manifest: Manifest,
    /// The host that loaded the plugin (Winch's, or Cranelift's when Winch could not).
    pub host: Arc<Host>,
    pub plugin: Arc<Plugin>,
    pub size: usize,
    pub warnings: Vec<String>,
}

/// What a slow load is doing: compiling to machine code, once per component and machine.
pub const COMPILING: &str = "compiling the component to machine code (once per build, then cached)";

/// The registry's publish checks, the host's load limits, then `describe()`.
pub async fn check(hosts: &LocalHost, manifest_text: &str, component: Vec<u8>) -> Result<Checked, Refusal> {
    let size = component.len();
    let request =
        PublishRequest { manifest: manifest_text.to_string(), component, claimed_digest: None, signature: None };
    let (manifest, _, warnings) = nexus_registry::publish::check(&request, None)
        .map_err(|e| Refusal { code: e.code().as_str(), message: e.to_string() })?;
    let Loaded { host, plugin, .. } = crate::cli::output::waiting(COMPILING, hosts.load(&request.component))
        .await
        .map_err(|e| Refusal { code: e.code(), message: e.to_string() })?;
    let context = InvocationContext {
        tenant: "local".into(),
        install: "check".into(),
        grants: Default::default(),
        config: Default::default(),
        secrets: Secrets::default(),
        kv: Arc::new(MemoryKv::new()),
        limits: Limits::default(),
    };
    let info = host
        .describe(&plugin, context)
        .await
        .map_err(|e| Refusal { code: "describe_failed", message: format!("describe() failed: {e}") })?;
    let mut differences = Vec::new();
    if info.name != manifest.id.name.to_string() {
        differences.push(format!("name `{}` (the manifest's id says `{}`)", info.name, manifest.id.name));
    }
    if info.version != manifest.version.to_string() {
        differences.push(format!("version `{}` (nexus.toml says `{}`)", info.version, manifest.version));
    }
    let mut described = info.event_types.clone();
    let mut declared = manifest.event_types.clone();
    described.sort();
    declared.sort();
    if described != declared {
        differences.push(format!("event types {described:?} (nexus.toml says {declared:?})"));
    }
    if !differences.is_empty() {
        return Err(Refusal {
            code: "describe_mismatch",
            message: format!(
                "describe() reports {}: nexus.toml is what the marketplace shows, so make the code agree with it \
                 (Rust: `version` in Cargo.toml; Python: `VERSION` in src/app.py; JavaScript: `VERSION` in \
                 src/index.js), then `nexus build`",
                differences.join(", ")
            ),
        });
    }
    Ok(Checked { manifest, host, plugin, size, warnings })
}

/// The component and manifest a path names: a project's last build, or a .wasm with a
/// manifest beside it or given.
pub fn locate(path: &std::path::Path, manifest: Option<&std::path::Path>) -> anyhow::Result<(PathBuf, String)> {
    if path.is_dir() {
        let project = Project::open(path)?;
        let component = project.built().with_context(|| {
            format!("{} has no build newer than its sources: run `nexus build` there first", path.display())
        })?;
        let text = match manifest {
            Some(file) => read_manifest(file)?,
            None => project.manifest_text,
        };
        return Ok((component, text));
    }
    let beside = path.parent().map(|dir| dir.join("nexus.toml")).filter(|p| p.exists());
    let file = manifest
        .map(PathBuf::from)
        .or(beside)
        .with_context(|| format!("no manifest for {}: pass --manifest path/to/nexus.toml", path.display()))?;
    Ok((path.to_path_buf(), read_manifest(&file)?))
}

fn read_manifest(file: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read the manifest {}", file.display()))
}

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (component_path, manifest_text) = locate(&args.path, args.manifest.as_deref())?;
    let component =
        std::fs::read(&component_path).with_context(|| format!("cannot read {}", component_path.display()))?;
    let host = super::local_host()?;
    eprintln!("checking {} ({} KiB)...", component_path.display(), component.len() / 1024);
    match check(&host, &manifest_text, component).await {
        Ok(checked) => {
            for warning in &checked.warnings {
                eprintln!("warning: {warning}");
            }
            let capabilities: Vec<String> = checked.manifest.capability_set().iter().map(ToString::to_string).collect();
            println!(
                "ok        {}@{} ({} KiB, {}), capabilities: {}",
                checked.manifest.id,
                checked.manifest.version,
                checked.size / 1024,
                checked.plugin.contract(),
                if capabilities.is_empty() { "none".into() } else { capabilities.join(", ") }
            );
            println!("publish would accept it: `nexus publish`");
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            println!("refused   {refusal}");
            Ok(ExitCode::from(1))
        }
    }
}
