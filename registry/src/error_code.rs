//! Every error code the service answers with, in one list: the registry's, the
//! marketplace's and the HTTP layer's. A code is what clients match on, so its wire string
//! never changes once shipped; the list is what `/openapi.json` and `docs/errors.md` show.
//!
//! The status beside each code is the one it is answered with. Which status an answer gets
//! is still decided where errors become HTTP (`marketplace/src/server/error.rs`, by error
//! kind), which in debug builds asserts it is the status listed here; the few fallback codes
//! of the HTTP layer that stand for a whole class of statuses (`bad_request`, `server_error`,
//! `invalid_body`, `invalid_form`) say so in their meaning.

use std::fmt;

/// Declares [`ErrorCode`] from one table: variant, wire string, HTTP status, meaning.
macro_rules! error_codes {
    ($( $variant:ident = $wire:literal, $status:literal, $meaning:literal; )*) => {
        /// A stable, machine-readable error code; serialized as its snake_case wire string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( #[doc = $meaning] $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &[ErrorCode] = &[$( Self::$variant, )*];

            /// The wire string clients match on.
            pub const fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $wire, )* }
            }

            /// The HTTP status the code is answered with.
            pub const fn status(self) -> u16 {
                match self { $( Self::$variant => $status, )* }
            }

            /// One line saying what the code means, for the API's users.
            pub const fn meaning(self) -> &'static str {
                match self { $( Self::$variant => $meaning, )* }
            }
        }
    };
}

