//! The one error shape of the API, `{"error": {"code", "message"}}`, and the one place
//! where domain errors become HTTP statuses.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_registry::{ErrorCode, RegistryError};

use crate::error::MarketError;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    /// Structured context for the client, such as the capabilities awaiting consent.
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_secs: None, details: None }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A busy host (every slot taken, or the component still compiling on this node) is
        // the node's passing condition, answered 503 with a retry time: not an error of the
        // service, so not logged as one.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::info!(code = self.code.as_str(), message = %self.message, "request answered busy");
        } else if self.status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        }
        let body =
            Json(Body { error: Inner { code: self.code, message: &self.message, details: self.details.as_ref() } });
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        use RegistryError as E;
        let status = match &error {
            E::Unauthenticated | E::TokenRevoked | E::TokenExpired => StatusCode::UNAUTHORIZED,
            E::MissingScope(_) | E::NamespaceNotOwned { .. } => StatusCode::FORBIDDEN,
            E::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::VersionExists { .. } | E::PublisherExists(_) => StatusCode::CONFLICT,
            E::NotFound(_) | E::NoMatchingVersion { .. } => StatusCode::NOT_FOUND,
            E::Manifest(_)
            | E::Component(_)
            | E::ContractNotPublished { .. }
            | E::ContractMismatch { .. }
            | E::UndeclaredCapability { .. }
            | E::DigestMismatch { .. }
            | E::Signature(_)
            | E::UnknownKey(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::InvalidId(_)
            | E::InvalidRequirement(_)
            | E::VersionReservedForDev { .. }
            | E::InvalidVersion(_)
            | E::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            E::ArtifactMissing(_) | E::ArtifactCorrupt(_) | E::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry_after_secs = match &error {
            E::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let message = match &error {
            // Storage details are for the operator's log, not the client.
            E::Storage(_) => "the server could not complete the request".to_string(),
            other => other.to_string(),
        };
        if let E::Storage(detail) = &error {
            tracing::error!(%detail, "storage failure");
        }
        let code = error.code();
        debug_assert_listed_status(status, code);
        Self { status, code, message, retry_after_secs, details: None }
    }
}

/// The status an error kind is answered with is the one `ErrorCode` lists beside its code
/// (what `/openapi.json` and `docs/errors.md` tell clients). Checked in debug builds, so the
/// test suite's every refusal keeps the list true; fallback codes of the HTTP layer, which
/// stand for several statuses, never come through here.
fn debug_assert_listed_status(status: StatusCode, code: ErrorCode) {
    debug_assert_eq!(status.as_u16(), code.status(), "{code} is answered {status}, but ErrorCode lists another status");
}

/// Whether reading a body failed because the client did not send it in time.
pub fn body_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The answer to a body that did not arrive within the body timeout.
pub fn body_timeout() -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, ErrorCode::RequestTimeout, "the request body was not sent in time")
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if body_timed_out(&rejection) {
            return body_timeout();
        }
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The code every other size refusal (uploads, idempotent requests) answers with.
            let message = format!("JSON bodies are at most {} bytes", super::MAX_JSON_BYTES);
            return Self::new(status, ErrorCode::TooLarge, message);
        }
        let code = match rejection {
            JsonRejection::JsonDataError(_) => ErrorCode::InvalidJsonFields,
            JsonRejection::JsonSyntaxError(_) => ErrorCode::MalformedJson,
            JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            _ => ErrorCode::InvalidBody,
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<MarketError> for ApiError {
    fn from(error: MarketError) -> Self {
        let error = match error {
            MarketError::Registry(inner) => return inner.into(),
            other => other,
        };
        let status = match &error {
            MarketError::Registry(_) | MarketError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            MarketError::Forbidden(_) => StatusCode::FORBIDDEN,
            MarketError::NotFound(_) => StatusCode::NOT_FOUND,
            // The status its code lists: 400 for most; 422 for a reused idempotency key (as
            // the HTTP idempotency layer answers it), 401 and 403 for refused sign-ins.
            MarketError::Invalid { code, .. } => StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST),
            MarketError::Conflict { .. } | MarketError::ConsentRequired { .. } => StatusCode::CONFLICT,
            MarketError::RateLimited { .. } | MarketError::SignInLimited { .. } | MarketError::Busy(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            MarketError::HostBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        debug_assert_listed_status(status, error.code());
        let mut api = Self::new(status, error.code(), error.to_string());
        match &error {
            MarketError::ConsentRequired { requested, .. } => {
                api.details = serde_json::to_value(requested.as_ref()).ok();
            }
            MarketError::RateLimited { retry_after } | MarketError::SignInLimited { retry_after } => {
                api.retry_after_secs = Some(retry_after.as_secs().max(1));
            }
            MarketError::Busy(_) => api.retry_after_secs = Some(1),
            MarketError::HostBusy { retry_after, reason, details } => {
                api.retry_after_secs = Some(retry_after.as_secs().max(1));
                // The reason is the typed field's, written here once for every busy answer.
                let mut details = details.clone().unwrap_or_else(|| serde_json::json!({}));
                if let Some(fields) = details.as_object_mut() {
                    fields.insert("reason".into(), reason.as_str().into());
                }
                api.details = Some(details);
            }
            MarketError::Storage(detail) => {
                tracing::error!(%detail, "storage failure");
                api.message = "the server could not complete the request".into();
            }
            _ => {}
        }
        api
    }
}
