//! A plugin project on disk: which language it is written in, where its manifest and
//! component are, and how to build it with the language's own toolchain.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::ValueEnum;
use nexus_registry::Manifest;
use sha2::Digest as _;

/// componentize-py, installed into the project's `.venv` from PyPI when missing.
const PYTHON_REQUIREMENTS: &str = "requirements.txt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    pub fn folder(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::Js => "js",
        }
    }

    /// Where the template's own source files go in a project.
    pub fn source_folder(self) -> &'static str {
        "src"
    }

    /// What `nexus build` runs, the first time included (said by `nexus new`).
    pub fn build_hint(self) -> &'static str {
        match self {
            Self::Rust => "cargo build --release --target wasm32-wasip2",
            Self::Python => "componentize-py (from PyPI, into .venv)",
            Self::Js => "npm ci, then componentize-js (from npm)",
        }
    }

    /// What every build runs; a download the first time says so on a line of its own.
    pub fn build_tool(self) -> &'static str {
        match self {
            Self::Rust => "cargo build --release --target wasm32-wasip2",
            Self::Python => "componentize-py",
            Self::Js => "componentize-js (npm run build)",
        }
    }
}

/// A project folder with its `nexus.toml`.
#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub lang: Lang,
    pub manifest_text: String,
    pub manifest: Manifest,
}

