//! Sign-ins saved by `nexus login`: one token (and the server it is for) per profile, in
//! `credentials.toml` under `$NEXUS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/nexus`, else
//! `~/.config/nexus`. The file is created readable by its owner only (0600, its folder
//! 0700) and rewritten whole through a temporary file, so a crash never leaves half of it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The profile used without `--profile`.
pub const DEFAULT: &str = "default";
/// The server used when neither `--registry` nor a profile names one.
pub const LOCAL: &str = "http://127.0.0.1:8080";

/// One saved sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub registry: String,
    pub token: String,
    pub token_id: String,
    /// `tenant:<id>`, `publisher:<name>` or `operator`.
    pub organization: String,
    pub email: String,
    pub expires_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// Where the credentials file is.
pub fn path() -> anyhow::Result<PathBuf> {
    let dir = match (std::env::var_os("NEXUS_CONFIG_DIR"), std::env::var_os("XDG_CONFIG_HOME")) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Some(config)) => PathBuf::from(config).join("nexus"),
        (None, None) => {
            let home = std::env::var_os("HOME").context("no HOME to keep credentials in: set NEXUS_CONFIG_DIR")?;
            PathBuf::from(home).join(".config").join("nexus")
        }
    };
    Ok(dir.join("credentials.toml"))
}

fn read() -> anyhow::Result<File> {
    let path = path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{} is not a credentials file", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write(file: &File) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let path = path()?;
    let dir = path.parent().context("the credentials file has no folder")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let text = toml::to_string(file).context("cannot write the credentials")?;
    write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// Writes `bytes` to `path` readable by its owner only (0600), whole or not at all: through
/// a temporary file beside it, synced, then renamed over it. For files that hold tokens.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path.file_name().context("a private file needs a name")?.to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    // An existing temporary file keeps its mode through `open`; set it again.
    out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The profile `name`, if it was saved.
pub fn load(name: &str) -> anyhow::Result<Option<Profile>> {
    Ok(read()?.profiles.remove(name))
}

/// Saves (or replaces) the profile `name`; the file's path.
pub fn save(name: &str, profile: Profile) -> anyhow::Result<PathBuf> {
    let mut file = read()?;
    file.profiles.insert(name.to_string(), profile);
    write(&file)
}

/// Forgets the profile `name`; whether there was one.
pub fn remove(name: &str) -> anyhow::Result<bool> {
    let mut file = read()?;
    let removed = file.profiles.remove(name).is_some();
    if removed {
        write(&file)?;
    }
    Ok(removed)
}
