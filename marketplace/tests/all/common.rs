//! Shared fixtures: one runtime and one plugin host for the whole test binary (each
//! component compiles once), and `Env`, a marketplace on SQLite or a throwaway PostgreSQL
//! with an operator, the `nexus-labs` publisher and the sample plugins published.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use nexus_host::{Host, HostConfig};
use nexus_marketplace::accounts;
use nexus_marketplace::mail::Mailer;
use nexus_marketplace::runner::TenantLimits;
use nexus_marketplace::secrets::MasterKey;
use nexus_marketplace::server::{AppState, app};
use nexus_marketplace::{Market, MarketConfig};
use nexus_registry::{ArtifactStore, Credential, Db, PublishRequest, Registry};
use serde_json::Value;
use tower::ServiceExt;

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
    })
}

pub fn host() -> Arc<Host> {
    static HOST: OnceLock<Arc<Host>> = OnceLock::new();
    HOST.get_or_init(|| Arc::new(Host::new(HostConfig::default()).expect("host"))).clone()
}

/// Runs `test` on SQLite, then on PostgreSQL.
pub fn on_both<F: Fn(bool) -> Fut, Fut: Future<Output = ()>>(test: F) {
    for postgres in [false, true] {
        runtime().block_on(test(postgres));
    }
}

pub struct Env {
    pub router: axum::Router,
    pub market: Arc<Market>,
    /// An operator token.
    pub operator: String,
    /// The `nexus-labs` publisher's token (all scopes).
    pub publisher: String,
    pub publisher_credential: Credential,
    _dir: tempfile::TempDir,
}

pub struct Options {
    pub publishes_per_minute: u32,
    pub tenant_limits: TenantLimits,
    /// Publish the sample plugins (chat-notifier, pii-redactor, tax-calculator, echo) at 0.1.0.
    pub samples: bool,
    /// A host of the test's own instead of the shared one.
    pub host: Option<Arc<Host>>,
    /// A billing clock and payment provider of the test's own.
    pub billing: Option<nexus_marketplace::billing::BillingConfig>,
    /// How long an event waits for its component's compile before it is answered busy.
    pub event_compile_wait: std::time::Duration,
    /// PostgreSQL only: the pool's size and wait, instead of the service's defaults.
    pub postgres_limits: Option<nexus_registry::DbLimits>,
    /// Where mail goes, instead of `.eml` files in the environment's `outbox/`.
    pub mailer: Option<Mailer>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            publishes_per_minute: 1000,
            tenant_limits: TenantLimits::default(),
            samples: true,
            host: None,
            billing: None,
            event_compile_wait: nexus_marketplace::runner::EVENT_COMPILE_WAIT,
            postgres_limits: None,
            mailer: None,
        }
    }
}

impl Env {
    /// Where mail is written (unless the test chose another mailer).
    pub fn outbox(&self) -> std::path::PathBuf {
        self._dir.path().join("outbox")
    }

    pub async fn new(postgres: bool) -> Self {
        Self::with(postgres, Options::default()).await
    }

