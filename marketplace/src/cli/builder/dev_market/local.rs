//! The project's own marketplace for `nexus dev --marketplace` without `--registry`: started
//! in this process from `.nexus/marketplace/`, with the manifest's publisher and the
//! development tenant created once and their tokens saved under the dev profiles.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::{LOCAL_TENANT, LocalState, PUBLISHER_PROFILE, TENANT_PROFILE, Target};
use crate::cli::builder::project::{Project, STATE_FOLDER};
use crate::cli::profiles::{self, Profile, write_private};
use crate::market::Market;

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
        refuse_foreign_profiles()?;
        let lock = crate::server::hold_sqlite_file(&config)?;
        let market = Arc::new(config.market().await?);
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {}: {e} (another `nexus dev --marketplace`? pass --port)", config.listen)
        })?;
        let url = format!("http://{}", listener.local_addr()?);
        let state_file = data_dir.join("dev.json");
        let state = open_accounts(&market, project, &state_file, &data_dir).await?;

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
        let publisher = project.manifest.id.publisher.as_str();
        let publisher_token = state.publishers[publisher].clone();
        let tenant_token = state.tenant_token.clone().unwrap_or_default();
        save_profiles(&url, publisher, &publisher_token, &tenant_token)?;
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
}

/// The profiles it saves must not replace a sign-in to another marketplace.
fn refuse_foreign_profiles() -> anyhow::Result<()> {
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
    Ok(())
}

/// The saved state, with the manifest's publisher and the development tenant created the
/// first time and the tenant linked to the publisher's development versions; written back.
async fn open_accounts(
    market: &Market,
    project: &Project,
    state_file: &Path,
    data_dir: &Path,
) -> anyhow::Result<LocalState> {
    let mut state: LocalState = match std::fs::read(state_file) {
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
    crate::dev_versions::link(market, &operator, publisher.as_str(), &tenant).await?;
    write_private(state_file, &serde_json::to_vec_pretty(&state)?)?;
    Ok(state)
}

/// Saves the two tokens under the dev profiles, pointing at the local marketplace.
fn save_profiles(url: &str, publisher: &str, publisher_token: &str, tenant_token: &str) -> anyhow::Result<()> {
    for (name, token, organization) in [
        (PUBLISHER_PROFILE, publisher_token, format!("publisher:{publisher}")),
        (TENANT_PROFILE, tenant_token, format!("tenant:{LOCAL_TENANT}")),
    ] {
        let profile = Profile {
            registry: url.to_string(),
            token: token.to_string(),
            token_id: String::new(),
            organization,
            email: String::new(),
            expires_at: 0,
        };
        profiles::save(name, profile)?;
    }
    Ok(())
}
