//! Listing media from the command line: `nexus publish` puts up the `[media]` of nexus.toml
//! after the version is published, and `nexus listing media publisher/name --icon PATH
//! --screenshot PATH ...` replaces them without a new version. Files are read and checked to
//! exist before anything is sent; the server decides whether they are acceptable images.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use nexus_registry::manifest::{MAX_SCREENSHOTS, Media};
use serde::Deserialize;

use super::client::Connection;

#[derive(Debug, Args)]
pub struct MediaArgs {
    /// The plugin: publisher/name.
    plugin: String,
    /// The icon: a square PNG, JPEG or WebP, 64 to 1024 pixels, at most 1 MiB.
    #[arg(long)]
    icon: Option<PathBuf>,
    /// A screenshot (PNG, JPEG or WebP, at least 320 pixels wide, at most 5 MiB); repeat for
    /// up to 8, in the order shown. Screenshots beyond the ones given are removed.
    #[arg(long = "screenshot")]
    screenshots: Vec<PathBuf>,
    /// A caption (alt text) per screenshot, in the same order as --screenshot.
    #[arg(long = "caption")]
    captions: Vec<String>,
    /// Remove the icon.
    #[arg(long, conflicts_with = "icon")]
    remove_icon: bool,
    #[command(flatten)]
    connection: Connection,
}

/// One listing image as the API lists it.
#[derive(Debug, Deserialize)]
struct Item {
    slot: String,
    position: u32,
    url: String,
    width: u32,
    height: u32,
    bytes: u64,
    caption: Option<String>,
}

/// Files to put up: the icon, and each screenshot with its caption.
#[derive(Debug, Default)]
pub struct Files {
    icon: Option<(PathBuf, Vec<u8>)>,
    screenshots: Vec<(PathBuf, Vec<u8>, Option<String>)>,
}

impl Files {
    pub fn is_empty(&self) -> bool {
        self.icon.is_none() && self.screenshots.is_empty()
    }

    /// The files `[media]` names, relative to the project folder `root`, read now: a missing
    /// one fails here, before anything is published.
    pub fn of_manifest(root: &Path, media: &Media) -> anyhow::Result<Self> {
        let read = |field: String, path: &str| -> anyhow::Result<(PathBuf, Vec<u8>)> {
            let full = root.join(path);
            let bytes = std::fs::read(&full).with_context(|| {
                format!(
                    "{field} in nexus.toml names {path}, which cannot be read at {}: add the image there, or \
                     correct or remove `{field}` under [media]",
                    full.display()
                )
            })?;
            Ok((full, bytes))
        };
        let icon = media.icon.as_deref().map(|path| read("media.icon".into(), path)).transpose()?;
        let mut screenshots = Vec::new();
        for (index, path) in media.screenshots.iter().enumerate() {
            let (full, bytes) = read(format!("media.screenshots[{index}]"), path)?;
            screenshots.push((full, bytes, None));
        }
        Ok(Self { icon, screenshots })
    }

    fn of_args(args: &MediaArgs) -> anyhow::Result<Self> {
        if args.screenshots.len() > MAX_SCREENSHOTS {
            anyhow::bail!("a listing shows at most {MAX_SCREENSHOTS} screenshots; {} given", args.screenshots.len());
        }
        if args.captions.len() > args.screenshots.len() {
            anyhow::bail!(
                "{} captions for {} screenshots: give one --caption per --screenshot, in order",
                args.captions.len(),
                args.screenshots.len()
            );
        }
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
        let icon = args.icon.as_ref().map(|path| Ok::<_, anyhow::Error>((path.clone(), read(path)?))).transpose()?;
        let mut screenshots = Vec::new();
        for (index, path) in args.screenshots.iter().enumerate() {
            screenshots.push((path.clone(), read(path)?, args.captions.get(index).cloned()));
        }
        Ok(Self { icon, screenshots })
    }
}

