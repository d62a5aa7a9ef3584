//! `nexus publish`: build (if given a crate), sign (if a key is configured), upload with a
//! progress bar, and print the digest and the listing URL.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use nexus_host::Digest;
use nexus_registry::signature::signing_message;
use nexus_registry::{Manifest, SecretKey};
use serde::Deserialize;

use super::client::{Connection, decode, unreachable_server};
use super::keys::{default_key_path, read_secret_key};

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// A plugin project folder (built and checked first, as `nexus plugin check` does), or
    /// a built component (.wasm) with its manifest, uploaded as it is.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// The manifest, when publishing a .wasm that has no nexus.toml beside it.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The signing key file (default: ~/.config/nexus/signing.key when it exists).
    #[arg(long, env = "NEXUS_SIGNING_KEY")]
    key: Option<PathBuf>,
    /// Publish unsigned even if a key is configured.
    #[arg(long)]
    no_sign: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Deserialize)]
struct PublishedBody {
    id: String,
    version: String,
    digest: String,
    size: u64,
    signed_by: Option<String>,
    warnings: Vec<String>,
    url: String,
    installs: Moves,
}

/// What the new version did to the plugin's installs.
#[derive(Debug, Deserialize)]
struct Moves {
    moved: u64,
    waiting_for_consent: u64,
    left_behind: u64,
}

pub async fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let (component_path, manifest_path) = locate(&args)?;
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read the manifest {}", manifest_path.display()))?;
    let manifest = Manifest::from_toml(&manifest_text).with_context(|| format!("in {}", manifest_path.display()))?;
    // `[media]` paths are the project folder's, the one nexus.toml is in; every file is read
    // now, so a missing one never leaves a version published without its images.
    let project = manifest_path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let media = super::media::Files::of_manifest(&project, &manifest.media)?;
    let component =
        std::fs::read(&component_path).with_context(|| format!("cannot read {}", component_path.display()))?;
    let digest = Digest::of(&component);
    if args.path.is_dir() {
        // A project's fresh build is checked as `nexus plugin check` would, on exactly the
        // bytes that go up, so a describe() that disagrees with nexus.toml never spends a
        // version number.
        let host = super::plugin_run::LocalHost::new(None)?;
        eprintln!("checking the build...");
        if let Err(refusal) = super::builder::check::check(&host, &manifest_text, component.clone()).await {
            eprintln!("refused   {refusal}");
            eprintln!("nothing was uploaded; fix it, then `nexus plugin check` and publish again");
            return Ok(ExitCode::from(1));
        }
    }

    let mut form = reqwest::multipart::Form::new().text("manifest", manifest_text).text("digest", digest.to_string());
    if let Some(key) = signing_key(&args)? {
        let signature = key.sign(&signing_message(&manifest.id, &manifest.version, &digest));
        eprintln!("signing with key {}", key.public_key().fingerprint());
        form = form.text("signature", signature.to_string()).text("key", key.public_key().fingerprint());
    }
    eprintln!("uploading {} {} ({} KiB, {digest})", manifest.id, manifest.version, component.len() / 1024);
    form = form.part("component", progress_part(component)?);

    let request = args.connection.client().post(args.connection.url("/v1/publish")).multipart(form);
    let response = request
        .bearer_auth(args.connection.token()?)
        .send()
        .await
        .map_err(|e| unreachable_server(&args.connection.server(), &e))?;
    let published: PublishedBody = decode(response).await?;
    print_published(&published);
    if !media.is_empty() {
        // Declared screenshots are the listing's screenshots; an icon alone leaves them be.
        let trim = !manifest.media.screenshots.is_empty();
        super::media::upload(&args.connection, &published.id, media, trim).await.context(
            "the version is published, but its listing's images are not all up: fix the image, then \
             `nexus listing media` puts them up without a new version",
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's warnings, then what was published: version, digest, signer, listing, and
/// where the installs of the plugin stand.
fn print_published(published: &PublishedBody) {
    for warning in &published.warnings {
        eprintln!("warning: {warning}");
    }
    println!("published {}@{} ({} bytes)", published.id, published.version, published.size);
    println!("digest    {}", published.digest);
    if let Some(key) = &published.signed_by {
        println!("signed by {key}");
    }
    println!("listing   {}", published.url);
    let moves = &published.installs;
    println!(
        "installs  {} moved to it, {} waiting for their tenant's consent, {} left behind (their requirement excludes it)",
        moves.moved, moves.waiting_for_consent, moves.left_behind
    );
}

/// The component to upload and its manifest: a crate folder is built first.
fn locate(args: &PublishArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    if args.path.is_dir() {
        let manifest = args.manifest.clone().unwrap_or_else(|| args.path.join("nexus.toml"));
        if !manifest.exists() {
            bail!(
                "{} has no nexus.toml; write one (`nexus new` makes a project; docs/builders.md explains every field) or pass --manifest",
                args.path.display()
            );
        }
        return Ok((super::builder::project::Project::open(&args.path)?.build()?, manifest));
    }
    let beside = args.path.parent().map(|dir| dir.join("nexus.toml"));
    let manifest = args.manifest.clone().or(beside.filter(|p| p.exists())).ok_or_else(|| {
        anyhow::anyhow!("no manifest for {}: pass --manifest path/to/nexus.toml", args.path.display())
    })?;
    Ok((args.path.clone(), manifest))
}

fn signing_key(args: &PublishArgs) -> anyhow::Result<Option<SecretKey>> {
    if args.no_sign {
        return Ok(None);
    }
    match &args.key {
        Some(path) => read_secret_key(path).map(Some),
        None => match default_key_path().filter(|p| p.exists()) {
            Some(path) => read_secret_key(&path).map(Some),
            None => Ok(None),
        },
    }
}

/// The component as a form part whose upload advances a progress bar.
fn progress_part(component: Vec<u8>) -> anyhow::Result<reqwest::multipart::Part> {
    let length = component.len() as u64;
    let bar = ProgressBar::new(length);
    bar.set_style(ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")?);
    let chunks: Vec<Vec<u8>> = component.chunks(64 << 10).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
        bar.inc(chunk.len() as u64);
        if bar.position() == length {
            bar.finish_and_clear();
        }
        Ok::<_, std::io::Error>(chunk)
    }));
    Ok(reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), length)
        .file_name("component.wasm")
        .mime_str("application/wasm")?)
}
