//! The one error shape of the API, `{"error": {"code", "message"}}`, and the one place
//! where domain errors become HTTP statuses.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_registry::RegistryError;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_secs: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = Json(Body { error: Inner { code: self.code, message: &self.message } });
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
            E::InvalidId(_) | E::InvalidRequirement(_) | E::InvalidVersion(_) | E::InvalidRequest(_) => {
                StatusCode::BAD_REQUEST
            }
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
        Self { status, code: error.code(), message, retry_after_secs }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match rejection {
            JsonRejection::JsonDataError(_) => "invalid_json_fields",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ => "invalid_body",
        };
        Self::new(status, code, rejection.body_text())
    }
}
