//! Body and query extractors whose rejections (malformed JSON, wrong types, unknown fields,
//! a missing content type, an oversized body, a bad query string) become the API's error
//! shape instead of axum's plain-text answers.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use nexus_registry::ErrorCode;
use serde::de::DeserializeOwned;

use super::ApiError;

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(ErrorCode::InvalidQuery, rejection.body_text())),
        }
    }
}

/// The client's address, as the accept loop saw it ("unknown" where there is none).
pub fn client_address(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |info| info.0.ip().to_string())
}
