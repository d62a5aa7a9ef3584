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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use nexus_host::{KvScope, KvStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::project::{Project, STATE_FOLDER};
use crate::cli::client::{decode, unreachable_server};
use crate::cli::output;
use crate::cli::profiles::{self, Profile, write_private};
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
    /// Starts the project's local marketplace on `port` (creating it the first time).
    pub async fn local(project: &Project, port: u16) -> anyhow::Result<Self> {
        let data_dir = project.dir.join(STATE_FOLDER).join("marketplace");
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let mut config = crate::cli::serve::Storage { data_dir: data_dir.clone(), database: None }.config();
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        config.billing_every = Some(Duration::from_secs(60));
        // Plugins may call servers on this machine, as `nexus plugin test` lets them.
        config.allow_private_networks = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
        // The profiles it saves must not replace a sign-in to another marketplace.
        for name in [PUBLISHER_PROFILE, TENANT_PROFILE] {
            if let Some(saved) = profiles::load(name)?
                && !saved.registry.starts_with("http://127.0.0.1:")
            {
                bail!(
                    "the profile `{name}` is signed in to {}; `nexus dev --marketplace` keeps its local tokens under \
                     that name: `nexus logout --profile {name}` first (or use that marketplace with --registry {})",
                    saved.registry,
                    saved.registry
                );
            }
        }
        let lock = crate::server::hold_sqlite_file(&config)?;
        let market = Arc::new(config.market().await?);
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {}: {e} (another `nexus dev --marketplace`? pass --port)", config.listen)
        })?;
        let url = format!("http://{}", listener.local_addr()?);
        let state_file = data_dir.join("dev.json");
        let mut state: LocalState = match std::fs::read(&state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is damaged: delete {} to start afresh", state_file.display(), data_dir.display())
            })?,
            Err(_) => LocalState::default(),
        };
        let publisher = project.manifest.id.publisher.clone();
        if !state.publishers.contains_key(publisher.as_str()) {
            let issued = market
                .registry
                .create_publisher(&publisher, publisher.as_str(), "nexus dev")
                .await
                .with_context(|| format!("cannot create the publisher {publisher} in {}", data_dir.display()))?;
            state.publishers.insert(publisher.to_string(), issued.secret);
        }
        let tenant: crate::accounts::TenantId = LOCAL_TENANT.parse()?;
        if state.tenant_token.is_none() {
            let issued = crate::accounts::create_tenant(&market.db, &tenant, "Development", "nexus dev").await?;
            state.tenant_token = Some(issued.secret);
        }
        let operator = crate::accounts::Caller::Operator { token_id: "nexus-dev".into() };
        crate::dev_versions::link(&market, &operator, publisher.as_str(), &tenant).await?;
        write_private(&state_file, &serde_json::to_vec_pretty(&state)?)?;

        let served = {
            let state = crate::server::AppState { market: market.clone(), public_url: url.clone() };
            tokio::spawn(async move {
                // Held while the server runs: a second one on this folder is refused.
                let _lock = lock;
                if let Err(error) = crate::server::serve_on(listener, state, std::future::pending::<()>()).await {
                    eprintln!("dev: the local marketplace stopped: {error:#}");
                }
            })
        };
        let delivering = crate::runner::worker::keep_delivering(market.clone());
        let billing = crate::billing::run::keep_billing(market.clone(), Duration::from_secs(60));
        let publisher_token = state.publishers[publisher.as_str()].clone();
        let tenant_token = state.tenant_token.clone().unwrap_or_default();
        for (name, token, organization) in [
            (PUBLISHER_PROFILE, &publisher_token, format!("publisher:{publisher}")),
            (TENANT_PROFILE, &tenant_token, format!("tenant:{LOCAL_TENANT}")),
        ] {
            let profile = Profile {
                registry: url.clone(),
                token: token.clone(),
                token_id: String::new(),
                organization,
                email: String::new(),
                expires_at: 0,
            };
            profiles::save(name, profile)?;
        }
        println!("dev: local marketplace on {url} (data in {})", data_dir.display());
        println!(
            "dev: profiles `{TENANT_PROFILE}` (tenant {LOCAL_TENANT}) and `{PUBLISHER_PROFILE}` (publisher {publisher}) \
             point at it: `nexus events send --profile {TENANT_PROFILE} --type <type>`"
        );
        Ok(Self {
            url,
            publisher_token,
            tenant_token,
            local: Some(market),
            tasks: vec![served, delivering, billing],
            state_file: Some(state_file),
        })
    }

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
        let target = &self.target;
        let bytes = std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
        let form = reqwest::multipart::Form::new().text("manifest", project.manifest_text.clone()).part(
            "component",
            reqwest::multipart::Part::bytes(bytes).file_name("component.wasm").mime_str("application/wasm")?,
        );
        let client = reqwest::Client::new();
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
        let requirement = format!("={version}");
        let consent = json!({
            "capabilities": project.manifest.capability_set().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "hosts": project.manifest.requested_hosts().iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        let known = match self.install.clone().or_else(|| target.remembered_install(&plugin)) {
            Some(id) => {
                let found =
                    target.send(client.get(target.url(&format!("/v1/installs/{id}"))), &target.tenant_token).await;
                found.ok().filter(|install| install["status"] != "uninstalled").map(|_| id)
            }
            None => None,
        };
        // Not remembered (another machine, a marketplace given by --registry): the
        // tenant's live install of the plugin, if it has one.
        let known = match known {
            Some(id) => Some(id),
            None => target.live_install(&client, &plugin).await?,
        };
        let install = match known {
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
        let now: Value =
            target.send(client.get(target.url(&format!("/v1/installs/{install}"))), &target.tenant_token).await?;
        if now["version"].as_str() != Some(version.as_str()) {
            bail!(
                "the install {install} runs {} instead of {version}: {}",
                now["version"],
                now["pending_upgrade"]["reason"].as_str().unwrap_or("see `nexus installs --profile dev`")
            );
        }
        println!("dev: {install} runs {version} for the development tenant; deliveries show below as they happen");
        if self.install.as_deref() != Some(install.as_str()) {
            if let Some(old) = self.watcher.take() {
                old.abort();
            }
            self.watcher = Some(tokio::spawn(watch(self.target.clone(), install.clone())));
        }
        self.install = Some(install);
        Ok(version)
    }
}

/// Prints every new delivery to `install` as it happens, oldest first, until aborted.
async fn watch(target: Arc<Target>, install: String) {
    let client = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    let mut first = true;
    let mut kv = kv_data(&target, &install).await;
    let mut estimate = usage_estimate(&target, &client, &install).await;
    loop {
        let page = target
            .send(
                client.get(target.url(&format!("/v1/installs/{install}/invocations?per_page=50"))),
                &target.tenant_token,
            )
            .await;
        if let Ok(page) = page {
            let mut fresh: Vec<Value> = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|record| record["id"].as_str().is_some_and(|id| seen.insert(id.to_string())))
                .cloned()
                .collect();
            fresh.reverse();
            // What ran before the session started is history, not news.
            if !first && !fresh.is_empty() {
                let kv_now = kv_data(&target, &install).await;
                let estimate_now = usage_estimate(&target, &client, &install).await;
                for record in &fresh {
                    print_delivery(record);
                }
                print_kv_changes(&kv, &kv_now);
                print_charge(&estimate, &estimate_now);
                kv = kv_now;
                estimate = estimate_now;
            }
            first = false;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One delivery, as `nexus plugin test` shows a case: plugin text escaped and indented, so
/// nothing it writes reads as the CLI's own line.
fn print_delivery(record: &Value) {
    let text = |field: &str| output::shown(record[field].as_str().unwrap_or_default());
    let micros = record["duration_us"].as_u64().unwrap_or(0);
    println!(
        "event {} {} -> {} in {} ({})",
        text("event_type"),
        text("event_id"),
        text("outcome"),
        output::duration(Duration::from_micros(micros)),
        text("version")
    );
    if let Some(error) = record["error"].as_str() {
        println!("    error  {}", output::shown(error));
    }
    for line in record["logs"].as_array().into_iter().flatten() {
        println!(
            "    log {:<5} {}",
            line["level"].as_str().unwrap_or_default(),
            output::shown(line["message"].as_str().unwrap_or_default())
        );
    }
    if let Some(data) = record["data"].as_str() {
        println!("    data   {}", output::shown(data));
    }
    for action in record["actions"].as_array().into_iter().flatten() {
        println!(
            "    action {} {}",
            output::shown(action["kind"].as_str().unwrap_or_default()),
            output::shown(action["payload"].as_str().unwrap_or_default())
        );
    }
    for (meter, units) in record["usage"].as_object().into_iter().flatten() {
        println!("    usage  {} {units}", output::shown(meter));
    }
    if record["kv_writes"].as_i64().unwrap_or(0) > 0 {
        println!("    kv     {} write(s)", record["kv_writes"]);
    }
}

/// The install's whole KV data, on a local marketplace (another's is not readable).
async fn kv_data(target: &Target, install: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let market = target.local.as_ref()?;
    let store = crate::kv::SqlKv::new(market.db.clone());
    let scope = KvScope { tenant: LOCAL_TENANT.into(), install: install.into() };
    let mut data = BTreeMap::new();
    for key in store.list_keys(&scope, "").await.ok()? {
        if let Some(value) = store.get(&scope, &key).await.ok()? {
            data.insert(key, value);
        }
    }
    Some(data)
}

fn print_kv_changes(before: &Option<BTreeMap<String, Vec<u8>>>, after: &Option<BTreeMap<String, Vec<u8>>>) {
    let (Some(before), Some(after)) = (before, after) else { return };
    let value = |bytes: &[u8]| output::shown(&String::from_utf8_lossy(bytes));
    for (key, new) in after {
        match before.get(key) {
            None => println!("    kv set     {} = {}", output::shown(key), value(new)),
            Some(old) if old != new => {
                println!("    kv changed {} = {} (was {})", output::shown(key), value(new), value(old))
            }
            Some(_) => {}
        }
    }
    for key in before.keys().filter(|key| !after.contains_key(*key)) {
        println!("    kv deleted {}", output::shown(key));
    }
}

/// The period's usage charge so far, as `nexus usage` shows it: (estimate, currency).
async fn usage_estimate(target: &Target, client: &reqwest::Client, install: &str) -> Option<(i64, String)> {
    let usage = target
        .send(client.get(target.url(&format!("/v1/installs/{install}/usage"))), &target.tenant_token)
        .await
        .ok()?;
    usage["meter"].as_str()?;
    Some((usage["estimate_minor"].as_i64()?, usage["currency"].as_str()?.to_string()))
}

fn print_charge(before: &Option<(i64, String)>, after: &Option<(i64, String)>) {
    let Some((now, currency)) = after else { return };
    let added = now - before.as_ref().map_or(0, |(minor, _)| *minor);
    let money = |minor: i64| match nexus_money::Currency::from_code(currency) {
        Ok(currency) => nexus_money::Money::new(minor, currency).to_string(),
        Err(_) => format!("{minor} {currency}"),
    };
    println!(
        "    charge +{} this period, {} so far (charged when the period ends; `nexus usage --profile dev`)",
        money(added),
        money(*now)
    );
}
