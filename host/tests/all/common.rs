//! Shared fixtures: one runtime, one host (so each component compiles once for the whole
//! run), contexts, and a loopback webhook receiver.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use nexus_host::{
    Capability, Event, Grants, Host, HostConfig, Invocation, InvocationContext, Limits, MemoryKv, OutboundPolicy,
    Plugin, Secrets,
};

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("tokio runtime")
    })
}

/// Runs a test body on the shared runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    // Loopback allowed: the webhook receivers of these tests listen on 127.0.0.1.
    HOST.get_or_init(|| {
        Host::new(HostConfig { outbound: OutboundPolicy::local_testing(), ..HostConfig::default() }).expect("host")
    })
}

pub async fn load(path: &str) -> Arc<Plugin> {
    let bytes = nexus_sample_plugins::bytes(path).expect("plugin built by nexus-sample-plugins");
    host().load(&bytes).await.expect("sample plugins load").0
}

pub fn event(event_type: &str, payload: &str) -> Event {
    Event { id: "evt-1".into(), event_type: event_type.into(), payload: payload.into() }
}

/// A context for tenant `t1`, install `i1`, with the given capabilities and a fresh KV.
pub fn context(capabilities: &[Capability]) -> InvocationContext {
    InvocationContext {
        tenant: "t1".into(),
        install: "i1".into(),
        grants: Grants { capabilities: capabilities.iter().copied().collect(), allowed_hosts: vec![] },
        config: BTreeMap::new(),
        secrets: Secrets::default(),
        kv: Arc::new(MemoryKv::new()),
        limits: Limits::default(),
    }
}

pub fn all_capabilities() -> InvocationContext {
    context(&Capability::ALL)
}

pub fn with_config(mut context: InvocationContext, pairs: &[(&str, &str)]) -> InvocationContext {
    context.config = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    context
}

pub async fn invoke(path: &str, context: InvocationContext, event: &Event) -> Invocation {
    let plugin = load(path).await;
    host().invoke(&plugin, context, event).await
}

/// The data of a successful invocation, or a panic naming what happened instead.
pub fn data(invocation: &Invocation) -> String {
    match &invocation.result {
        Ok(outcome) => outcome.data.clone().unwrap_or_default(),
        Err(error) => panic!("expected success, got {error:?}; report {:#?}", invocation.report),
    }
}

/// One request a [`Webhook`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// A real HTTP server on loopback: `/ok` answers 200, `/fail` 500, `/slow` after 2 s,
/// `/big` 64 KiB of body.
pub struct Webhook {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Webhook {
    pub async fn start() -> Self {
        use axum::extract::{Request, State};
        use axum::http::StatusCode;

        type Log = Arc<Mutex<Vec<Received>>>;
        async fn record(State(log): State<Log>, request: Request) -> (StatusCode, String) {
            let path = request.uri().path().to_string();
            let headers = request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
            let body = String::from_utf8_lossy(&body).into_owned();
            log.lock().expect("log").push(Received { path: path.clone(), headers, body });
            match path.as_str() {
                "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                "/slow" => {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    (StatusCode::OK, String::new())
                }
                "/big" => (StatusCode::OK, "b".repeat(64 << 10)),
                _ => (StatusCode::OK, String::new()),
            }
        }
        let received: Log = Arc::default();
        let app = axum::Router::new().fallback(record).with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn allowed(&self) -> nexus_host::HostPattern {
        format!("127.0.0.1:{}", self.port).parse().expect("host pattern")
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}