error_codes! {
    // Credentials and permissions.
    Unauthenticated = "unauthenticated", 401, "the API token or session is missing or unknown";
    TokenRevoked = "token_revoked", 401, "the API token was revoked";
    TokenExpired = "token_expired", 401, "the API token expired";
    MissingScope = "missing_scope", 403, "the API token lacks the scope this request needs";
    NamespaceNotOwned = "namespace_not_owned", 403, "the plugin namespace belongs to another publisher";
    Forbidden = "forbidden", 403, "the caller is known but may not do this";
    CsrfMismatch = "csrf_mismatch", 403, "a console form is stale or came from another site";

    // Rate limits and capacity.
    RateLimited = "rate_limited", 429, "too many requests; retry after the Retry-After seconds";
    ConcurrencyLimited = "concurrency_limited", 429, "the tenant has too many invocations in flight; retry shortly";
    HostBusy = "host_busy", 503, "the plugin host is at capacity or still compiling the component; retry after Retry-After";
    Unavailable = "unavailable", 503, "the service cannot answer now; retry later";

    // The request itself.
    BadRequest = "bad_request", 400, "the request was refused before reaching a handler (any 4xx without a more specific code)";
    InvalidRequest = "invalid_request", 400, "a field of the request body is missing, malformed or out of range";
    InvalidQuery = "invalid_query", 400, "a query-string parameter is malformed or out of range";
    InvalidForm = "invalid_form", 400, "the multipart form is malformed, has an unknown part or lacks one (the form's own status if another)";
    InvalidBody = "invalid_body", 422, "the body could not be read as the operation expects (the reading error's status)";
    InvalidJsonFields = "invalid_json_fields", 422, "the JSON body has missing, unknown or mistyped fields";
    MalformedJson = "malformed_json", 400, "the body is not valid JSON";
    UnsupportedMediaType = "unsupported_media_type", 415, "the body's Content-Type is not the one the operation takes";
    TooLarge = "too_large", 413, "the body or upload exceeds its size limit";
    RequestTimeout = "request_timeout", 408, "the request body was not sent in time";
    UriTooLong = "uri_too_long", 414, "the request URI is too long";
    HeadersTooLarge = "headers_too_large", 431, "the request headers are too large";
    UnknownRoute = "unknown_route", 404, "no such route; see /openapi.json";
    MethodNotAllowed = "method_not_allowed", 405, "the route does not take that method";
    NotFound = "not_found", 404, "the named resource does not exist or is not visible to the caller";
    InvalidId = "invalid_id", 400, "a plugin, publisher or other id is malformed";
    InvalidVersion = "invalid_version", 400, "a version is not semver such as 1.2.3";
    InvalidRequirement = "invalid_requirement", 400, "a version requirement is not a semver requirement";
    InvalidDigest = "invalid_digest", 400, "a digest is not sha256:<64 hex digits>";

    // Idempotency.
    IdempotencyKeyRequired = "idempotency_key_required", 400, "this operation needs an Idempotency-Key header";
    InvalidIdempotencyKey = "invalid_idempotency_key", 400, "the Idempotency-Key header is empty, too long or not visible ASCII";
    IdempotencyKeyReused = "idempotency_key_reused", 422, "the Idempotency-Key was used before with a different request";
    IdempotencyInProgress = "idempotency_in_progress", 409, "a request with this Idempotency-Key is still running; retry shortly";

    // Publishing: the manifest, the component, the signature.
    ManifestSyntax = "manifest_syntax", 422, "nexus.toml is not valid TOML";
    ManifestMissingField = "manifest_missing_field", 422, "nexus.toml lacks a required field";
    ManifestInvalidField = "manifest_invalid_field", 422, "a field of nexus.toml is invalid";
    NotAComponent = "not_a_component", 422, "the upload is not a WebAssembly component";
    UnsupportedContract = "unsupported_contract", 422, "the component targets no contract version open for publishing";
    UnsupportedImport = "unsupported_import", 422, "the component imports something the host does not provide";
    LinkFailed = "link_failed", 422, "the component cannot be linked against the host";
    CacheFailed = "cache_failed", 422, "the host's component cache failed while preparing the component";
    ExceedsHostLimits = "exceeds_host_limits", 422, "the component needs more of the host than one invocation may hold";
    ContractMismatch = "contract_mismatch", 422, "the manifest's contract differs from the component's";
    UndeclaredCapability = "undeclared_capability", 422, "the component imports a capability the manifest does not declare";
    DigestMismatch = "digest_mismatch", 422, "the upload's sha256 differs from the digest the client sent";
    InvalidKey = "invalid_key", 422, "a signing public key is malformed";
    InvalidSignature = "invalid_signature", 422, "a signature is malformed";
    SignatureMismatch = "signature_mismatch", 422, "the signature does not verify against the publisher's key";
    EntropyUnavailable = "entropy_unavailable", 422, "no randomness was available to generate a key";
    UnknownKey = "unknown_key", 422, "no active signing key of this publisher has that fingerprint";
    VersionExists = "version_exists", 409, "that version is already published; versions are immutable";
    VersionReservedForDev = "version_reserved_for_dev", 400, "a version whose pre-release starts with `dev.` is a development version, numbered by the registry";
    DevTenantMissing = "dev_tenant_missing", 409, "the publisher has no development tenant on this marketplace to install development versions";
    PublisherExists = "publisher_exists", 409, "a publisher with that name already exists";
    NoMatchingVersion = "no_matching_version", 404, "no unyanked version matches the requirement";
    ComponentRefused = "component_refused", 400, "the host refused to load the plugin's component";

    // Accounts, catalog, installs, events.
    TenantExists = "tenant_exists", 409, "a tenant with that name already exists";
    InvalidSettings = "invalid_settings", 400, "an install's settings or secrets have too many entries, a bad key or a too-long value, or lack one the version requires";
    ConsentRequired = "consent_required", 409, "installing or upgrading needs the tenant's consent to the capabilities in details";
    AlreadyInstalled = "already_installed", 409, "the tenant already has this plugin installed";
    PluginDelisted = "plugin_delisted", 409, "the plugin is delisted and cannot be installed";
    Uninstalled = "uninstalled", 409, "the install was uninstalled";
    NotPaused = "not_paused", 409, "the install is not paused, so it cannot be resumed";
    NoPendingUpgrade = "no_pending_upgrade", 409, "the install has no upgrade awaiting consent";
    InstallChanged = "install_changed", 409, "the install changed meanwhile; look again";
    InstallPaused = "install_paused", 409, "the install is paused; resume it first";
    InstallPendingPayment = "install_pending_payment", 409, "the install runs once its due charge is collected";
    SecretsUnreadable = "secrets_unreadable", 409, "the install's sealed secrets cannot be opened";
    InvalidEvent = "invalid_event", 400, "the event's type, id or payload is invalid";
    InvalidPrefer = "invalid_prefer", 400, "the Prefer header asks for something other than respond-async";
    DeliveryNotReplayable = "delivery_not_replayable", 409, "only dead or failed deliveries can be replayed";
    InvalidWebhookUrl = "invalid_webhook_url", 400, "a webhook URL is not https, names an address not allowed, or carries credentials";
    TooManyWebhooks = "too_many_webhooks", 409, "the tenant has as many webhook endpoints as it may";

    // Listing media.
    InvalidMedia = "invalid_media", 400, "a listing image is truncated or corrupt, breaks its slot's rules (a square icon of 64 to 1024 pixels, a screenshot at least 320 pixels wide) or names a screenshot position outside 1 to 8";
    MediaTooLarge = "media_too_large", 413, "a listing image has more bytes or pixels than its slot allows";
    UnsupportedImage = "unsupported_image", 415, "a listing image is not a PNG, JPEG or WebP image as decoded (whatever its name or Content-Type)";

    // People.
    InvalidEmail = "invalid_email", 400, "an email address is malformed";
    WeakPassword = "weak_password", 400, "a password is too short, too long, too common or contains the email address";
    SignInFailed = "sign_in_failed", 401, "the email address or the password is wrong";
    EmailNotVerified = "email_not_verified", 403, "the account's email address is not confirmed yet; a new link was mailed";
    InvalidLink = "invalid_link", 400, "a mailed link is unknown, already used or expired";
    ApplicationDecided = "application_decided", 409, "the partner application was already approved or rejected";
    LastOwner = "last_owner", 409, "an organization keeps at least one owner; make another member owner first";
    AlreadyMember = "already_member", 409, "the person is already a member of the organization";
    SecondFactorRequired = "second_factor_required", 401, "the account needs its authenticator code (or a recovery code), or must set up a second factor first";
    InvalidReview = "invalid_review", 400, "a review's rating, title or text is out of bounds or holds control characters";
    ReviewNotAllowed = "review_not_allowed", 403, "only an organization that has used the plugin for a day (one applied event) may review it";
    ReviewExists = "review_exists", 409, "the organization already reviewed this plugin; edit that review instead";
    FeaturedSlotsFull = "featured_slots_full", 409, "every featured slot is taken for part of the placement's time";
    AgreementNotAccepted = "agreement_not_accepted", 403, "the partner agreement changed; an owner or admin accepts the current version before the next publish";

    // Money.
    InvalidAmount = "invalid_amount", 400, "an amount is malformed, negative or otherwise out of range";
    UnknownCurrency = "unknown_currency", 400, "the currency is not an ISO 4217 code the marketplace takes";
    CurrencyMismatch = "currency_mismatch", 400, "amounts in different currencies were combined";
    AmountOverflow = "amount_overflow", 400, "an amount is too large to compute with";
    InvalidPolicy = "invalid_policy", 400, "a revenue-share policy is invalid";
    RetroactivePolicy = "retroactive_policy", 400, "a revenue-share policy would take effect in the past";
    InvalidPosting = "invalid_posting", 400, "a ledger posting does not balance or is malformed";
    RefundExceedsCharge = "refund_exceeds_charge", 400, "refunds would exceed what the charge collected";
    ChargeNotCollected = "charge_not_collected", 409, "only collected charges can be refunded";
    InvalidPlan = "invalid_plan", 400, "a plan's fields are invalid (an unknown interval, a negative price, ...)";
    UnknownPlan = "unknown_plan", 400, "the plugin has no plan with that key";
    NoPlan = "no_plan", 409, "the plugin offers no plan, or the install has none to change from";
    LastPlan = "last_plan", 409, "a plugin must keep offering at least one plan";
    PlanChanged = "plan_changed", 409, "another revision of the plan was added meanwhile; retry";
    PlanRetired = "plan_retired", 400, "the plan is no longer offered";
    PlanOfAnotherPlugin = "plan_of_another_plugin", 400, "the plan belongs to another plugin";
    SamePlan = "same_plan", 409, "the install is already on that plan";
    PaymentOutstanding = "payment_outstanding", 409, "a charge of the install is still unpaid";
    AlreadyHeld = "already_held", 409, "the partner's payouts are already on hold";
    InvalidPeriod = "invalid_period", 400, "a billing period is malformed";
    FuturePeriod = "future_period", 400, "the period has not started yet";
    FutureBilling = "future_billing", 400, "a billing run cannot bill ahead of now";

    // The service's own failures.
    Storage = "storage", 500, "the registry's storage failed; details are in the operator's log";
    StorageFailure = "storage_failure", 500, "the marketplace's storage failed; details are in the operator's log";
    ArtifactMissing = "artifact_missing", 500, "a version's artifact is missing from the artifact store";
    ArtifactCorrupt = "artifact_corrupt", 500, "a stored artifact does not match its digest and is not served";
    ResponseFailed = "response_failed", 500, "the answer could not be read to store it for idempotent replay";
    Internal = "internal", 500, "a console page could not be rendered";
    ServerError = "server_error", 500, "the server failed (any 5xx without a more specific code)";
}

