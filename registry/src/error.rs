//! The registry's one error type. Every variant has a stable code (an [`ErrorCode`], what
//! clients match on) and a message naming the problem; the HTTP layer maps errors to
//! statuses in one place.

use std::time::Duration;

use nexus_host::{Digest, LoadError};

use crate::ErrorCode;
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
    #[error(
        "{version} is a development version name (a pre-release starting with `dev.`): those are numbered by the \
         registry for `nexus dev --marketplace`; publish {id} under another version"
    )]
    VersionReservedForDev { id: String, version: String },
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
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            Self::Unauthenticated => C::Unauthenticated,
            Self::TokenRevoked => C::TokenRevoked,
            Self::TokenExpired => C::TokenExpired,
            Self::MissingScope(_) => C::MissingScope,
            Self::NamespaceNotOwned { .. } => C::NamespaceNotOwned,
            Self::RateLimited { .. } => C::RateLimited,
            Self::Manifest(error) => error.code(),
            Self::Component(error) => error.into(),
            Self::ContractNotPublished { .. } => C::UnsupportedContract,
            Self::ContractMismatch { .. } => C::ContractMismatch,
            Self::UndeclaredCapability { .. } => C::UndeclaredCapability,
            Self::TooLarge { .. } => C::TooLarge,
            Self::DigestMismatch { .. } => C::DigestMismatch,
            Self::VersionExists { .. } => C::VersionExists,
            Self::VersionReservedForDev { .. } => C::VersionReservedForDev,
            Self::Signature(error) => error.code(),
            Self::UnknownKey(_) => C::UnknownKey,
            Self::InvalidId(_) => C::InvalidId,
            Self::InvalidRequirement(error) => error.code(),
            Self::InvalidVersion(_) => C::InvalidVersion,
            Self::NotFound(_) => C::NotFound,
            Self::NoMatchingVersion { .. } => C::NoMatchingVersion,
            Self::PublisherExists(_) => C::PublisherExists,
            Self::InvalidRequest(_) => C::InvalidRequest,
            Self::ArtifactMissing(_) => C::ArtifactMissing,
            Self::ArtifactCorrupt(_) => C::ArtifactCorrupt,
            Self::Storage(_) => C::Storage,
        }
    }
}

/// The host names its load refusals with its own strings (it sits below the registry); this
/// is where they join the one list. A test checks the strings agree.
impl From<&LoadError> for ErrorCode {
    fn from(error: &LoadError) -> Self {
        match error {
            LoadError::NotAComponent(_) => Self::NotAComponent,
            LoadError::UnsupportedContract(_) => Self::UnsupportedContract,
            LoadError::UnsupportedImport(_) => Self::UnsupportedImport,
            LoadError::Link(_) => Self::LinkFailed,
            LoadError::Cache(_) => Self::CacheFailed,
            LoadError::ExceedsHostLimits(_) => Self::ExceedsHostLimits,
        }
    }
}
