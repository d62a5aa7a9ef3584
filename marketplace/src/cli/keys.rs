//! `nexus keys`: generate a signing key, register it, list and revoke keys.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use nexus_registry::{KeyInfo, PublicKey, SecretKey};
use serde::Deserialize;

use super::client::Connection;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a signing key file (kept private) and print its public key.
    Generate {
        /// Where to write it (default: ~/.config/nexus/signing.key).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Register the public half of a key with your publisher.
    Add {
        /// The secret key file whose public key to register (default: ~/.config/nexus/signing.key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Or the public key itself (ed25519:...).
        #[arg(long, conflicts_with = "key")]
        public_key: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List your publisher's keys.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Revoke a key: versions it signed stop verifying.
    Revoke {
        fingerprint: String,
        #[command(flatten)]
        connection: Connection,
    },
}

pub fn default_key_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("nexus").join("signing.key"))
}

pub fn read_secret_key(path: &Path) -> anyhow::Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the signing key {}", path.display()))?;
    text.parse().with_context(|| format!("{} is not a Nexus signing key", path.display()))
}

#[derive(Deserialize)]
struct WhoAmI {
    publisher: String,
}

async fn publisher(connection: &Connection) -> anyhow::Result<String> {
    let who: WhoAmI = connection.send(connection.client().get(connection.url("/v1/whoami"))).await?;
    Ok(who.publisher)
}

pub async fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate { out, force } => {
            let path = out.or_else(default_key_path).context("no home folder: pass --out")?;
            if path.exists() && !force {
                bail!("{} already exists; pass --force to replace it (the old key stops being usable)", path.display());
            }
            let key = SecretKey::generate()?;
            write_private(&path, &format!("{key}\n"))?;
            println!("public key  {}", key.public_key());
            println!("fingerprint {}", key.public_key().fingerprint());
            eprintln!("wrote {}; register it with `nexus keys add`", path.display());
        }
        KeysCommand::Add { key, public_key, connection } => {
            let public: PublicKey = match public_key {
                Some(text) => text.parse()?,
                None => {
                    let path = key.or_else(default_key_path).context("no home folder: pass --key")?;
                    read_secret_key(&path)?.public_key()
                }
            };
            let publisher = publisher(&connection).await?;
            let body = serde_json::json!({ "public_key": public.to_string() });
            let url = connection.url(&format!("/v1/publishers/{publisher}/keys"));
            let info: KeyInfo = connection.send(connection.client().post(url).json(&body)).await?;
            println!("registered key {} for {publisher}", info.fingerprint);
        }
        KeysCommand::List { connection } => {
            let publisher = publisher(&connection).await?;
            let url = connection.url(&format!("/v1/publishers/{publisher}/keys?per_page=100"));
            let page: serde_json::Value = connection.send(connection.client().get(url)).await?;
            for key in page["items"].as_array().into_iter().flatten() {
                let state = if key["revoked_at"].is_null() { "active" } else { "revoked" };
                println!(
                    "{}  {state:<7}  {}",
                    key["fingerprint"].as_str().unwrap_or("?"),
                    key["public_key"].as_str().unwrap_or("?")
                );
            }
        }
        KeysCommand::Revoke { fingerprint, connection } => {
            let publisher = publisher(&connection).await?;
            let url = connection.url(&format!("/v1/publishers/{publisher}/keys/{fingerprint}"));
            let response = connection.client().delete(url).bearer_auth(connection.token()?).send().await?;
            if !response.status().is_success() {
                super::client::decode::<serde_json::Value>(response).await?;
            }
            println!("revoked key {fingerprint}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options.open(path)?.write_all(text.as_bytes())?;
    Ok(())
}