    pub async fn with(postgres: bool, options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db, artifacts) = if postgres {
            let url = nexus_testkit::Postgres::shared().fresh_database();
            let db = Db::connect_with(&url, options.postgres_limits.unwrap_or_default()).await.unwrap();
            (db.clone(), ArtifactStore::Db(db))
        } else {
            (Db::sqlite_in(dir.path()).await.unwrap(), ArtifactStore::Dir(dir.path().join("artifacts")))
        };
        let registry = Arc::new(Registry::with_publish_rate(db, artifacts, options.publishes_per_minute));
        let config = MarketConfig {
            master_key: MasterKey::generate().unwrap(),
            host: options.host.unwrap_or_else(host),
            tenant_limits: options.tenant_limits,
            billing: options.billing.unwrap_or_default(),
            event_compile_wait: options.event_compile_wait,
            mailer: options
                .mailer
                .unwrap_or_else(|| Mailer::files(dir.path().join("outbox"), Mailer::DEFAULT_FROM).unwrap()),
        };
        let market = Arc::new(Market::open(registry, config).await.unwrap());
        let operator =
            accounts::issue_operator_token(&market.db, "tests", None, &nexus_registry::publishers::Issuer::by("test"))
                .await
                .unwrap()
                .secret;
        let publisher =
            market.registry.create_publisher(&"nexus-labs".parse().unwrap(), "Nexus Labs", "test").await.unwrap();
        let publisher_credential = market.registry.authenticate(&publisher.secret).await.unwrap();
        let state = AppState { market: market.clone(), public_url: "http://nexus.test".into() };
        let env =
            Self { router: app(state), market, operator, publisher: publisher.secret, publisher_credential, _dir: dir };
        if options.samples {
            for (name, path, manifest) in nexus_sample_plugins::PUBLISHABLE {
                env.publish_sample(name, path, manifest, "0.1.0").await;
            }
        }
        env
    }

    /// Publishes a sample's component under `version`, with its manifest otherwise unchanged
    /// unless `edit` rewrites it.
    pub async fn publish_sample(&self, name: &str, path: &str, manifest: &str, version: &str) {
        let manifest = manifest.replacen("version = \"0.1.0\"", &format!("version = \"{version}\""), 1);
        self.publish_manifest(path, &manifest).await.unwrap_or_else(|e| panic!("publishing {name}: {e}"));
    }

    pub async fn publish_manifest(&self, path: &str, manifest: &str) -> Result<(), nexus_marketplace::MarketError> {
        let request = PublishRequest {
            manifest: manifest.to_string(),
            component: nexus_sample_plugins::bytes(path).unwrap(),
            claimed_digest: None,
            signature: None,
        };
        self.market.publish(&self.publisher_credential, request).await.map(drop)
    }

    pub async fn raw(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap().to_vec();
        if parts.status.is_client_error() || parts.status.is_server_error() {
            assert_listed_code(&bytes);
        }
        (parts.status, parts.headers, bytes)
    }

    /// A JSON call: `body` is sent as is when given.
    pub async fn call(&self, method: &str, uri: &str, token: Option<&str>, body: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Body::from(body.unwrap_or_default().to_string())).unwrap();
        let (status, _, bytes) = self.raw(request).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, uri: &str, token: &str) -> (StatusCode, Value) {
        self.call("GET", uri, Some(token), None).await
    }

    pub async fn post(&self, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", uri, Some(token), Some(&body.to_string())).await
    }

    /// Creates a tenant through the API and returns its first token.
    pub async fn tenant(&self, id: &str) -> String {
        let (status, body) =
            self.post("/v1/tenants", &self.operator, serde_json::json!({ "id": id, "display_name": id })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["secret"].as_str().unwrap().to_string()
    }

    /// Installs `plugin` for the tenant with consent to everything it requests.
    pub async fn install(&self, tenant: &str, plugin: &str, extra: Value) -> Value {
        let (status, consent) = self.get(&format!("/v1/catalog/{plugin}/consent"), tenant).await;
        assert_eq!(status, StatusCode::OK, "{consent}");
        let mut body = serde_json::json!({ "plugin": plugin, "consent": consent_for(&consent) });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let (status, install) = self.post("/v1/installs", tenant, body).await;
        assert_eq!(status, StatusCode::CREATED, "{install}");
        install
    }
}

/// A sample plugin's manifest text.
pub fn manifest_of(name: &str) -> &'static str {
    nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == name).unwrap().2
}

/// The consent answer that agrees to everything a consent preview lists.
pub fn consent_for(preview: &Value) -> Value {
    let requested = preview["capabilities"].as_array().cloned().unwrap_or_default();
    let capabilities: Vec<Value> = requested.iter().map(|c| c["capability"].clone()).collect();
    let hosts: Vec<Value> = requested
        .iter()
        .flat_map(|c| c["hosts"].as_array().cloned().unwrap_or_default())
        .map(|h| h["host"].clone())
        .collect();
    serde_json::json!({ "capabilities": capabilities, "hosts": hosts })
}

/// The multipart boundary of [`form`].
pub const BOUNDARY: &str = "nexus-test-boundary";

