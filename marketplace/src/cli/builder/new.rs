//! `nexus new`: writes a plugin project that builds with only the public package registries.
//! Every file comes from inside the binary: the contract's WIT (`wit/v1.0`), each
//! language's SDK (the same sources the sample plugins build with) and `marketplace/templates/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use nexus_host::Capability;
use nexus_registry::Manifest;

use super::project::Lang;

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The Rust SDK, written into a project as its `sdk/` crate: the helpers and the committed
/// bindings for `wit/v1.0`, so a builder's first build does not compile wit-bindgen's macro.
const RUST_SDK: &str = include_str!("../../../../sample-plugins/sdk/src/lib.rs");
const RUST_SDK_BINDINGS: &str = include_str!("../../../../sample-plugins/sdk/src/bindings.rs");
const PYTHON_SDK: &str = include_str!("../../../../sample-plugins/python/lead-scorer/src/nexus_sdk.py");
const JS_SDK: &str = include_str!("../../../../sample-plugins/js/ticket-router/src/nexus-sdk.js");
const JS_LOG: &str = include_str!("../../../../sample-plugins/js/ticket-router/src/nexus-log.js");

const WIT_TYPES: &str = include_str!("../../../../wit/v1.0/types.wit");
const WIT_CAPABILITIES: &str = include_str!("../../../../wit/v1.0/capabilities.wit");
const WIT_WORLD: &str = include_str!("../../../../wit/v1.0/world.wit");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Template {
    /// Normalizes a contact record and returns it as data (config, log).
    Transform,
    /// Posts each order event to a URL kept in a secret (secrets, http, log).
    Webhook,
    /// Counts words, reports them as usage for per-unit pricing, keeps a total in KV.
    Metered,
}

impl Template {
    fn folder(self) -> &'static str {
        match self {
            Self::Transform => "transform",
            Self::Webhook => "webhook",
            Self::Metered => "metered",
        }
    }
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-`, such as `order-sync`.
    name: String,
    /// The language of the project.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// What the starting code does.
    #[arg(long, value_enum, default_value = "transform")]
    template: Template,
    /// Your publisher name (the id's first part); change it in nexus.toml later if need be.
    #[arg(long, default_value = "my-publisher")]
    publisher: String,
    /// The folder to create the project in.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let id = format!("{}/{}", args.publisher, args.name);
    id.parse::<nexus_registry::PluginId>().map_err(|e| anyhow::anyhow!("`{id}` is not a valid plugin id: {e}"))?;
    let root = args.dir.join(&args.name);
    if root.exists() {
        bail!("{} already exists; choose another name or --dir", root.display());
    }
    let files = project_files(&args.name, &args.publisher, args.lang, args.template)?;
    for (path, text) in &files {
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))?;
    }
    println!(
        "created {} ({} plugin from the {} template, {} files)",
        root.display(),
        args.lang,
        args.template.folder(),
        files.len()
    );
    println!();
    println!("next:");
    println!("  cd {}", root.display());
    println!("  nexus build          # {}", args.lang.build_hint());
    println!("  nexus plugin check   # what publish would refuse, refused here");
    println!("  nexus plugin test    # runs events/*.json through the real host");
    println!("  nexus dev            # rebuilds and re-tests on every change");
    println!("  nexus publish        # after editing the publisher in nexus.toml");
    Ok(ExitCode::SUCCESS)
}

/// The project's files, by path inside it.
pub fn project_files(
    name: &str,
    publisher: &str,
    lang: Lang,
    template: Template,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let fill = |text: &str| text.replace("{{name}}", name).replace("{{publisher}}", publisher);
    let mut files = Vec::new();
    let shared = format!("{}/", template.folder());
    let common = format!("{}/", lang.folder());
    let source = format!("{}/{}/", lang.folder(), template.folder());
    for (path, text) in TEMPLATE_FILES {
        let target = if let Some(rest) = path.strip_prefix(&shared) {
            rest.to_string()
        } else if let Some(rest) = path.strip_prefix(&source) {
            format!("{}/{rest}", lang.source_folder())
        } else if let Some(rest) = path.strip_prefix(&common) {
            if template_folder_name(rest) {
                continue;
            }
            rest.strip_prefix("gitignore").map_or_else(|| rest.to_string(), |tail| format!(".gitignore{tail}"))
        } else {
            continue;
        };
        files.push((PathBuf::from(target), fill(text)));
    }
    let manifest_text = files
        .iter()
        .find(|(path, _)| path == Path::new("nexus.toml"))
        .map(|(_, text)| text.clone())
        .context("the template has no nexus.toml")?;
    let manifest = Manifest::from_toml(&manifest_text).context("the template's nexus.toml")?;
    for (path, text) in wit_files(&manifest, lang) {
        files.push((path, text));
    }
    match lang {
        Lang::Rust => {
            files.push(("sdk/src/lib.rs".into(), RUST_SDK.to_string()));
            files.push(("sdk/src/bindings.rs".into(), RUST_SDK_BINDINGS.to_string()));
        }
        Lang::Python => files.push(("src/nexus_sdk.py".into(), PYTHON_SDK.to_string())),
        Lang::Js => {
            files.push(("src/nexus-sdk.js".into(), JS_SDK.to_string()));
            files.push(("src/nexus-log.js".into(), JS_LOG.to_string()));
        }
    }
    files.sort();
    Ok(files)
}

/// A path under a language folder that belongs to one of its templates.
fn template_folder_name(rest: &str) -> bool {
    ["transform/", "webhook/", "metered/"].iter().any(|folder| rest.starts_with(folder))
}

/// The contract's WIT for a project: the interfaces as published, and a world that imports
/// only what the manifest declares.
pub fn wit_files(manifest: &Manifest, lang: Lang) -> Vec<(PathBuf, String)> {
    vec![
        ("wit/types.wit".into(), WIT_TYPES.to_string()),
        ("wit/capabilities.wit".into(), WIT_CAPABILITIES.to_string()),
        ("wit/world.wit".into(), world_wit(manifest, lang)),
    ]
}

/// The contract's `world.wit` with `world plugin` importing only the interfaces the
/// manifest's capabilities need (`secrets` reads through `config`). Python and JavaScript
/// toolchains import every interface of the world, used or not, and the registry refuses an
/// import the manifest does not declare. Rust keeps the whole world: its linker drops the
/// imports the code never calls, and the SDK names every interface.
pub fn world_wit(manifest: &Manifest, lang: Lang) -> String {
    if lang == Lang::Rust {
        return WIT_WORLD.to_string();
    }
    let declared = manifest.capability_set();
    let needed = |interface: &str| match interface {
        "config" => declared.contains(&Capability::Config) || declared.contains(&Capability::Secrets),
        other => other.parse::<Capability>().is_ok_and(|capability| declared.contains(&capability)),
    };
    let mut out = String::new();
    for line in WIT_WORLD.lines() {
        let import = line.trim().strip_prefix("import ").and_then(|rest| rest.strip_suffix(';'));
        if import.is_some_and(|interface| !needed(interface)) {
            continue;
        }
        if line.starts_with("world plugin") {
            out.push_str("/// Narrowed by `nexus plugin wit` to the capabilities nexus.toml declares: a world may\n");
            out.push_str("/// import any subset of the contract's interfaces.\n");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.folder())
    }
}