impl Project {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        // Absolute, so that tools run inside the project find what the paths name.
        let dir =
            &std::fs::canonicalize(dir).with_context(|| format!("cannot open the project folder {}", dir.display()))?;
        let manifest_path = dir.join("nexus.toml");
        let manifest_text = std::fs::read_to_string(&manifest_path).with_context(|| {
            format!("{} has no nexus.toml: run this in a plugin project (`nexus new <name>` makes one)", dir.display())
        })?;
        let manifest =
            Manifest::from_toml(&manifest_text).map_err(|e| manifest_error(&manifest_path, &manifest_text, &e))?;
        let lang = if dir.join("Cargo.toml").exists() {
            Lang::Rust
        } else if dir.join("package.json").exists() {
            Lang::Js
        } else if dir.join(PYTHON_REQUIREMENTS).exists() || dir.join("src/app.py").exists() {
            Lang::Python
        } else {
            bail!("cannot tell the language of {}: expected Cargo.toml, package.json or src/app.py", dir.display());
        };
        Ok(Self { dir: dir.to_path_buf(), lang, manifest_text, manifest })
    }

    /// The plugin's name (the id's second part).
    pub fn name(&self) -> String {
        self.manifest.id.name.to_string()
    }

    /// Builds the component with the project's toolchain and returns its path. The
    /// toolchain's own output goes to stderr as it comes.
    ///
    /// A build is keyed by its inputs (every project file but the test cases, build output
    /// and tool folders): when they are what the last build was made from and its component
    /// is still the one it wrote, Python and JavaScript skip their toolchain (tens of
    /// seconds); Rust always asks cargo, whose own tracking also sees path dependencies and
    /// is a no-op in well under a second.
    pub fn build(&self) -> anyhow::Result<PathBuf> {
        self.check_world()?;
        let inputs = build_inputs(&self.dir)?;
        if self.lang != Lang::Rust
            && let Some(component) = self.stamped(&inputs)
        {
            eprintln!("up to date {} (its inputs have not changed since the last build)", component.display());
            return Ok(component);
        }
        eprintln!("building {} ({}) with {}...", self.manifest.id, self.lang, self.lang.build_tool());
        let component = match self.lang {
            Lang::Rust => build_rust(&self.dir)?,
            Lang::Python => self.build_python()?,
            Lang::Js => self.build_js()?,
        };
        let stamp = Stamp { inputs, component: component.clone(), component_sha256: file_sha256(&component)? };
        let path = self.stamp_path();
        std::fs::create_dir_all(self.dir.join(STATE_FOLDER))?;
        std::fs::write(&path, serde_json::to_vec_pretty(&stamp)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(component)
    }

    fn stamp_path(&self) -> PathBuf {
        self.dir.join(STATE_FOLDER).join("build.json")
    }

    /// The last build's component, if it was built from exactly `inputs` and is unchanged.
    fn stamped(&self, inputs: &str) -> Option<PathBuf> {
        let stamp: Stamp = serde_json::from_slice(&std::fs::read(self.stamp_path()).ok()?).ok()?;
        (stamp.inputs == inputs && file_sha256(&stamp.component).ok()? == stamp.component_sha256)
            .then_some(stamp.component)
    }

    /// Refuses a Python or JavaScript build whose `wit/world.wit` imports other interfaces
    /// than nexus.toml's capabilities need: those toolchains import the whole world, so an
    /// extra import is one the registry refuses (and tenants would be asked to approve), and
    /// a missing one is a capability the code cannot call. Rust keeps the contract's whole
    /// world (its linker drops what the code never calls), so it is not compared.
    fn check_world(&self) -> anyhow::Result<()> {
        if self.lang == Lang::Rust {
            return Ok(());
        }
        let path = self.dir.join("wit").join("world.wit");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}: run `nexus plugin wit` to write it", path.display()))?;
        let expected = super::new::world_wit(&self.manifest, self.lang);
        let (imported, needed) = (world_imports(&text), world_imports(&expected));
        let extra: Vec<&str> = imported.iter().filter(|i| !needed.contains(i)).map(String::as_str).collect();
        let missing: Vec<&str> = needed.iter().filter(|i| !imported.contains(i)).map(String::as_str).collect();
        if extra.is_empty() && missing.is_empty() {
            return Ok(());
        }
        let mut problems = Vec::new();
        if !extra.is_empty() {
            problems.push(format!(
                "it imports {} but nexus.toml declares no capability for it (the registry would refuse the component)",
                extra.join(", ")
            ));
        }
        if !missing.is_empty() {
            problems.push(format!(
                "nexus.toml's capabilities need {} but it does not import it (the code could not call it)",
                missing.join(", ")
            ));
        }
        bail!(
            "{} does not match nexus.toml: {}. Run `nexus plugin wit` to rewrite it from nexus.toml (or change the \
             capabilities in nexus.toml), then build again",
            path.display(),
            problems.join("; ")
        )
    }

    fn dist(&self) -> PathBuf {
        self.dir.join("dist").join(format!("{}.wasm", self.name()))
    }

    fn build_python(&self) -> anyhow::Result<PathBuf> {
        let venv = self.dir.join(".venv");
        let tool = venv.join("bin").join("componentize-py");
        let requirements = std::fs::read(self.dir.join(PYTHON_REQUIREMENTS))
            .with_context(|| format!("cannot read {}", self.dir.join(PYTHON_REQUIREMENTS).display()))?;
        let wanted = hex::encode(sha2::Sha256::digest(&requirements));
        // The requirements the .venv was last installed from: a change installs again.
        let stamp = venv.join("nexus-requirements.sha256");
        let installed = std::fs::read_to_string(&stamp).ok();
        if !tool.exists() || installed.as_deref().map(str::trim) != Some(wanted.as_str()) {
            if tool.exists() {
                eprintln!("{PYTHON_REQUIREMENTS} changed: installing it into {} again...", venv.display());
            } else {
                eprintln!("installing componentize-py into {} (once)...", venv.display());
                run(
                    Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "python3 -m venv",
                    "install python3 with venv",
                )?;
            }
            run(
                Command::new(venv.join("bin").join("pip"))
                    .args(["install", "--quiet", "--disable-pip-version-check", "-r", PYTHON_REQUIREMENTS])
                    .current_dir(&self.dir),
                "pip install -r requirements.txt",
                "check that PyPI is reachable",
            )?;
            std::fs::write(&stamp, &wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
        }
        std::fs::create_dir_all(self.dir.join("dist"))?;
        let out = self.dist();
        run(
            Command::new(&tool)
                .args(["-d", "wit", "-w", "plugin", "componentize", "-p", "src", "app", "-o"])
                .arg(&out)
                // No __pycache__ in src/: componentize-py bundles that folder.
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .current_dir(&self.dir),
            "componentize-py",
            "fix the error above in src/",
        )?;
        Ok(out)
    }

    fn build_js(&self) -> anyhow::Result<PathBuf> {
        if !self.dir.join("node_modules").exists() {
            eprintln!("installing componentize-js and jco into node_modules (once)...");
            run(
                Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&self.dir),
                "npm ci",
                "install node and npm, and check that the npm registry is reachable",
            )?;
        }
        run(
            Command::new("npm").args(["run", "--silent", "build"]).current_dir(&self.dir),
            "npm run build",
            "fix the error above in src/",
        )?;
        let out = self.dist();
        if !out.exists() {
            bail!("`npm run build` produced no {}; the build script must write it", out.display());
        }
        Ok(out)
    }

    /// The component the last `nexus build` made, if the project's build inputs are still
    /// what it was made from and the file is unchanged: what `check` and `test` use when no
    /// file is named (a stale one would test old code). Editing only test cases keeps it.
    pub fn built(&self) -> Option<PathBuf> {
        self.stamped(&build_inputs(&self.dir).ok()?)
    }
}

