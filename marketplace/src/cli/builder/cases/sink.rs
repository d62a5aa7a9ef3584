//! The loopback HTTP server behind a case's `{{sink}}`: it records every request and answers
//! with the case's `sink_answer`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use nexus_host::HostPattern;

use super::SinkAnswer;

/// A loopback HTTP server for a case's `{{sink}}`: records every request and answers with the
/// case's `sink_answer`.
pub(super) struct Sink {
    port: u16,
    host: HostPattern,
    state: Arc<Mutex<SinkState>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct SinkState {
    answer: SinkAnswer,
    received: Vec<Received>,
}

/// One request the sink received.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: BTreeMap<String, String>,
    pub(super) body: Vec<u8>,
}

impl Sink {
    pub(super) async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("cannot open a local port")?;
        let port = listener.local_addr()?.port();
        let host = format!("127.0.0.1:{port}").parse().map_err(|e| anyhow::anyhow!("the sink's address: {e}"))?;
        let state = Arc::new(Mutex::new(SinkState::default()));
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = shared.clone();
            async move { record(&state, request).await }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { port, host, state, server })
    }

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(super) fn host(&self) -> HostPattern {
        self.host.clone()
    }

    /// Forgets the last case's requests and answers the next ones with `answer`.
    pub(super) fn begin(&self, answer: SinkAnswer) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = SinkState { answer, received: Vec::new() };
    }

    pub(super) fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).received.clone()
    }
}

/// The most of a request body the sink keeps (the host's own request limit is smaller).
const SINK_BODY_LIMIT: usize = 4 << 20;

async fn record(state: &Mutex<SinkState>, request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, SINK_BODY_LIMIT).await.map(|b| b.to_vec()).unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    state.received.push(Received { method: parts.method.to_string(), path, headers, body });
    // `run_case` allows only 100..=599, which `from_u16` accepts.
    let status = axum::http::StatusCode::from_u16(state.answer.status).unwrap_or(axum::http::StatusCode::OK);
    (status, axum::Json(state.answer.body.clone())).into_response()
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}
