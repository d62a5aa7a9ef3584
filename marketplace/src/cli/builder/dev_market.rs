//! `nexus dev --marketplace`: the working copy running in a marketplace on every change.
//!
//! Without `--registry` it starts a local marketplace in the project's `.nexus/marketplace/`
//! (SQLite, in this process, on `127.0.0.1:<port>`), creates the manifest's publisher and a
//! development tenant `dev` once, and saves their tokens under the profiles `dev-publisher`
//! and `dev`, so `nexus events send --profile dev` and every other command reach it. With
//! `--registry` it uses that marketplace and the two profiles (an operator there links the
//! tenant: `nexus operator dev-tenant`).
//!
//! Each round publishes the build as the next development version (`1.2.0-dev.N`: never
//! listed, never resolved for anyone but the development tenants, pruned as newer ones come)
//! and moves the tenant's install to it, installing it the first time with consent to what
//! the manifest asks. A watcher prints every delivery to that install as it happens: outcome,
//! logs, data and actions, KV changes (local marketplace) and the usage with what it adds to
//! the period's charge.

mod local;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::project::Project;
use crate::cli::client::{decode, unreachable_server};
use crate::cli::profiles::{self, write_private};
use crate::market::Market;

/// The profiles `nexus dev --marketplace` saves (and, with `--registry`, reads).
pub const TENANT_PROFILE: &str = "dev";
pub const PUBLISHER_PROFILE: &str = "dev-publisher";
/// The development tenant of a local marketplace.
const LOCAL_TENANT: &str = "dev";

/// How the round's install is set up (`nexus dev --marketplace --config … --secret …`).
#[derive(Debug, Clone, Default)]
pub struct InstallSettings {
    pub plan: Option<String>,
    pub config: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
}

/// The marketplace a session pushes to.
pub struct Target {
    url: String,
    publisher_token: String,
    tenant_token: String,
    /// The local marketplace, for what only its own process can read (KV data).
    local: Option<Arc<Market>>,
    /// The local server's tasks, stopped with the session.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    state_file: Option<PathBuf>,
}

