//! Listing media: the publisher puts up an icon and screenshots as raw bodies (any
//! Content-Type: the bytes say what they are), lists and removes them; operators may remove
//! them too. `GET /media/{digest}` serves the bytes kept, to anyone, for ever cacheable.

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use nexus_registry::ErrorCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, MaybeAuth};
use super::extract::QueryParams;
use super::registry_routes::plugin_id;
use super::{ApiError, AppState};
use crate::error::MarketError;
use crate::media::{self, MediaItem, Place, Slot};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_media))
        .routes(routes!(put_icon, delete_icon))
        .routes(routes!(put_screenshot, delete_screenshot))
}

/// `/media/{digest}`: outside the JSON API (no token, no JSON), like the console's style.
pub fn serving() -> Router<AppState> {
    Router::new().route("/media/{digest}", axum::routing::get(serve_media))
}

/// Reads an upload up to its slot's limit: a larger body is refused as soon as it passes
/// the limit, not read to its end.
async fn upload(body: Body, slot: Slot) -> Result<Vec<u8>, ApiError> {
    let max = slot.max_bytes();
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(error) if super::error::body_timed_out(&error) => Err(super::error::body_timeout()),
        Err(_) => Err(MarketError::invalid(
            ErrorCode::MediaTooLarge,
            format!(
                "the {} is more than {max} bytes; it may be at most {max} bytes ({} MiB)",
                slot.as_str(),
                max >> 20
            ),
        )
        .into()),
    }
}

fn position(text: &str) -> Result<Place, ApiError> {
    let number = text.parse::<u32>().map_err(|_| {
        MarketError::invalid(
            ErrorCode::InvalidMedia,
            format!("screenshot position `{text}` is not a number from 1 to 8"),
        )
    })?;
    Ok(Place::screenshot(number)?)
}

#[utoipa::path(get, path = "/v1/plugins/{publisher}/{name}/media", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Vec<MediaItem>, description = "the listing's icon and screenshots")))]
pub async fn list_media(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Json<Vec<MediaItem>>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(media::list(&state.market.db, &id, caller.as_ref()).await?))
}

/// The icon: a square PNG, JPEG or WebP of 64 to 1024 pixels, at most 1 MiB. Encoded again
/// before it is kept (metadata dropped); replaces the icon shown.
#[utoipa::path(put, path = "/v1/plugins/{publisher}/{name}/media/icon", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path)),
    request_body(content_type = "application/octet-stream", description = "the image's bytes"),
    responses((status = 200, body = MediaItem)))]
pub async fn put_icon(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    body: Body,
) -> Result<Json<MediaItem>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    // Refused callers are refused before their bytes are read.
    media::may_upload(&caller, id.publisher.as_str())?;
    let bytes = upload(body, Slot::Icon).await?;
    let market = &state.market;
    Ok(Json(media::put(&market.db, &market.registry, &caller, &id, Place::ICON, None, bytes).await?))
}

#[utoipa::path(delete, path = "/v1/plugins/{publisher}/{name}/media/icon", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 204)))]
pub async fn delete_icon(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    media::remove(&state.market.db, &caller, &id, Place::ICON).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CaptionQuery {
    /// The screenshot's caption, shown as its alt text (at most 200 characters).
    caption: Option<String>,
}

/// Screenshot 1 to 8: a PNG, JPEG or WebP at least 320 pixels wide, at most 4096 × 4096
/// pixels and 5 MiB. Encoded again before it is kept; replaces the one at that position.
#[utoipa::path(put, path = "/v1/plugins/{publisher}/{name}/media/screenshots/{position}", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path), ("position" = u32, Path), CaptionQuery),
    request_body(content_type = "application/octet-stream", description = "the image's bytes"),
    responses((status = 200, body = MediaItem)))]
pub async fn put_screenshot(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name, number)): Path<(String, String, String)>,
    QueryParams(query): QueryParams<CaptionQuery>,
    body: Body,
) -> Result<Json<MediaItem>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    media::may_upload(&caller, id.publisher.as_str())?;
    let place = position(&number)?;
    let bytes = upload(body, Slot::Screenshot).await?;
    let market = &state.market;
    let caption = query.caption.as_deref();
    Ok(Json(media::put(&market.db, &market.registry, &caller, &id, place, caption, bytes).await?))
}

#[utoipa::path(delete, path = "/v1/plugins/{publisher}/{name}/media/screenshots/{position}", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path), ("position" = u32, Path)),
    responses((status = 204)))]
pub async fn delete_screenshot(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name, number)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    media::remove(&state.market.db, &caller, &id, position(&number)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bytes of a listing image by the hex of their sha256: typed as stored, cacheable for
/// a year (the address changes with the bytes), never sniffed, never run as a document.
async fn serve_media(State(state): State<AppState>, Path(digest): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let (content_type, bytes) = media::served(&state.market.db, &state.market.registry, &digest).await?;
    let content_type = HeaderValue::from_str(&content_type).map_err(|e| crate::error::storage(e.to_string()))?;
    let etag = HeaderValue::from_str(&format!("\"{digest}\"")).map_err(|e| crate::error::storage(e.to_string()))?;
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox")),
        (header::ETAG, etag),
    ];
    Ok((headers, Bytes::from(bytes)))
}
