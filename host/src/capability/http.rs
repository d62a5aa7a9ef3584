//! Capability `http`: outbound requests, only to hosts the tenant allowed and only to
//! addresses the operator's policy permits (`network.rs`). Redirects are not followed (a
//! redirect could leave the allow-list); the plugin sees the 3xx itself. Headers that route
//! or frame the request are the host's to set, not the plugin's.

pub mod network;

use std::time::Duration;

pub use network::{OutboundPolicy, is_internal, names_internal_host};

use super::CallError;
use crate::bindings::latest::nexus::plugin::http::{Host, Method, Request, Response};
use crate::bindings::latest::nexus::plugin::types::HostError;
use crate::error::{Limit, LimitExceeded};
use crate::grants::Capability;
use crate::limits::{MAX_KEPT_TEXT_BYTES, clip};
use crate::state::InvocationState;

/// Headers a plugin may not set: they route the request (`host`, the proxy and forwarding
/// headers) or frame it on the connection (hop-by-hop headers, `content-length`), which the
/// host does from the URL and the body. `host` is allowed only when it names the URL's host.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "forwarded",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// The client every invocation of a host shares, so connections to a webhook are reused.
/// It resolves names through the policy's resolver and never uses a proxy from the
/// environment (a proxy would resolve names where the policy cannot see them).
pub(crate) fn client(policy: &OutboundPolicy) -> reqwest::Client {
    guarded_client(policy, concat!("nexus-host/", env!("CARGO_PKG_VERSION")))
}

/// A client under `policy` as plugins' outbound HTTP is: names resolved by the policy's
/// resolver (only permitted addresses reach the connector), no proxy, no redirects, a
/// 5-second connect timeout. The marketplace's own outbound calls (tenants' webhooks) use
/// it too. Address literals in URLs are not resolved, so callers check them with
/// [`OutboundPolicy::permits`].
pub fn guarded_client(policy: &OutboundPolicy, user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(network::resolver(policy))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

impl Host for InvocationState {
    async fn send(&mut self, request: Request) -> Result<Response, CallError> {
        self.require(Capability::Http)?;
        let url = reqwest::Url::parse(&request.url)
            // Without the URL itself: it may carry a secret.
            .map_err(|e| HostError::InvalidArgument(format!("invalid url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HostError::InvalidArgument(format!("unsupported scheme `{}`", url.scheme())).into());
        }
        let host = clip(url.host_str().unwrap_or_default(), MAX_KEPT_TEXT_BYTES);
        let port = url.port_or_known_default().unwrap_or(0);
        if !self.grants().allows_host(&host, port) {
            self.deny(Capability::Http, format!("host {host}:{port} not allowed"));
            return Err(HostError::HostNotAllowed(host).into());
        }
        if let Some(ip) = url.host().as_ref().and_then(network::literal)
            && !self.outbound.permits(ip)
        {
            self.deny(Capability::Http, format!("address {ip} is internal; outbound HTTP may not reach it"));
            return Err(HostError::HostNotAllowed(host).into());
        }
        check_headers(&request.headers, &url)?;

        let limits = self.limits().clone();
        self.http_requests += 1;
        if self.http_requests > limits.http_requests {
            let limit =
                LimitExceeded { limit: Limit::HttpRequests, used: self.http_requests, max: limits.http_requests };
            return Err(limit.into());
        }
        let body = request.body.unwrap_or_default();
        if body.len() as u64 > limits.http_request_bytes {
            let used = body.len() as u64;
            return Err(LimitExceeded { limit: Limit::HttpRequestBytes, used, max: limits.http_request_bytes }.into());
        }

        let mut outbound = self.http_client.request(method(request.method), url).body(body);
        for (name, value) in request.headers {
            outbound = outbound.header(name, value);
        }
        let timeout_ms = u64::try_from(limits.http_timeout.as_millis()).unwrap_or(u64::MAX);
        let timed_out = || LimitExceeded { limit: Limit::HttpTimeoutMs, used: timeout_ms + 1, max: timeout_ms };
        let exchange = receive(outbound, limits.http_response_bytes);
        match tokio::time::timeout(limits.http_timeout, exchange).await {
            Err(_) => Err(timed_out().into()),
            Ok(Err(Failure::Blocked(blocked))) => {
                self.deny(Capability::Http, blocked.to_string());
                Err(HostError::HostNotAllowed(host).into())
            }
            Ok(Err(Failure::Call(error))) => Err(error),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// Refuses headers the host sets itself (see [`RESERVED_HEADERS`]).
fn check_headers(headers: &[(String, String)], url: &reqwest::Url) -> Result<(), CallError> {
    for (name, value) in headers {
        let lower = name.trim().to_ascii_lowercase();
        let refused = match lower.as_str() {
            "host" => !names_url_host(value, url),
            other => RESERVED_HEADERS.contains(&other) || other.starts_with("proxy-"),
        };
        if refused {
            let name = clip(name, MAX_KEPT_TEXT_BYTES);
            return Err(
                HostError::InvalidArgument(format!("header `{name}` is set by the host, not the plugin")).into()
            );
        }
    }
    Ok(())
}

/// Whether a `Host` header value names the URL's own host (with or without its port).
fn names_url_host(value: &str, url: &reqwest::Url) -> bool {
    let value = value.trim().to_ascii_lowercase();
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => value == format!("{host}:{port}"),
        None => value == host || url.port_or_known_default().is_some_and(|p| value == format!("{host}:{p}")),
    }
}

/// Why an exchange failed: the policy refused every address the name resolved to, or
/// anything else.
enum Failure {
    Blocked(network::Blocked),
    Call(CallError),
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        Self::Call(error)
    }
}

impl From<LimitExceeded> for Failure {
    fn from(limit: LimitExceeded) -> Self {
        Self::Call(limit.into())
    }
}

/// Sends and reads the response, stopping as soon as the body passes `max_bytes`.
async fn receive(request: reqwest::RequestBuilder, max_bytes: u64) -> Result<Response, Failure> {
    let mut response = request.send().await.map_err(refused_or_transport)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Failure::Call(transport(e)))? {
        let used = (body.len() + chunk.len()) as u64;
        if used > max_bytes {
            return Err(LimitExceeded { limit: Limit::HttpResponseBytes, used, max: max_bytes }.into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response { status, headers, body })
}

fn refused_or_transport(error: reqwest::Error) -> Failure {
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(blocked) = cause.downcast_ref::<network::Blocked>() {
            return Failure::Blocked(network::Blocked { name: blocked.name.clone(), ip: blocked.ip });
        }
        source = cause.source();
    }
    Failure::Call(transport(error))
}

fn transport(error: reqwest::Error) -> CallError {
    // Without the URL: it may carry a secret (webhook tokens often live in the path).
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    HostError::Transport(message).into()
}

fn method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
        Method::Head => reqwest::Method::HEAD,
    }
}