/// A `multipart/form-data` body with the given parts, as `nexus publish` sends.
pub fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `nexus serve` on a free loopback port, killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub url: String,
    /// What it prints after the line with its address.
    pub stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Server {
    /// Waits for the server to print `line` (blocking), failing if it exits first.
    pub fn wait_for_line(&mut self, line: &str) {
        use std::io::BufRead;
        let mut text = String::new();
        loop {
            text.clear();
            let read = self.stdout.read_line(&mut text).unwrap();
            assert!(read > 0, "the server exited before printing `{line}`");
            if text.trim_end() == line {
                return;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data: &std::path::Path) -> Server {
    serve_with(data, &[], &[])
}

/// [`serve`] with more arguments and environment variables.
pub fn serve_with(data: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    use std::io::BufRead;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    Server { child, url, stdout }
}

/// A data folder with an operator token and the `nexus-labs` publisher, for tests that run
/// `nexus serve` as a real process on it.
pub struct RealMarket {
    _dir: tempfile::TempDir,
    pub data: std::path::PathBuf,
    pub operator: String,
    pub publisher: String,
}

impl RealMarket {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_dir = data.to_str().unwrap();
        let operator = issued_token(&nexus(&["operator", "token", "--init", "--data-dir", data_dir], &[]));
        let publisher = issued_token(&nexus(&["publisher", "create", "nexus-labs", "--data-dir", data_dir], &[]));
        Self { _dir: dir, data, operator, publisher }
    }

    /// `nexus serve` on the folder, with more arguments and environment variables.
    pub fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        serve_with(&self.data, args, env)
    }

    /// Creates tenant `id` through the API of the server at `url` (as this folder's operator)
    /// and installs `plugin` for it with `consent` and `config`: the tenant's token and the
    /// install's id.
    pub async fn tenant_with_install(
        &self,
        url: &str,
        id: &str,
        plugin: &str,
        consent: serde_json::Value,
        config: serde_json::Value,
    ) -> (String, String) {
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{url}/v1/tenants"))
            .bearer_auth(&self.operator)
            .json(&serde_json::json!({ "id": id, "display_name": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
        let tenant = created.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
        let body = serde_json::json!({ "plugin": plugin, "consent": consent, "config": config });
        let install = client.post(format!("{url}/v1/installs")).bearer_auth(&tenant).json(&body).send().await.unwrap();
        assert_eq!(install.status().as_u16(), 201);
        let install = install.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
        (tenant, install)
    }

    /// Publishes a sample plugin (unsigned, with its own `nexus.toml`) through `nexus publish`.
    pub fn publish(&self, url: &str, sample: &str) {
        let (_, component, _) = nexus_sample_plugins::PUBLISHABLE.iter().find(|(n, ..)| *n == sample).unwrap();
        let manifest =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../sample-plugins/{sample}/nexus.toml"));
        let env = [("NEXUS_REGISTRY", url), ("NEXUS_TOKEN", self.publisher.as_str())];
        let published = nexus(&["publish", component, "--manifest", manifest.to_str().unwrap(), "--no-sign"], &env);
        assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    }
}

/// Runs `nexus` with stdin closed (not a terminal), as CI and scripts do, and without the
/// caller's own token, signing key or saved sign-ins (`env` may name a credentials folder).
pub fn nexus(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nexus"));
    command
        .args(args)
        .env_remove("NEXUS_TOKEN")
        .env_remove("NEXUS_SIGNING_KEY")
        .env_remove("NEXUS_PROFILE")
        .env("NEXUS_CONFIG_DIR", std::env::temp_dir().join("nexus-tests-signed-in-nowhere"))
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// The secret after `token     ` in a `nexus` create command's output (the command must
/// have succeeded).
pub fn issued_token(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    text.lines().find_map(|l| l.strip_prefix("token     ")).unwrap().trim().to_string()
}

/// Every error answer a test provokes carries a code of `ErrorCode`: a code raised as a
/// hand-written string would fail here, in whichever test reaches it.
fn assert_listed_code(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return };
    if let Some(code) = value["error"]["code"].as_str() {
        assert!(nexus_registry::ErrorCode::parse(code).is_some(), "the answer's code `{code}` is not in ErrorCode");
    }
}
