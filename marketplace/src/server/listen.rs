//! The server's accept loop, with the bounds a public server needs: a connection limit, a
//! timeout on reading each request's headers (which also ends idle keep-alive connections
//! and half-sent requests), a timeout on reading the body and on the whole request (408),
//! and graceful shutdown that lets requests in flight finish.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Layer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// Bounds on clients' connections. The defaults suit a server behind nothing: a slow or
/// idle client holds a connection for at most `header_timeout`, and a thousand of them
/// still leave room for everyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Time to send a request's headers, counted from when the connection is ready for the
    /// next request: a half-sent request or an idle keep-alive connection is closed then.
    pub header_timeout: Duration,
    /// Longest pause while a request's body is sent (between chunks; a slow but steady
    /// upload is fine).
    pub body_timeout: Duration,
    /// Time for a whole request (an event waits for its invocations: at most their
    /// wall-clock limit plus the queues before them).
    pub request_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Open files kept for everything but clients: database connections, artifacts, the
/// component cache, logs, the runtime's own descriptors.
const RESERVED_FILES: u64 = 256;

/// Raises the process's soft open-file limit to its hard limit, and returns how many client
/// connections fit under it with [`RESERVED_FILES`] to spare (at most `wanted`, at least 1).
/// A connection limit above what the process can open would let idle clients exhaust the
/// descriptors: accepts fail and `/healthz` times out instead of new clients waiting in the
/// backlog.
pub fn connections_that_fit(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => limit = getrlimit(Resource::Nofile),
            Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
        }
    }
    let Some(files) = limit.current else { return wanted.max(1) };
    let room = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX).max(1);
    if room < wanted {
        tracing::warn!(
            open_files = files,
            connections = room,
            "the open-file limit leaves room for {room} client connections (not {wanted}); raise `ulimit -n` for more"
        );
    }
    wanted.min(room).max(1)
}

/// The request timeouts as one layer; a timed-out request answers 408 (inside the envelope,
/// so in the JSON error shape).
pub fn timeouts(limits: &ConnectionLimits) -> (TimeoutLayer, RequestBodyTimeoutLayer) {
    (
        TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout),
        RequestBodyTimeoutLayer::new(limits.body_timeout),
    )
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the
/// connections' requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ConnectionLimits { max_connections: connections_that_fit(limits.max_connections), ..limits };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let room = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = room.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The client's address, for what is limited per address (sign-in attempts).
        let service = axum::Extension(axum::extract::ConnectInfo(peer)).layer(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
