//! The HTTP service. `app(state)` builds the router so tests drive it in process;
//! `serve` binds it. Handlers are thin: parse, authorize, call a domain function, map the
//! result (one file per resource under `server/`).

mod account_routes;
mod auth;
mod billing_routes;
mod catalog_routes;
mod domain_routes;
mod envelope;
mod error;
mod event_routes;
pub(crate) mod extract;
mod health;
mod idempotency;
mod install_routes;
mod listen;
mod media_routes;
mod metrics;
pub use listen::ConnectionLimits;
mod openapi;
mod people_routes;
mod placement_routes;
mod registry_routes;
mod review_routes;
mod tier_routes;
mod webhook_routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use nexus_registry::{ArtifactStore, Db, ErrorCode, MAX_COMPONENT_BYTES, Registry};

pub(crate) use billing_routes::csv;
pub use error::ApiError;
pub use idempotency::sweep_expired as sweep_expired_keys;

use crate::error::MarketError;
use crate::market::{Market, MarketConfig};
use crate::runner::TenantLimits;
use crate::secrets::{KeySource, MasterKey};

/// Request bodies other than uploads: JSON documents are small.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Room for the manifest and the form's framing around the largest component.
pub const MAX_UPLOAD_BYTES: usize = MAX_COMPONENT_BYTES as usize + (1 << 20);

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub market: Arc<Market>,
    /// The URL clients reach this server at, for links in responses.
    pub public_url: String,
}

/// Where the service keeps its data and how it admits tenants' events.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The data folder: the SQLite database, the artifact store, the component cache and
    /// (unless `NEXUS_MASTER_KEY` is set) the master key live here.
    pub data_dir: PathBuf,
    /// `postgres://...` to share one database (and its artifact table) between nodes.
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub tenant_limits: TenantLimits,
    /// Internal address ranges plugins' outbound HTTP may reach (none by default).
    pub allow_private_networks: Vec<ipnet::IpNet>,
    /// Bounds on clients' connections.
    pub connections: ConnectionLimits,
    /// How often this node runs billing (`None`: never; operators run it by hand).
    pub billing_every: Option<std::time::Duration>,
    /// How often this node runs payouts (`None`: never; operators run them by hand).
    pub payouts_every: Option<std::time::Duration>,
    pub payout_schedule: crate::billing::payouts::Schedule,
    /// Shifts the billing clock (`NEXUS_CLOCK_OFFSET_MS`): for demos and tests that run real
    /// processes a month ahead. Zero in production.
    pub clock_offset_ms: i64,
    /// Where mail to people goes: an SMTP server (`smtp://`, `smtps://`), or, without one,
    /// `.eml` files in `<data_dir>/outbox/`.
    pub smtp_url: Option<String>,
    /// The sender mail names.
    pub mail_from: String,
}

impl ServeConfig {
    /// Opens the registry this configuration describes.
    pub async fn registry(&self) -> anyhow::Result<Registry> {
        let (db, artifacts) = match &self.database_url {
            Some(url) => {
                let db = Db::connect(url).await?;
                (db.clone(), ArtifactStore::Db(db))
            }
            None => (Db::sqlite_in(&self.data_dir).await?, ArtifactStore::Dir(self.data_dir.join("artifacts"))),
        };
        Ok(Registry::new(db, artifacts))
    }

    /// Opens the whole marketplace: registry, migrations, master key, plugin host.
    pub async fn market(&self) -> anyhow::Result<Market> {
        let clock = Arc::new(crate::billing::SystemClock::shifted(self.clock_offset_ms));
        // No real provider yet: the sandbox, remembering its outcomes in the data folder.
        let sandbox = Arc::new(crate::billing::SandboxProvider::journaled(self.sandbox_journal())?);
        self.market_on(clock, sandbox).await
    }

    /// Where mail to people goes.
    pub fn mailer(&self) -> anyhow::Result<crate::mail::Mailer> {
        Ok(match &self.smtp_url {
            Some(url) => crate::mail::Mailer::smtp(url, &self.mail_from)?,
            None => crate::mail::Mailer::files(self.outbox(), &self.mail_from)?,
        })
    }