/// A manifest problem as `path:line: problem; fix`, the line found from the error's own
/// position (syntax) or from the field it names (`pricing[1].price`).
pub fn manifest_error(path: &Path, text: &str, error: &nexus_registry::manifest::ManifestError) -> anyhow::Error {
    use nexus_registry::manifest::ManifestError;
    let line = match error {
        ManifestError::Syntax(message) => message
            .strip_prefix("line ")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok()),
        ManifestError::Invalid { field, .. } => field_line(text, field),
        ManifestError::Missing { .. } => None,
    };
    let place = line.map_or_else(|| path.display().to_string(), |line| format!("{}:{line}", path.display()));
    anyhow::anyhow!(
        "{place}: {error} [{}]; fix it there (docs/builders.md, \"The manifest\", lists every field), then run the \
         command again",
        error.code().as_str()
    )
}

/// The 1-based line of a manifest field such as `summary`, `pricing[1].price` or
/// `capabilities.http.hosts[0].host`: its table's header, then the key within it.
pub fn field_line(text: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let segments: Vec<&str> = field.split('.').collect();
    let bare = |segment: &str| segment.split('[').next().unwrap_or(segment).to_string();
    let key = bare(segments.last()?);
    let mut from = 0;
    let first = segments[0];
    if let Some((table, index)) = first.split_once('[') {
        let index: usize = index.trim_end_matches(']').parse().ok()?;
        let header = format!("[[{table}]]");
        from = lines.iter().enumerate().filter(|(_, l)| l.trim() == header).nth(index)?.0;
    } else if segments.len() > 1 {
        let header = format!("[{}.{}]", segments[0], bare(segments[1]));
        let table = format!("[{}]", segments[0]);
        from = lines.iter().position(|l| l.trim() == header || l.trim() == table).unwrap_or(0);
    }
    let found = lines.iter().enumerate().skip(from).find(|(n, line)| {
        let line = line.trim_start();
        (*n == from || !line.starts_with('[') || segments.len() == 1)
            && line.strip_prefix(key.as_str()).is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    Some(found.map_or(from, |(n, _)| n) + 1)
}

/// The project folder's own state: the last build's stamp, the local marketplace of
/// `nexus dev --marketplace`. Never a build input.
pub const STATE_FOLDER: &str = ".nexus";

/// What the last build was made from and what it wrote (`.nexus/build.json`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Stamp {
    inputs: String,
    component: PathBuf,
    component_sha256: String,
}

fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// The sha256 of a build's inputs: every file's path (relative, sorted) and bytes, without
/// the test cases, what builds and tools write, and this version of nexus (a newer one may
/// build differently).
pub fn build_inputs(dir: &Path) -> anyhow::Result<String> {
    let mut files = super::source_files(dir, &[dir.join(super::CASES_FOLDER)]);
    files.sort();
    let mut hash = sha2::Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION").as_bytes());
    for file in files {
        let relative = file.strip_prefix(dir).unwrap_or(&file);
        let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        hash.update(relative.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Ok(hex::encode(hash.finalize()))
}

/// Runs a toolchain command with its output on stderr: stdout is the command's result.
fn run(command: &mut Command, what: &str, next: &str) -> anyhow::Result<()> {
    let status = command
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("cannot run {what}: is it installed and on the PATH?"))?;
    if !status.success() {
        bail!("{what} failed ({status}); {next}");
    }
    Ok(())
}

/// The interfaces a world imports (`import kv;` lines), sorted.
fn world_imports(wit: &str) -> Vec<String> {
    let mut imports: Vec<String> = wit
        .lines()
        .filter_map(|line| line.trim().strip_prefix("import ")?.strip_suffix(';').map(|i| i.trim().to_string()))
        .collect();
    imports.sort();
    imports.dedup();
    imports
}

/// `cargo build --release --target wasm32-wasip2` in `dir`, returning the component it
/// produced (read from cargo's JSON messages, so any target folder layout works).
pub fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("the build failed (see above); if the target is missing: rustup target add wasm32-wasip2");
    }
    let package_manifest = std::fs::canonicalize(dir.join("Cargo.toml"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["manifest_path"].as_str().map(PathBuf::from).as_ref() == Some(&package_manifest))
        .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|file| file.as_str().map(PathBuf::from))
        .find(|file| file.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| anyhow::anyhow!("the build produced no .wasm; is the crate a `cdylib`?"))
}
