//! The builder's commands: `nexus new`, `nexus build`, `nexus plugin check|test|wit` and
//! `nexus dev`. They run the same registry rules and the same host as the marketplace, on
//! the builder's machine, before anything is uploaded.

pub mod cases;
pub mod check;
pub mod dev_market;
pub mod new;
pub mod project;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use super::plugin_run::LocalHost;
use anyhow::Context;
use clap::Args;

use project::Project;

/// The hosts the builder's commands run plugins in (see `nexus plugin run`).
fn local_host() -> anyhow::Result<LocalHost> {
    LocalHost::new(None)
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The plugin project folder.
    #[arg(default_value = ".")]
    path: PathBuf,
}

pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let project = Project::open(&args.path)?;
    let component = project.build()?;
    let size = std::fs::metadata(&component).map(|m| m.len()).unwrap_or(0);
    println!("built     {} ({} KiB)", component.display(), size / 1024);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct WitArgs {
    /// The plugin project folder.
    #[arg(default_value = ".")]
    path: PathBuf,
}

/// Rewrites the project's `wit/` from its manifest: run it after adding or removing a
/// capability in nexus.toml, then build again.
pub fn wit(args: WitArgs) -> anyhow::Result<ExitCode> {
    let project = Project::open(&args.path)?;
    for (path, text) in new::wit_files(&project.manifest, project.lang) {
        let target = project.dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))?;
    }
    let imports: Vec<String> = project.manifest.capability_set().iter().map(ToString::to_string).collect();
    println!(
        "wrote     {} for capabilities: {}",
        project.dir.join("wit").display(),
        if imports.is_empty() { "none".into() } else { imports.join(", ") }
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  nexus dev                      build, check and test on every change\n  \
                        nexus dev --marketplace        and run it in a local marketplace, live\n  \
                        nexus events send --profile dev --type invoice.paid --payload '{\"total\": 12}'")]
pub struct DevArgs {
    /// The plugin project folder.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Also publish every change as a development version (`1.2.0-dev.N`) to a marketplace,
    /// install it for the development tenant and show its deliveries live: a local one in
    /// .nexus/marketplace, or the one --registry names.
    #[arg(long)]
    marketplace: bool,
    /// With --marketplace: your own marketplace instead of a local one. The profiles
    /// `dev-publisher` and `dev` must be signed in there, and an operator must have linked
    /// the tenant (`nexus operator dev-tenant`).
    #[arg(long, requires = "marketplace")]
    registry: Option<String>,
    /// The local marketplace's port.
    #[arg(long, env = "NEXUS_DEV_PORT", default_value_t = 7878)]
    port: u16,
    /// The plan the development tenant installs (default: the first).
    #[arg(long, requires = "marketplace")]
    plan: Option<String>,
    /// A config value for the development install (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value, requires = "marketplace")]
    config: Vec<(String, String)>,
    /// A secret for the development install (repeatable). Never printed.
    #[arg(long = "secret", value_name = "KEY=VALUE", value_parser = key_value, requires = "marketplace")]
    secrets: Vec<(String, String)>,
}

fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{arg}`")),
    }
}

/// Builds, checks and tests, then again after every change to the project's files, until
/// interrupted (Ctrl-C). A change to the test cases alone runs them again without building
/// (the build is keyed by its inputs) or compiling (the compiled component is cached).
/// With `--marketplace`, every build that passes the check also goes to the marketplace.
pub async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let host = local_host()?;
    let mut session = match args.marketplace {
        false => None,
        true => {
            let project = Project::open(&args.path)?;
            let target = match &args.registry {
                Some(registry) => {
                    dev_market::Target::remote(registry, dev_market::PUBLISHER_PROFILE, dev_market::TENANT_PROFILE)?
                }
                None => dev_market::Target::local(&project, args.port).await?,
            };
            let settings = dev_market::InstallSettings {
                plan: args.plan.clone(),
                config: args.config.iter().cloned().collect(),
                secrets: args.secrets.iter().cloned().collect(),
            };
            Some(dev_market::Session::new(target, settings))
        }
    };
    let mut seen = fingerprint(&args.path);
    loop {
        let round = async {
            let project = Project::open(&args.path)?;
            let component = tokio::task::block_in_place(|| project.build())?;
            let tally = cases::test_project(&host, &args.path, None).await?;
            Ok::<_, anyhow::Error>((project, component, tally))
        };
        match round.await {
            Ok((project, component, tally)) => {
                if tally.failed.is_empty() {
                    println!("dev: all {} cases pass", tally.passed);
                } else {
                    println!("dev: {} case(s) fail: {}", tally.failed.len(), tally.failed.join(", "));
                }
                if let Some(session) = &mut session
                    && let Err(error) = session.push(&project, &component).await
                {
                    println!("dev: {error:#}");
                }
            }
            Err(error) => println!("dev: {error:#}"),
        }
        println!("dev: watching {} for changes (Ctrl-C stops)", args.path.display());
        loop {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let now = fingerprint(&args.path);
            if now != seen {
                // Let an editor finish writing.
                tokio::time::sleep(Duration::from_millis(200)).await;
                seen = fingerprint(&args.path);
                println!("dev: changed, running again");
                break;
            }
        }
    }
}

/// Folders that builds write or tools fill, never the builder's source.
const NOT_SOURCE: &[&str] = &["target", "dist", "node_modules", ".venv", ".git", "__pycache__", project::STATE_FOLDER];
/// Files the build itself writes into the project (cargo's lockfile on the first build):
/// seeing them change must not start another round.
const BUILD_WRITES: &[&str] = &["Cargo.lock"];

/// The project's test cases (`nexus plugin test`): `nexus dev` runs them again when they
/// change, but they are not built into the component.
pub(crate) const CASES_FOLDER: &str = "events";

/// The newest modification time and the number of source files under `dir`, test cases
/// included: what `nexus dev` watches.
pub(crate) fn fingerprint(dir: &Path) -> (Option<SystemTime>, usize) {
    let files = source_files(dir, &[]);
    let newest = files.iter().filter_map(|file| file.metadata().and_then(|m| m.modified()).ok()).max();
    (newest, files.len())
}

/// The project's files under `dir`, without build output, tool folders and `skip`.
pub(crate) fn source_files(dir: &Path, skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !NOT_SOURCE.iter().any(|skip| name == *skip) && !skip.contains(&path) {
                    pending.push(path);
                }
                continue;
            }
            if !BUILD_WRITES.iter().any(|file| name == *file) {
                files.push(path);
            }
        }
    }
    files
}