    /// Where mail is written without an SMTP server.
    pub fn outbox(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    /// Where the sandbox payment provider journals what it did.
    pub fn sandbox_journal(&self) -> PathBuf {
        self.data_dir.join("sandbox-payments.jsonl")
    }

    /// [`ServeConfig::market`] with a billing clock and sandbox provider of the caller's (the
    /// demo moves its clock and scripts its sandbox).
    pub async fn market_on(
        &self,
        clock: Arc<dyn crate::billing::Clock>,
        sandbox: Arc<crate::billing::SandboxProvider>,
    ) -> anyhow::Result<Market> {
        let registry = Arc::new(self.registry().await?);
        let env_key = std::env::var("NEXUS_MASTER_KEY").ok();
        let (master_key, source) = MasterKey::load_or_create(env_key.as_deref(), &self.data_dir.join("master.key"))?;
        match source {
            KeySource::Env => tracing::info!(key = %master_key.fingerprint(), "master key from NEXUS_MASTER_KEY"),
            KeySource::File(path) => {
                tracing::info!(key = %master_key.fingerprint(), path = %path.display(), "master key")
            }
            KeySource::Created(path) => {
                tracing::warn!(path = %path.display(), "created a new master key; back it up, secrets cannot be read without it")
            }
        }
        let config = MarketConfig {
            master_key,
            host: crate::market::host_with_cache(
                self.data_dir.join("component-cache"),
                nexus_host::OutboundPolicy::allowing(self.allow_private_networks.iter().copied()),
            )?,
            tenant_limits: self.tenant_limits,
            billing: crate::billing::BillingConfig {
                payout_schedule: self.payout_schedule,
                ..crate::billing::BillingConfig::sandboxed(clock, sandbox)
            },
            event_compile_wait: crate::runner::EVENT_COMPILE_WAIT,
            mailer: self.mailer()?,
        };
        Ok(Market::open(registry, config).await?)
    }
}

pub fn app(state: AppState) -> Router {
    app_with(state, &ConnectionLimits::default())
}

/// The router with the request timeouts of `limits`.
pub fn app_with(state: AppState, limits: &ConnectionLimits) -> Router {
    let metrics = state.market.runner.metrics.clone();
    Router::new()
        .merge(health::routes())
        // The JSON API, each route registered with its OpenAPI entry, and `/openapi.json`.
        .merge(openapi::routes())
        .merge(crate::console::routes())
        // Listing images by digest: public, outside the JSON API and its document.
        .merge(media_routes::serving())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::UnknownRoute, "no such route; see /openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::middleware))
        .layer(axum::middleware::from_fn_with_state(state.clone(), durable))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(axum::middleware::from_fn_with_state(metrics, metrics::track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(listen::timeouts(limits))
        .layer(axum::middleware::from_fn(envelope::middleware))
        .with_state(state)
}

/// A changing request is answered only once what it committed is durable ([`Db::durable`]:
/// one fsync shared by every request that committed meanwhile, on SQLite). Reads wrote
/// nothing and do not wait.
///
/// [`Db::durable`]: nexus_registry::Db::durable
async fn durable(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let changing = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let response = next.run(request).await;
    if !changing {
        return response;
    }
    match state.market.db.durable().await {
        Ok(()) => response,
        Err(error) => {
            tracing::error!(%error, "making a request's commits durable");
            ApiError::from(MarketError::Storage(format!("syncing the database to disk: {error}"))).into_response()
        }
    }
}

/// Binds and serves until Ctrl-C or SIGTERM, letting requests (and the invocations they
/// wait on) finish.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let _only_server = hold_sqlite_file(&config)?;
    let market = Arc::new(config.market().await?);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
    let membership = crate::nodes::join(&market, &address.to_string()).await?;
    let heartbeat = crate::nodes::keep_alive(market.clone(), membership.clone());
    let billing = config.billing_every.map(|every| crate::billing::run::keep_billing(market.clone(), every));
    let payouts = config.payouts_every.map(|every| crate::billing::payouts::keep_paying(market.clone(), every));
    // Partner tiers are checked as often as billing runs (recomputed once a UTC day).
    let tiers = config.billing_every.map(|every| crate::partner_tiers::keep_current(market.clone(), every));
    let placements = config.billing_every.map(|every| crate::co_marketing::keep_applied(market.clone(), every));
    let sweeping = idempotency::keep_sweeping(market.db.clone());
    let delivering = crate::runner::worker::keep_delivering(market.clone());
    let warming = {
        let market = market.clone();
        tokio::spawn(async move {
            if let Err(error) = market.runner.warm_installed(&market).await {
                tracing::warn!(%error, "installed components not warmed");
            }
        })
    };
    // One line, the last this process prints: whoever reads it may close the pipe after it.
    let mail = match &config.smtp_url {
        Some(_) => "mail to people goes through --smtp-url".to_string(),
        None => format!("mail to people is written to {}", config.outbox().display()),
    };
    println!("nexus serving on {public_url} (data in {}, node {}; {mail})", config.data_dir.display(), membership.id);
    let state = AppState { market: market.clone(), public_url };
    let served = serve_with(listener, state, config.connections, shutdown_signal()).await;
    heartbeat.abort();
    warming.abort();
    sweeping.abort();
    delivering.abort();
    for task in [billing, payouts, tiers, placements].into_iter().flatten() {
        task.abort();
    }
    crate::nodes::leave(&market, &membership).await;
    served
}

/// On SQLite one server writes a file: what it finds claimed by another process (a charge's
/// collection attempt, a request's idempotency key) was claimed by one that was killed, and
/// is recovered at once. So a second `nexus serve` on the same file is refused at start. The
/// lock is the operating system's on `<database>.serve-lock`, held while the process lives
/// and released however it ends (`kill -9` included). `None` on PostgreSQL.
pub fn hold_sqlite_file(config: &ServeConfig) -> anyhow::Result<Option<std::fs::File>> {
    use anyhow::Context;
    let database = match &config.database_url {
        None => config.data_dir.join("registry.db"),
        Some(url) => match nexus_registry::db::sqlite_file(url) {
            Some(file) => file,
            None => return Ok(None),
        },
    };
    let path = PathBuf::from(format!("{}.serve-lock", database.display()));
    if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `nexus serve` is using {}: stop it first, or give this one its own --data-dir \
             (several nodes share a marketplace on PostgreSQL: --database postgres://…)",
            database.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Serves `state` on `listener` with the default connection limits until `shutdown`
/// completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listener, state, ConnectionLimits::default(), shutdown).await
}

/// Serves `state` on `listener` within `limits` until `shutdown` completes.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    listen::serve(listener, app_with(state, &limits), limits, shutdown).await?;
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
