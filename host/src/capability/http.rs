//! Capability `http`: outbound requests, only to hosts the tenant allowed. Redirects are not
//! followed (a redirect could leave the allow-list); the plugin sees the 3xx itself.

use std::time::Duration;

use super::CallError;
use crate::bindings::latest::nexus::plugin::http::{Host, Method, Request, Response};
use crate::bindings::latest::nexus::plugin::types::HostError;
use crate::error::{Limit, LimitExceeded};
use crate::grants::Capability;
use crate::state::InvocationState;

/// The client every invocation shares, so connections to a webhook are reused.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("nexus-host/", env!("CARGO_PKG_VERSION")))
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
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(0);
        if !self.grants().allows_host(&host, port) {
            self.deny(Capability::Http, format!("host {host}:{port} not allowed"));
            return Err(HostError::HostNotAllowed(host).into());
        }

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
            Ok(result) => result,
        }
    }
}

/// Sends and reads the response, stopping as soon as the body passes `max_bytes`.
async fn receive(request: reqwest::RequestBuilder, max_bytes: u64) -> Result<Response, CallError> {
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        let used = (body.len() + chunk.len()) as u64;
        if used > max_bytes {
            return Err(LimitExceeded { limit: Limit::HttpResponseBytes, used, max: max_bytes }.into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response { status, headers, body })
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
