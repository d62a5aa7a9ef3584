//! Who is calling: the bearer token of the `Authorization` header.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use nexus_registry::Credential;

use super::{ApiError, AppState};

/// A publisher authenticated by its API token.
pub struct Publisher(pub Credential);

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let Some(token) = header.strip_prefix("Bearer ") else {
            return Err(nexus_registry::RegistryError::Unauthenticated.into());
        };
        Ok(Self(state.registry.authenticate(token).await?))
    }
}
