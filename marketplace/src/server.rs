//! The HTTP service. `app(state)` builds the router so tests drive it in process;
//! `serve` binds it. Handlers are thin: parse, authorize, call a domain function, map the
//! result (one file per resource under `server/`).

mod auth;
mod error;
mod health;
mod registry_routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use nexus_registry::{ArtifactStore, Db, Registry};

pub use error::ApiError;

/// Request bodies other than uploads: JSON documents are small.
pub const MAX_JSON_BYTES: usize = 1 << 20;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// The URL clients reach this server at, for links in responses.
    pub public_url: String,
}

/// Where the service keeps its data.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The data folder: the SQLite database and the artifact store live here by default.
    pub data_dir: PathBuf,
    /// `postgres://...` to share one database (and its artifact table) between nodes.
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    pub public_url: Option<String>,
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
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(registry_routes::routes())
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Binds and serves until Ctrl-C or SIGTERM, letting requests in flight finish.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let registry = Arc::new(config.registry().await?);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let address = listener.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
    println!("nexus serving on {public_url} (data in {})", config.data_dir.display());
    let app = app(AppState { registry, public_url });
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
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
