//! The registry's one error type. Every variant has a stable code (what clients match on)
//! and a message naming the problem; the HTTP layer maps codes to statuses in one place.

use std::time::Duration;

use nexus_host::{Digest, LoadError};

use crate::id::IdError;
use crate::manifest::ManifestError;
use crate::resolve::ResolveError;
use crate::signature::SignatureError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    // Credentials.
    #[error("the API token is missing or unknown")]
    Unauthenticated,
    #[error("the API token was revoked")]
    TokenRevoked,
    #[error("the API token expired")]
    TokenExpired,
    #[error("the API token lacks the `{0}` scope")]
    MissingScope(&'static str),
    #[error("the namespace `{namespace}` belongs to another publisher")]
    NamespaceNotOwned { namespace: String },
    #[error("too many publishes; retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },

    // What was uploaded.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Component(LoadError),
    #[error("the component targets {detected}, which is not open for publishing (published: nexus:plugin@1.0.0)")]
    ContractNotPublished { detected: String },
    #[error("the manifest says contract {declared} but the component targets {detected}")]
    ContractMismatch { declared: String, detected: String },
    #[error("the component imports nexus:plugin/{interface} but the manifest does not declare capability {needs}")]
    UndeclaredCapability { interface: String, needs: String },
    #[error("the upload is {size} bytes; the limit is {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("the upload's sha256 is {actual}, not the {claimed} the client sent")]
    DigestMismatch { claimed: String, actual: Digest },
    #[error("{id}@{version} is already published; versions are immutable, publish a new version")]
    VersionExists { id: String, version: String },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("no active signing key of this publisher has fingerprint {0}")]
    UnknownKey(String),

    // Lookups.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error(transparent)]
    InvalidRequirement(#[from] ResolveError),
    #[error("invalid version `{0}`: expected semver such as 1.2.3")]
    InvalidVersion(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("no version of {id} matches {requirement} (yanked versions are never chosen)")]
    NoMatchingVersion { id: String, requirement: String },
    #[error("a publisher named `{0}` already exists")]
    PublisherExists(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    // Storage.
    #[error("artifact {0} is missing from the artifact store")]
    ArtifactMissing(Digest),
    #[error("artifact {0} does not match its digest and will not be served")]
    ArtifactCorrupt(Digest),
    #[error("storage: {0}")]
    Storage(String),
}

impl RegistryError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::TokenRevoked => "token_revoked",
            Self::TokenExpired => "token_expired",
            Self::MissingScope(_) => "missing_scope",
            Self::NamespaceNotOwned { .. } => "namespace_not_owned",
            Self::RateLimited { .. } => "rate_limited",
            Self::Manifest(error) => error.code(),
            Self::Component(error) => error.code(),
            Self::ContractNotPublished { .. } => "unsupported_contract",
            Self::ContractMismatch { .. } => "contract_mismatch",
            Self::UndeclaredCapability { .. } => "undeclared_capability",
            Self::TooLarge { .. } => "too_large",
            Self::DigestMismatch { .. } => "digest_mismatch",
            Self::VersionExists { .. } => "version_exists",
            Self::Signature(error) => error.code(),
            Self::UnknownKey(_) => "unknown_key",
            Self::InvalidId(_) => "invalid_id",
            Self::InvalidRequirement(error) => error.code(),
            Self::InvalidVersion(_) => "invalid_version",
            Self::NotFound(_) => "not_found",
            Self::NoMatchingVersion { .. } => "no_matching_version",
            Self::PublisherExists(_) => "publisher_exists",
            Self::InvalidRequest(_) => "invalid_request",
            Self::ArtifactMissing(_) => "artifact_missing",
            Self::ArtifactCorrupt(_) => "artifact_corrupt",
            Self::Storage(_) => "storage",
        }
    }
}
