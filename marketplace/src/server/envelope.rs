//! What every answer carries, whichever layer produced it: an `x-request-id` (also in the
//! log lines of the request and in the error body, as Stripe and GitHub do), and for every
//! error the one JSON shape `{"error": {"code", "message", "request_id"}}`. Errors written
//! by axum's extractors or other layers as plain text (an invalid UTF-8 path, a missing
//! header) are rewritten into that shape here; the web console's HTML error pages are left
//! as they are.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use nexus_registry::ErrorCode;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";
/// Error bodies larger than this are not inspected (ours are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 << 10;

pub async fn middleware(request: Request, next: Next) -> Response {
    let id = match crate::ids::RequestId::random() {
        Ok(id) => String::from(id),
        Err(_) => "req_unavailable".to_string(),
    };
    let span =
        tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    // The console's error pages are HTML on purpose; everything else errs in JSON.
    if (response.status().is_client_error() || response.status().is_server_error()) && !html {
        response = in_error_shape(response, &id).await;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The error answer in the one JSON shape, with the request id in it.
async fn in_error_shape(response: Response, id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, MAX_ERROR_BODY).await.unwrap_or_default();
    let mut value = serde_json::from_slice::<serde_json::Value>(&bytes).ok().filter(|v| v["error"]["code"].is_string());
    if value.is_none() {
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        let message = if text.is_empty() {
            parts.status.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            nexus_host::limits::clip(&text, 500)
        };
        value = Some(serde_json::json!({ "error": { "code": code_of(parts.status), "message": message } }));
    }
    let mut value = value.unwrap_or_default();
    if let Some(error) = value["error"].as_object_mut() {
        error.insert("request_id".into(), serde_json::Value::String(id.to_string()));
    }
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(value.to_string()))
}

/// The code of an error some other layer wrote, by its status.
fn code_of(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::URI_TOO_LONG => ErrorCode::UriTooLong,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidBody,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::ServerError,
        _ => ErrorCode::BadRequest,
    }
}
