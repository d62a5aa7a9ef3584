//! HTTP as the market scenario speaks it: JSON (or a publish form) with a bearer token and an
//! optional `Idempotency-Key`, each answer read to its end with its status, whether it was a
//! replay, and how long it took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Client, Method};
use serde_json::Value;
use url::Url;

/// One request that takes this long is a hung server, not a slow one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Answer bodies quoted as evidence are cut to this many characters.
const EVIDENCE_CHARS: usize = 300;
/// The same for successful answers and request bodies.
const SUCCESS_CHARS: usize = 120;
/// The boundary of publish forms: it never occurs in a manifest or a component we send
/// (checked when the form is built).
const BOUNDARY: &str = "nexus-loadgen-form-boundary-7f3a";
/// The header that marks an answer given again for a key's earlier request.
const REPLAYED: &str = "idempotent-replayed";

/// The server's base URL and a keep-alive client: one per simulated party, so its requests
/// reuse its own connections.
#[derive(Clone)]
pub struct Api {
    client: Client,
    base: Url,
}

/// A request as sent (and re-sent, for retries).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub token: Arc<str>,
    pub key: Option<String>,
    pub body: Option<Body>,
}

#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    /// `multipart/form-data` bytes built by [`form`].
    Form(Vec<u8>),
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status; `None` when the request failed in transport (the error is `body`).
    pub status: Option<u16>,
    /// Whether it carried `idempotent-replayed: true`.
    pub replayed: bool,
    pub body: String,
    pub latency: Duration,
}

impl Request {
    pub fn new(method: Method, path: impl Into<String>, token: &Arc<str>) -> Self {
        Self { method, path: path.into(), token: token.clone(), key: None, body: None }
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(Body::Json(body));
        self
    }

    pub fn form(mut self, bytes: Vec<u8>) -> Self {
        self.body = Some(Body::Form(bytes));
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// `PUT /v1/installs/ins_…/plan [key k]`: how failures name the request.
    pub fn describe(&self) -> String {
        let key = self.key.as_deref().map(|key| format!(" [Idempotency-Key {key}]")).unwrap_or_default();
        let body = match &self.body {
            Some(Body::Json(value)) => format!(" {value}"),
            Some(Body::Form(bytes)) => format!(" (publish form, {} bytes)", bytes.len()),
            None => String::new(),
        };
        format!("{} {}{key}{}", self.method, self.path, cut(&body, SUCCESS_CHARS))
    }
}

impl Answer {
    pub fn is(&self, status: u16) -> bool {
        self.status == Some(status)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// `error.code` of an error answer.
    pub fn error_code(&self) -> Option<String> {
        self.json()["error"]["code"].as_str().map(str::to_string)
    }

    /// What to compare between a request and its retry: the whole body of a success; the
    /// code and message of an error (its `request_id` names the attempt, so it differs).
    pub fn comparable(&self) -> String {
        match self.status {
            Some(status) if status < 300 => self.body.clone(),
            _ => {
                let mut value = self.json();
                if let Some(error) = value.get_mut("error").and_then(Value::as_object_mut) {
                    error.remove("request_id");
                }
                if value.is_null() { self.body.clone() } else { value.to_string() }
            }
        }
    }

    /// `201`, `201 (replayed)`, `409 same_plan` or `transport error`: the answer in a word.
    pub fn summary(&self) -> String {
        match (self.status, self.error_code()) {
            (None, _) => "transport error".into(),
            (Some(status), Some(code)) => format!("{status} {code}"),
            (Some(status), None) => format!("{status}{}", if self.replayed { " (replayed)" } else { "" }),
        }
    }

    /// `500 {"error":…}` or `transport error: …`, cut for a failure line (a success's body
    /// shorter: its start names the resource).
    pub fn describe(&self) -> String {
        let replayed = if self.replayed { " (replayed)" } else { "" };
        match self.status {
            Some(status) if status < 300 => format!("{status}{replayed} {}", cut(&self.body, SUCCESS_CHARS)),
            Some(status) => format!("{status}{replayed} {}", cut(&self.body, EVIDENCE_CHARS)),
            None => format!("transport error: {}", cut(&self.body, EVIDENCE_CHARS)),
        }
    }
}

impl Api {
    pub fn new(base: &Url) -> anyhow::Result<Self> {
        // Two idle connections per party: a retry sent beside its first request needs a second.
        let client = Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(2)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self { client, base: base.clone() })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub async fn send(&self, request: &Request) -> Answer {
        let started = Instant::now();
        let (status, replayed, body) = match self.exchange(request).await {
            Ok(answer) => answer,
            Err(error) => (None, false, format!("{error:#}")),
        };
        Answer { status, replayed, body, latency: started.elapsed() }
    }