impl ErrorCode {
    /// The code whose wire string is `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|code| code.as_str() == text)
    }

    /// The table as Markdown: what `docs/errors.md` holds and the OpenAPI description shows.
    pub fn markdown_table() -> String {
        let mut table = String::from("| code | status | meaning |\n|---|---|---|\n");
        for code in Self::ALL {
            table.push_str(&format!("| `{}` | {} | {} |\n", code.as_str(), code.status(), code.meaning()));
        }
        table
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tests and clients compare a code with the wire string they expect.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{text}`")))
    }
}

/// In `/openapi.json`: a string enum of every wire string, the table in its description.
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Self::ALL.iter().map(|code| code.as_str())))
            .description(Some(format!("Stable, machine-readable error code.\n\n{}", Self::markdown_table())))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_unique_snake_case_with_a_meaning_and_an_error_status() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let wire = code.as_str();
            assert!(seen.insert(wire), "{wire} appears twice");
            let snake = wire.split('_').all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()));
            assert!(snake, "{wire} is not snake_case");
            assert!(!code.meaning().trim().is_empty(), "{wire} has no meaning");
            assert!((400..=599).contains(&code.status()), "{wire} has status {}", code.status());
            assert_eq!(ErrorCode::parse(wire), Some(*code));
        }
    }

    /// `docs/errors.md` is this table: regenerate it from the failure message when a code
    /// is added.
    #[test]
    fn the_docs_list_every_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md");
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        let expected = errors_md();
        assert!(
            written == expected,
            "{} is out of date with ErrorCode; write this into it:\n\n{expected}",
            path.display()
        );
    }

    fn errors_md() -> String {
        format!(
            "# Error codes\n\n\
             Every error answer is `{{\"error\": {{\"code\", \"message\", \"request_id\"}}}}`, sometimes with \
             `details`.\nThe `code` is one of these and never changes once shipped; the message is for people \
             and may.\nThis file is generated from `ErrorCode` (`registry/src/error_code.rs`): a test fails \
             when they differ.\n\n{}",
            ErrorCode::markdown_table()
        )
    }

    #[test]
    fn a_code_serializes_as_its_wire_string_and_back() {
        let json = serde_json::to_string(&ErrorCode::IdempotencyKeyReused).unwrap_or_default();
        assert_eq!(json, r#""idempotency_key_reused""#);
        assert_eq!(serde_json::from_str::<ErrorCode>(&json).ok(), Some(ErrorCode::IdempotencyKeyReused));
        assert!(serde_json::from_str::<ErrorCode>(r#""no_such_code""#).is_err());
    }

    #[test]
    fn the_host_s_load_codes_are_in_the_list() {
        use nexus_host::LoadError as L;
        let message = String::new;
        for error in [
            L::NotAComponent(message()),
            L::UnsupportedContract(message()),
            L::UnsupportedImport(message()),
            L::Link(message()),
            L::Cache(message()),
            L::ExceedsHostLimits(message()),
        ] {
            assert_eq!(ErrorCode::from(&error).as_str(), error.code());
        }
    }
}
