//! The builder's commands: `nexus new`, `nexus build`, `nexus plugin check|test|wit` and
//! `nexus dev`. They run the same registry rules and the same host as the marketplace, on
//! the builder's machine, before anything is uploaded.

pub mod cases;
pub mod check;
pub mod new;
pub mod project;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use nexus_host::Host;

use project::Project;

/// The host the builder's commands run plugins in (see `nexus plugin run`).
fn local_host() -> anyhow::Result<Host> {
    super::plugin_run::local_host(None)
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
pub struct DevArgs {
    /// The plugin project folder.
    #[arg(default_value = ".")]
    path: PathBuf,
}

/// Builds, checks and tests, then again after every change to the project's files, until
/// interrupted (Ctrl-C).
pub async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let host = local_host()?;
    let mut seen = fingerprint(&args.path);
    loop {
        let round = async {
            let project = Project::open(&args.path)?;
            tokio::task::block_in_place(|| project.build())?;
            cases::test_project(&host, &args.path, None).await
        };
        match round.await {
            Ok(tally) if tally.failed.is_empty() => println!("dev: all {} cases pass", tally.passed),
            Ok(tally) => println!("dev: {} case(s) fail: {}", tally.failed.len(), tally.failed.join(", ")),
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
                println!("dev: changed, rebuilding");
                break;
            }
        }
    }
}

/// Folders that builds write or tools fill, never the builder's source.
const NOT_SOURCE: &[&str] = &["target", "dist", "node_modules", ".venv", ".git", "__pycache__"];
/// Files the build itself writes into the project (cargo's lockfile on the first build):
/// seeing them change must not start another round.
const BUILD_WRITES: &[&str] = &["Cargo.lock"];

/// The project's test cases (`nexus plugin test`): `nexus dev` runs them again when they
/// change, but they are not built into the component.
pub(crate) const CASES_FOLDER: &str = "events";

/// The newest modification time and the number of source files under `dir`, test cases
/// included: what `nexus dev` watches.
pub(crate) fn fingerprint(dir: &Path) -> (Option<SystemTime>, usize) {
    files_under(dir, &[])
}

/// The newest modification time of what a build reads: the sources without the test cases,
/// so that writing a case does not ask for a rebuild.
pub(crate) fn newest_build_input(dir: &Path) -> Option<SystemTime> {
    files_under(dir, &[dir.join(CASES_FOLDER)]).0
}

fn files_under(dir: &Path, skip: &[PathBuf]) -> (Option<SystemTime>, usize) {
    let mut newest = None;
    let mut count = 0;
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
            if BUILD_WRITES.iter().any(|file| name == *file) {
                continue;
            }
            count += 1;
            let modified = entry.metadata().and_then(|m| m.modified()).ok();
            newest = newest.max(modified);
        }
    }
    (newest, count)
}
