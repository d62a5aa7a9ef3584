//! Registry routes: publish, versions, resolution, artifact download, yank, keys, tokens.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use nexus_registry::ErrorCode;
use nexus_registry::{
    KeyInfo, PluginId, PublicKey, PublishRequest, Published, Scope, Signature, SignedBy, VersionRecord,
    resolve::parse_requirement,
};
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::auth::{Auth, MaybeAuth, Publisher};
use super::extract::JsonBody;
use super::extract::QueryParams;
use super::{ApiError, AppState, MAX_UPLOAD_BYTES};
use crate::dev_versions::DevPublished;
use crate::error::{Page, PageQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish_version).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .routes(routes!(publish_dev_version).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(download_component))
        .routes(routes!(yank_version))
        .routes(routes!(resolve_version))
        .routes(routes!(show_version_health))
        .routes(routes!(list_keys, add_key))
        .routes(routes!(revoke_key))
        .routes(routes!(create_token))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HealthQuery {
    /// Only invocations started at or after this time (ms since the epoch; default: all).
    #[serde(default)]
    since: i64,
}

/// Invocations, error rates and error codes per version of the plugin, over all its
/// installs: for its publisher and operators. No tenant's payloads, data or secrets.
#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/health", tag = "registry",
    params(("publisher" = String, Path), ("name" = String, Path), HealthQuery),
    responses((status = 200, body = Vec<crate::records::VersionHealth>)))]
pub async fn show_version_health(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    QueryParams(query): QueryParams<HealthQuery>,
) -> Result<Json<Vec<crate::records::VersionHealth>>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    caller.may_act_for_publisher(id.publisher.as_str())?;
    state.market.registry.versions(&id).await?;
    Ok(Json(crate::records::version_health(&state.market, &id.to_string(), query.since).await?))
}

pub(super) fn plugin_id(publisher: &str, name: &str) -> Result<PluginId, ApiError> {
    Ok(format!("{publisher}/{name}").parse::<PluginId>().map_err(nexus_registry::RegistryError::from)?)
}

fn version(text: &str) -> Result<Version, ApiError> {
    text.parse().map_err(|_| nexus_registry::RegistryError::InvalidVersion(text.to_string()).into())
}

/// `multipart/form-data` with parts `manifest` (the nexus.toml text), `component` (the
/// bytes), and optionally `digest`, `signature` and `key` (the signing key's fingerprint).
#[utoipa::path(post, path = "/v1/publish", tag = "registry", request_body(content_type = "multipart/form-data", description = "parts `manifest` (nexus.toml text), `component` (bytes), optional `digest`, `signature`, `key`"),
    responses((status = 201, body = Object, description = "the published version and its URL")))]
pub async fn publish_version(
    State(state): State<AppState>,
    Publisher(caller): Publisher,
    form: Multipart,
) -> Result<(StatusCode, [(axum::http::HeaderName, String); 1], Json<PublishedBody>), ApiError> {
    let request = publish_form(form).await?;
    let published = state.market.publish(&caller, request).await?;
    let path = format!("/v1/plugins/{}/versions/{}", published.id, published.version);
    let url = format!("{}{path}", state.public_url);
    let id: PluginId = published.id.parse().map_err(nexus_registry::RegistryError::from)?;
    let installs = crate::installs::moves_to(&state.market, &id, &version(&published.version)?).await?;
    let body = PublishedBody { published, url, installs };
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, path)], Json(body)))
}

/// The publish form's parts as a request.
async fn publish_form(mut form: Multipart) -> Result<PublishRequest, ApiError> {
    let (mut manifest, mut component, mut digest, mut signature, mut key) = (None, None, None, None, None);
    let form_error = |e: axum::extract::multipart::MultipartError| {
        let code =
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE { ErrorCode::TooLarge } else { ErrorCode::InvalidForm };
        ApiError::new(e.status(), code, e.body_text())
    };
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(form_error)?;
        let text = || {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::bad_request(ErrorCode::InvalidForm, format!("form part {name} is not UTF-8")))
        };
        match name.as_str() {
            "manifest" => manifest = Some(text()?),
            "component" => component = Some(bytes.to_vec()),
            "digest" => digest = Some(text()?),
            "signature" => signature = Some(text()?),
            "key" => key = Some(text()?),
            other => return Err(ApiError::bad_request(ErrorCode::InvalidForm, format!("unknown form part `{other}`"))),
        }
    }
    let missing = |part: &str| ApiError::bad_request(ErrorCode::InvalidForm, format!("the form has no `{part}` part"));
    let signature = match (signature, key) {
        (Some(signature), Some(key)) => {
            let signature: Signature = signature.parse().map_err(nexus_registry::RegistryError::from)?;
            Some(SignedBy { key_fingerprint: key.trim().to_string(), signature })
        }
        (None, None) => None,
        _ => return Err(ApiError::bad_request(ErrorCode::InvalidForm, "`signature` and `key` go together")),
    };
    Ok(PublishRequest {
        manifest: manifest.ok_or_else(|| missing("manifest"))?,
        component: component.ok_or_else(|| missing("component"))?,
        claimed_digest: digest,
        signature,
    })
}

