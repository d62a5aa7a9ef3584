//! Who is calling: the bearer token of the `Authorization` header, resolved to a
//! [`Caller`] (operator, publisher or tenant). Routes then check role and ownership.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use nexus_registry::{Credential, RegistryError};

use super::{ApiError, AppState};
use crate::accounts::{self, Caller};

fn bearer(parts: &Parts) -> Option<&str> {
    let header = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    header.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty())
}

/// An authenticated caller, any role.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Already authenticated by the idempotency layer for this very request.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(Self(caller.clone()));
        }
        let token = bearer(parts).ok_or(RegistryError::Unauthenticated)?;
        Ok(Self(accounts::authenticate(&state.market.db, &state.market.registry, token).await?))
    }
}

/// The caller of `POST /v1/events`, from the node's cache of tenant tokens when the tenant
/// has not changed (`runner::event_caller`); refusals are those of [`Auth`].
pub struct EventAuth(pub crate::runner::EventCaller);

impl FromRequestParts<AppState> for EventAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(Self(crate::runner::EventCaller::fresh(caller.clone())));
        }
        let token = bearer(parts).ok_or(RegistryError::Unauthenticated)?;
        Ok(Self(crate::runner::event_caller(&state.market, token).await?))
    }
}

/// A caller if a token was sent (a bad token is still refused), for public routes that
/// show more to the owner.
pub struct MaybeAuth(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if bearer(parts).is_none() && parts.headers.get(AUTHORIZATION).is_none() {
            return Ok(Self(None));
        }
        Ok(Self(Some(Auth::from_request_parts(parts, state).await?.0)))
    }
}

/// A publisher authenticated by its API token; other roles are refused.
pub struct Publisher(pub Credential);

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match Auth::from_request_parts(parts, state).await?.0 {
            Caller::Publisher(credential) => Ok(Self(credential)),
            other => Err(crate::MarketError::Forbidden(format!(
                "this needs a publisher token; this is a {} token",
                other.role()
            ))
            .into()),
        }
    }
}