    async fn exchange(&self, request: &Request) -> anyhow::Result<(Option<u16>, bool, String)> {
        let url = self.base.join(&request.path)?;
        let mut builder = self.client.request(request.method.clone(), url).bearer_auth(&request.token);
        if let Some(key) = &request.key {
            builder = builder.header("idempotency-key", key);
        }
        builder = match &request.body {
            Some(Body::Json(value)) => builder.json(value),
            Some(Body::Form(bytes)) => builder
                .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
                .body(bytes.clone()),
            None => builder,
        };
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let replayed = response.headers().get(REPLAYED).is_some_and(|value| value == "true");
        // Read to the end, so the connection is reused.
        let body = response.text().await?;
        Ok((Some(status), replayed, body))
    }

    /// A setup or check request that must answer `expected`: its JSON body, or an error
    /// naming the request and the answer.
    pub async fn expect(&self, request: &Request, expected: u16) -> anyhow::Result<Value> {
        let answer = self.send(request).await;
        anyhow::ensure!(answer.is(expected), "{}: expected {expected}, got {}", request.describe(), answer.describe());
        Ok(answer.json())
    }

    /// Every item of a paged list (`items`, `next_page`), `path` holding its other query
    /// parameters.
    pub async fn all_pages(&self, path: &str, token: &Arc<str>) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut page = 1;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let request = Request::new(Method::GET, format!("{path}{separator}per_page=100&page={page}"), token);
            let answer = self.expect(&request, 200).await?;
            items.extend(answer["items"].as_array().cloned().context("a page without `items`")?);
            match answer["next_page"].as_u64() {
                Some(next) => page = next,
                None => return Ok(items),
            }
        }
    }
}

/// A `multipart/form-data` body of named parts, as `nexus publish` sends one.
pub fn form(parts: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        anyhow::ensure!(
            !bytes.windows(BOUNDARY.len()).any(|window| window == BOUNDARY.as_bytes()),
            "form part {name} contains the boundary"
        );
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    Ok(body)
}

fn cut(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    format!("{}…", text.chars().take(chars).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_compare_without_their_request_id() {
        let answer =
            |body: &str| Answer { status: Some(409), replayed: false, body: body.into(), latency: Duration::ZERO };
        let first = answer(r#"{"error":{"code":"same_plan","message":"m","request_id":"a"}}"#);
        let retry = answer(r#"{"error":{"code":"same_plan","message":"m","request_id":"b"}}"#);
        assert_eq!(first.comparable(), retry.comparable());
        let ok = |body: &str| Answer { status: Some(201), replayed: false, body: body.into(), latency: Duration::ZERO };
        assert_ne!(ok(r#"{"request_id":"a"}"#).comparable(), ok(r#"{"request_id":"b"}"#).comparable());
    }

    #[test]
    fn forms_frame_each_part() {
        let body = form(&[("manifest", b"id = 1"), ("component", b"\0asm")]).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"manifest\"")));
        assert!(text.ends_with(&format!("\r\n--{BOUNDARY}--\r\n")), "{text}");
        assert!(form(&[("manifest", BOUNDARY.as_bytes())]).is_err());
    }
}