/// Publishes the working copy as the next development version of its manifest's release
/// (`1.2.0-dev.N`): never listed, installable only by the publisher's development tenants
/// with a requirement naming it, pruned as newer ones come. The same form as
/// `POST /v1/publish`; a signature is not kept.
#[utoipa::path(post, path = "/v1/publish/dev", tag = "registry", request_body(content_type = "multipart/form-data", description = "parts `manifest` (nexus.toml text), `component` (bytes), optional `digest`"),
    responses((status = 201, body = DevPublished)))]
pub async fn publish_dev_version(
    State(state): State<AppState>,
    Publisher(caller): Publisher,
    form: Multipart,
) -> Result<(StatusCode, Json<DevPublished>), ApiError> {
    let request = publish_form(form).await?;
    let published = crate::dev_versions::publish(&state.market, &caller, request).await?;
    Ok((StatusCode::CREATED, Json(published)))
}

#[derive(Serialize)]
pub struct PublishedBody {
    #[serde(flatten)]
    published: Published,
    url: String,
    /// What the new version did to the plugin's installs.
    installs: crate::installs::InstallMoves,
}

#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/versions", tag = "registry", params(("publisher" = String, Path), ("name" = String, Path), PageQuery),
    responses((status = 200, body = Page<Object>, description = "every version, newest first, yanked ones included")))]
pub async fn list_versions(
    State(state): State<AppState>,
    Path((publisher, name)): Path<(String, String)>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<VersionRecord>>, ApiError> {
    Ok(Json(Page::of(state.market.registry.versions(&plugin_id(&publisher, &name)?).await?, &query)?))
}

#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/versions/{version}", tag = "registry",
    params(("publisher" = String, Path), ("name" = String, Path), ("version" = String, Path)), responses((status = 200, body = Object, description = "one version with its manifest")))]
pub async fn get_version(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    Path((publisher, name, text)): Path<(String, String, String)>,
) -> Result<Json<VersionRecord>, ApiError> {
    let (id, version) = (plugin_id(&publisher, &name)?, version(&text)?);
    crate::dev_versions::may_see(&state.market, caller.as_ref(), &id, &version).await?;
    Ok(Json(state.market.registry.version(&id, &version).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResolveQuery {
    req: String,
}

#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/resolve", tag = "registry", params(("publisher" = String, Path), ("name" = String, Path), ResolveQuery),
    responses((status = 200, body = Object, description = "the highest non-yanked version matching `req`")))]
pub async fn resolve_version(
    State(state): State<AppState>,
    Path((publisher, name)): Path<(String, String)>,
    QueryParams(query): QueryParams<ResolveQuery>,
) -> Result<Json<VersionRecord>, ApiError> {
    let requirement = parse_requirement(&query.req).map_err(nexus_registry::RegistryError::from)?;
    Ok(Json(state.market.registry.resolve(&plugin_id(&publisher, &name)?, &requirement).await?))
}

/// The component bytes, verified against their digest before a byte is sent.
#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/versions/{version}/component", tag = "registry",
    params(("publisher" = String, Path), ("name" = String, Path), ("version" = String, Path)), responses((status = 200, content_type = "application/wasm", description = "the component, verified against its digest")))]
pub async fn download_component(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    Path((publisher, name, text)): Path<(String, String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (id, version) = (plugin_id(&publisher, &name)?, version(&text)?);
    crate::dev_versions::may_see(&state.market, caller.as_ref(), &id, &version).await?;
    let (record, bytes) = state.market.registry.fetch(&id, &version).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
    let digest = HeaderValue::from_str(&record.digest.to_string())
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidDigest, e.to_string()))?;
    headers.insert("x-nexus-digest", digest);
    if let (Some(signature), Some(key)) = (&record.signature, &record.key_fingerprint)
        && let (Ok(signature), Ok(key)) = (HeaderValue::from_str(signature), HeaderValue::from_str(key))
    {
        headers.insert("x-nexus-signature", signature);
        headers.insert("x-nexus-signing-key", key);
    }
    Ok((headers, Bytes::from(bytes)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YankBody {
    reason: String,
    #[serde(default)]
    successor: Option<String>,
}

#[utoipa::path(post, path = "/v1/plugins/{publisher}/{name}/versions/{version}/yank", tag = "registry",
    params(("publisher" = String, Path), ("name" = String, Path), ("version" = String, Path)), request_body = YankBody, responses((status = 200, body = Object, description = "the yanked version")))]