impl Drop for Target {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What a local marketplace keeps between runs (`.nexus/marketplace/dev.json`, 0600).
#[derive(Debug, Default, Serialize, Deserialize)]
struct LocalState {
    /// Publisher name → its token.
    publishers: BTreeMap<String, String>,
    tenant_token: Option<String>,
    /// Plugin → the development tenant's install of it.
    installs: BTreeMap<String, String>,
}

impl Target {
    /// A marketplace of one's own: the two profiles' tokens (see [`TENANT_PROFILE`]).
    pub fn remote(registry: &str, publisher_profile: &str, tenant_profile: &str) -> anyhow::Result<Self> {
        let token = |name: &str, what: &str| -> anyhow::Result<String> {
            let profile = profiles::load(name)?.with_context(|| {
                format!("no profile `{name}`: sign in as the {what} with `nexus login --registry {registry} --profile {name}`")
            })?;
            if profile.registry.trim_end_matches('/') != registry.trim_end_matches('/') {
                bail!(
                    "profile `{name}` signed in to {}, not {registry}: `nexus login --registry {registry} --profile {name}`",
                    profile.registry
                );
            }
            Ok(profile.token)
        };
        Ok(Self {
            url: registry.trim_end_matches('/').to_string(),
            publisher_token: token(publisher_profile, "publisher")?,
            tenant_token: token(tenant_profile, "development tenant")?,
            local: None,
            tasks: Vec::new(),
            state_file: None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn send(&self, request: reqwest::RequestBuilder, token: &str) -> anyhow::Result<Value> {
        let response = request.bearer_auth(token).send().await.map_err(|e| unreachable_server(&self.url, &e))?;
        decode(response).await
    }

    /// The development tenant's live install of `plugin` (a tenant has at most one).
    async fn live_install(&self, client: &reqwest::Client, plugin: &str) -> anyhow::Result<Option<String>> {
        let mut page = Some(1);
        while let Some(number) = page {
            let url = self.url(&format!("/v1/installs?per_page=100&page={number}"));
            let listed = self.send(client.get(url), &self.tenant_token).await?;
            let items = listed["items"].as_array().cloned().unwrap_or_default();
            if let Some(found) = items.iter().find(|install| install["plugin"] == plugin) {
                return Ok(found["id"].as_str().map(str::to_string));
            }
            page = listed["next_page"].as_u64().and_then(|n| u32::try_from(n).ok());
        }
        Ok(None)
    }

    fn remembered_install(&self, plugin: &str) -> Option<String> {
        let bytes = std::fs::read(self.state_file.as_ref()?).ok()?;
        serde_json::from_slice::<LocalState>(&bytes).ok()?.installs.get(plugin).cloned()
    }

    fn remember_install(&self, plugin: &str, install: &str) -> anyhow::Result<()> {
        let Some(file) = &self.state_file else { return Ok(()) };
        let mut state: LocalState = serde_json::from_slice(&std::fs::read(file)?)?;
        state.installs.insert(plugin.to_string(), install.to_string());
        write_private(file, &serde_json::to_vec_pretty(&state)?)
    }
}

/// A `nexus dev --marketplace` session: the target and the install it keeps current.
pub struct Session {
    target: Arc<Target>,
    settings: InstallSettings,
    install: Option<String>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    pub fn new(target: Target, settings: InstallSettings) -> Self {
        Self { target: Arc::new(target), settings, install: None, watcher: None }
    }

    /// Publishes `component` as the next development version and moves the development
    /// tenant's install to it (installing it the first time); its version.
    pub async fn push(&mut self, project: &Project, component: &Path) -> anyhow::Result<String> {
        let client = reqwest::Client::new();
        let version = self.publish(&client, project, component).await?;
        let target = &self.target;
        let plugin = project.manifest.id.to_string();
        let requirement = format!("={version}");
        let consent = json!({
            "capabilities": project.manifest.capability_set().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "hosts": project.manifest.requested_hosts().iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        let install = match self.known_install(&client, &plugin).await? {
            Some(id) => {
                let path = target.url(&format!("/v1/installs/{id}"));
                let moved = target
                    .send(client.patch(&path).json(&json!({ "requirement": requirement })), &target.tenant_token)
                    .await?;
                if moved["pending_upgrade"].is_object() {
                    // It asks for more than was granted: the manifest is what was asked.
                    let upgrade = target.url(&format!("/v1/installs/{id}/upgrade"));
                    target
                        .send(client.post(upgrade).json(&json!({ "consent": consent })), &target.tenant_token)
                        .await?;
                }
                id
            }
            None => {
                let body = json!({
                    "plugin": plugin, "requirement": requirement, "consent": consent, "plan": self.settings.plan,
                    "config": self.settings.config, "secrets": self.settings.secrets,
                });
                let created = target
                    .send(client.post(target.url("/v1/installs")).json(&body), &target.tenant_token)
                    .await
                    .context(
                        "the development tenant could not install it (pass --config/--secret for required settings)",
                    )?;
                created["id"].as_str().unwrap_or_default().to_string()
            }
        };
        target.remember_install(&plugin, &install)?;
        self.check_runs(&client, &install, &version).await?;
        println!("dev: {install} runs {version} for the development tenant; deliveries show below as they happen");
        self.follow(install);
        Ok(version)
    }

    /// Publishes `component` as the next development version; its version.
    async fn publish(&self, client: &reqwest::Client, project: &Project, component: &Path) -> anyhow::Result<String> {
        let target = &self.target;
        let bytes = std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
        let form = reqwest::multipart::Form::new().text("manifest", project.manifest_text.clone()).part(
            "component",
            reqwest::multipart::Part::bytes(bytes).file_name("component.wasm").mime_str("application/wasm")?,
        );
        let published = target
            .send(client.post(target.url("/v1/publish/dev")).multipart(form), &target.publisher_token)
            .await
            .context("the development version was not published")?;
        for warning in published["warnings"].as_array().into_iter().flatten() {
            eprintln!("warning: {}", warning.as_str().unwrap_or_default());
        }
        let version = published["version"].as_str().unwrap_or_default().to_string();
        let plugin = project.manifest.id.to_string();
        let pruned: Vec<&str> =
            published["pruned"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        println!(
            "dev: published {plugin} {version}{}",
            if pruned.is_empty() { String::new() } else { format!(" (pruned {})", pruned.join(", ")) }
        );
        Ok(version)
    }

    /// The development tenant's install of `plugin` this session or an earlier one made, if
    /// it is still installed; else its live install of the plugin, if it has one.
    async fn known_install(&self, client: &reqwest::Client, plugin: &str) -> anyhow::Result<Option<String>> {
        let target = &self.target;
        let known = match self.install.clone().or_else(|| target.remembered_install(plugin)) {
            Some(id) => {
                let found =
                    target.send(client.get(target.url(&format!("/v1/installs/{id}"))), &target.tenant_token).await;
                found.ok().filter(|install| install["status"] != "uninstalled").map(|_| id)
            }
            None => None,
        };
        // Not remembered (another machine, a marketplace given by --registry): the
        // tenant's live install of the plugin, if it has one.
        match known {
            Some(id) => Ok(Some(id)),
            None => target.live_install(client, plugin).await,
        }
    }

    /// Fails unless `install` now runs `version` (a version asking for more stays pending).
    async fn check_runs(&self, client: &reqwest::Client, install: &str, version: &str) -> anyhow::Result<()> {
        let target = &self.target;
        let now: Value =
            target.send(client.get(target.url(&format!("/v1/installs/{install}"))), &target.tenant_token).await?;
        if now["version"].as_str() != Some(version) {
            bail!(
                "the install {install} runs {} instead of {version}: {}",
                now["version"],
                now["pending_upgrade"]["reason"].as_str().unwrap_or("see `nexus installs --profile dev`")
            );
        }
        Ok(())
    }

    /// Watches `install`'s deliveries from now on, instead of the previous install's.
    fn follow(&mut self, install: String) {
        if self.install.as_deref() != Some(install.as_str()) {
            if let Some(old) = self.watcher.take() {
                old.abort();
            }
            self.watcher = Some(tokio::spawn(watch::watch(self.target.clone(), install.clone())));
        }
        self.install = Some(install);
    }
}