/// Puts `files` up on the listing of `plugin`, printing each as it goes. With `trim`,
/// screenshots at positions after the last one given are removed, so the listing shows
/// exactly these.
pub async fn upload(connection: &Connection, plugin: &str, files: Files, trim: bool) -> anyhow::Result<()> {
    let client = connection.client();
    let base = format!("/v1/plugins/{plugin}/media");
    let count = files.screenshots.len();
    let mut uploads: Vec<(String, PathBuf, Vec<u8>, reqwest::Url)> = Vec::new();
    let url = |path: &str| {
        reqwest::Url::parse(&connection.url(path)).with_context(|| format!("{} is not a URL", connection.server()))
    };
    if let Some((path, bytes)) = files.icon {
        uploads.push(("icon".into(), path, bytes, url(&format!("{base}/icon"))?));
    }
    for (index, (path, bytes, caption)) in files.screenshots.into_iter().enumerate() {
        let mut target = url(&format!("{base}/screenshots/{}", index + 1))?;
        if let Some(caption) = caption {
            target.query_pairs_mut().append_pair("caption", &caption);
        }
        uploads.push((format!("screenshot {}", index + 1), path, bytes, target));
    }
    let total = uploads.len();
    for (done, (what, path, bytes, url)) in uploads.into_iter().enumerate() {
        eprintln!("media     [{}/{total}] {what}: {} ({} KiB)", done + 1, path.display(), bytes.len().div_ceil(1024));
        let request = client.put(url).body(bytes);
        let item: Item = connection.send(request).await.with_context(|| format!("uploading {}", path.display()))?;
        println!("{}", describe(&item));
    }
    if !trim {
        return Ok(());
    }
    let shown: Vec<Item> = connection.send(client.get(connection.url(&base))).await?;
    for item in shown.iter().filter(|i| i.slot == "screenshot" && i.position as usize > count) {
        delete(connection, &format!("{base}/screenshots/{}", item.position)).await?;
        println!("removed   screenshot {} (not among those given)", item.position);
    }
    Ok(())
}

/// A `DELETE` answered 204, or the API's error.
async fn delete(connection: &Connection, path: &str) -> anyhow::Result<()> {
    let request = connection.client().delete(connection.url(path)).bearer_auth(connection.token()?);
    let response = request.send().await.map_err(|e| super::client::unreachable_server(&connection.server(), &e))?;
    if !response.status().is_success() {
        super::client::decode::<serde_json::Value>(response).await?;
    }
    Ok(())
}

fn describe(item: &Item) -> String {
    let place = if item.slot == "icon" { "icon".to_string() } else { format!("screenshot {}", item.position) };
    let caption = item.caption.as_deref().map(|c| format!(" \"{c}\"")).unwrap_or_default();
    format!(
        "{place:<13} {}×{} px, {} KiB kept, {}{caption}",
        item.width,
        item.height,
        item.bytes.div_ceil(1024),
        item.url
    )
}

/// `nexus listing media`.
pub async fn run(args: MediaArgs) -> anyhow::Result<ExitCode> {
    if args.plugin.split('/').count() != 2 {
        anyhow::bail!("expected publisher/name, got `{}`", args.plugin);
    }
    let connection = &args.connection;
    let files = Files::of_args(&args)?;
    if args.remove_icon {
        delete(connection, &format!("/v1/plugins/{}/media/icon", args.plugin)).await?;
        println!("removed   icon");
    }
    if !files.is_empty() {
        // Only an icon given: the screenshots stay as they are.
        let trim = !files.screenshots.is_empty();
        upload(connection, &args.plugin, files, trim).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.remove_icon {
        return Ok(ExitCode::SUCCESS);
    }
    let shown: Vec<Item> =
        connection.send(connection.client().get(connection.url(&format!("/v1/plugins/{}/media", args.plugin)))).await?;
    if shown.is_empty() {
        println!("{} shows no icon and no screenshots", args.plugin);
    }
    for item in &shown {
        println!("{}", describe(item));
    }
    Ok(ExitCode::SUCCESS)
}