pub async fn yank_version(
    State(state): State<AppState>,
    Publisher(caller): Publisher,
    Path((publisher, name, text)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<YankBody>,
) -> Result<Json<VersionRecord>, ApiError> {
    let successor = body.successor.as_deref().map(version).transpose()?;
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(state.market.yank(&caller, &id, &version(&text)?, &body.reason, successor.as_ref()).await?))
}

fn own_namespace(caller: &nexus_registry::Credential, publisher: &str) -> Result<(), ApiError> {
    if caller.publisher.as_str() != publisher {
        return Err(nexus_registry::RegistryError::NamespaceNotOwned { namespace: publisher.to_string() }.into());
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/publishers/{publisher}/keys", tag = "registry", params(("publisher" = String, Path), PageQuery),
    responses((status = 200, body = Page<Object>, description = "the publisher's signing keys, revoked ones included")))]
pub async fn list_keys(
    State(state): State<AppState>,
    Path(publisher): Path<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<KeyInfo>>, ApiError> {
    let name = publisher
        .parse()
        .map_err(|e: nexus_registry::id::NameError| ApiError::bad_request(ErrorCode::InvalidId, e.to_string()))?;
    Ok(Json(Page::of(state.market.registry.keys(&name).await?, &query)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddKeyBody {
    public_key: String,
}

#[utoipa::path(post, path = "/v1/publishers/{publisher}/keys", tag = "registry", params(("publisher" = String, Path)),
    request_body = AddKeyBody, responses((status = 201, body = Object, description = "the registered key")))]
pub async fn add_key(
    State(state): State<AppState>,
    Publisher(caller): Publisher,
    Path(publisher): Path<String>,
    JsonBody(body): JsonBody<AddKeyBody>,
) -> Result<(StatusCode, Json<KeyInfo>), ApiError> {
    own_namespace(&caller, &publisher)?;
    let key: PublicKey = body.public_key.parse().map_err(nexus_registry::RegistryError::from)?;
    let info = state.market.registry.add_key(&caller, &key).await?;
    audit(&state, &caller, "key.added", &publisher, json!({ "fingerprint": info.fingerprint })).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(delete, path = "/v1/publishers/{publisher}/keys/{fingerprint}", tag = "registry",
    params(("publisher" = String, Path), ("fingerprint" = String, Path)), responses((status = 204)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Publisher(caller): Publisher,
    Path((publisher, fingerprint)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    own_namespace(&caller, &publisher)?;
    state.market.revoke_key(&caller, &fingerprint).await?;
    audit(&state, &caller, "key.revoked", &publisher, json!({ "fingerprint": fingerprint })).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// `publish`, `yank`, `keys`.
    #[schema(value_type = Vec<String>)]
    scopes: BTreeSet<Scope>,
    label: String,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

#[utoipa::path(post, path = "/v1/publishers/{publisher}/tokens", tag = "registry", params(("publisher" = String, Path)),
    request_body = TokenBody, responses((status = 201, body = Object, description = "the token, shown once")))]
pub async fn create_token(
    State(state): State<AppState>,
    Publisher(caller): Publisher,
    Path(publisher): Path<String>,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<(StatusCode, Json<nexus_registry::IssuedToken>), ApiError> {
    own_namespace(&caller, &publisher)?;
    // A token cannot mint a stronger one: it grants only scopes it holds.
    if let Some(missing) = body.scopes.iter().find(|scope| !caller.scopes.contains(scope)) {
        return Err(nexus_registry::RegistryError::MissingScope(missing.as_str()).into());
    }
    let expires_at = super::account_routes::expiry(body.expires_in_days)?;
    let created_by = crate::accounts::Caller::Publisher(caller.clone()).actor();
    let token = state.market.registry.issue_token(&caller, body.scopes, &body.label, expires_at, &created_by).await?;
    let detail = json!({ "token": token.id, "scopes": token.scopes, "expires_at": token.expires_at });
    audit(&state, &caller, "token.issued", &publisher, detail).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(delete, path = "/v1/publishers/{publisher}/tokens/{id}", tag = "registry",
    params(("publisher" = String, Path), ("id" = String, Path)), responses((status = 204)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    Publisher(caller): Publisher,
    Path((publisher, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    own_namespace(&caller, &publisher)?;
    // The scope before the id, as the registry checks them: a malformed id is a 404 only for
    // a caller who may revoke.
    caller.require(nexus_registry::Scope::Keys)?;
    let id: crate::ids::TokenId = id.parse()?;
    state.market.registry.revoke_token(&caller, id.as_str()).await?;
    audit(&state, &caller, "token.revoked", &publisher, json!({ "token": id })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records a publisher's key or token change in the audit log.
async fn audit(
    state: &AppState,
    caller: &nexus_registry::Credential,
    action: &str,
    publisher: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let actor = crate::accounts::Caller::Publisher(caller.clone()).actor();
    crate::audit::record(state.market.db.writer(), &actor, action, publisher, detail).await?;
    Ok(())
}
