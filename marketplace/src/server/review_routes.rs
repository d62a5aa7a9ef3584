//! What tenants and partners say about listings: ratings and reviews, publishers' replies,
//! operators' moderation and helpful marks; a listing's text edited between versions; and
//! publishers' public profiles.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, MaybeAuth};
use super::extract::{JsonBody, QueryParams};
use super::registry_routes::plugin_id;
use super::{ApiError, AppState};
use crate::catalog::listing_text::{self, TextEdit};
use crate::error::Page;
use crate::publisher_profiles::{self, ProfileEdit, PublisherProfile};
use crate::reviews::{self, Review, ReviewInput, ReviewQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reviews, write_review))
        .routes(routes!(show_my_review, edit_my_review, delete_my_review))
        .routes(routes!(reply_to_review, remove_reply))
        .routes(routes!(hide_review, show_review))
        .routes(routes!(mark_helpful, unmark_helpful))
        .routes(routes!(edit_listing_text))
        .routes(routes!(show_publisher_profile, edit_publisher_profile))
}

/// A listing's visible reviews, paged: newest first, most helpful, or by rating; operators
/// also get hidden ones (with why).
#[utoipa::path(get, path = "/v1/catalog/{publisher}/{name}/reviews", tag = "reviews",
    params(("publisher" = String, Path), ("name" = String, Path), ReviewQuery),
    responses((status = 200, body = Page<Review>)))]
pub async fn list_reviews(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    Path((publisher, name)): Path<(String, String)>,
    QueryParams(query): QueryParams<ReviewQuery>,
) -> Result<Json<Page<Review>>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    crate::catalog::shown(&state.market.db, &id).await?;
    Ok(Json(reviews::list(&state.market.db, caller.as_ref(), &id, &query).await?))
}

/// Reviews the plugin for the caller's organization (a tenant token with `installs`): one
/// review per organization, which must have had it installed for a day and run one event.
#[utoipa::path(post, path = "/v1/catalog/{publisher}/{name}/reviews", tag = "reviews", request_body = ReviewInput,
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 201, body = Review)))]
pub async fn write_review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    JsonBody(input): JsonBody<ReviewInput>,
) -> Result<(StatusCode, Json<Review>), ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok((StatusCode::CREATED, Json(reviews::write(&state.market, &caller, &id, &input, true).await?)))
}

/// The organization's own review, with an operator's reason if it was hidden.
#[utoipa::path(get, path = "/v1/catalog/{publisher}/{name}/reviews/mine", tag = "reviews",
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 200, body = Review)))]
pub async fn show_my_review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Json<Review>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(reviews::mine(&state.market.db, &caller, &id).await?))
}

/// Edits the organization's review (rating, title and text all replaced).
#[utoipa::path(put, path = "/v1/catalog/{publisher}/{name}/reviews/mine", tag = "reviews", request_body = ReviewInput,
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 200, body = Review)))]
pub async fn edit_my_review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    JsonBody(input): JsonBody<ReviewInput>,
) -> Result<Json<Review>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(reviews::write(&state.market, &caller, &id, &input, false).await?))
}

#[utoipa::path(delete, path = "/v1/catalog/{publisher}/{name}/reviews/mine", tag = "reviews",
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 204)))]
pub async fn delete_my_review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    reviews::delete_mine(&state.market, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    /// Up to 2,000 characters.
    body: String,
}

/// The plugin's publisher replies to a review, or replaces its reply.
#[utoipa::path(put, path = "/v1/reviews/{id}/reply", tag = "reviews", request_body = ReplyBody,
    params(("id" = String, Path)), responses((status = 200, body = Review)))]
pub async fn reply_to_review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReplyBody>,
) -> Result<Json<Review>, ApiError> {
    Ok(Json(reviews::reply(&state.market, &caller, &id.parse()?, Some(&body.body)).await?))
}

#[utoipa::path(delete, path = "/v1/reviews/{id}/reply", tag = "reviews",
    params(("id" = String, Path)), responses((status = 200, body = Review)))]
pub async fn remove_reply(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Review>, ApiError> {
    Ok(Json(reviews::reply(&state.market, &caller, &id.parse()?, None).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HideBody {
    /// Shown to the review's authors.
    reason: String,
}

/// An operator hides a review with a reason its authors see.
#[utoipa::path(put, path = "/v1/reviews/{id}/hidden", tag = "reviews", request_body = HideBody,
    params(("id" = String, Path)), responses((status = 200, body = Review)))]
pub async fn hide_review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<HideBody>,
) -> Result<Json<Review>, ApiError> {
    Ok(Json(reviews::hide(&state.market, &caller, &id.parse()?, Some(&body.reason)).await?))
}

/// An operator shows a hidden review again.
#[utoipa::path(delete, path = "/v1/reviews/{id}/hidden", tag = "reviews",
    params(("id" = String, Path)), responses((status = 200, body = Review)))]
pub async fn show_review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Review>, ApiError> {
    Ok(Json(reviews::hide(&state.market, &caller, &id.parse()?, None).await?))
}

/// Marks a review helpful for the caller's organization; marking again changes nothing.
#[utoipa::path(put, path = "/v1/reviews/{id}/helpful", tag = "reviews",
    params(("id" = String, Path)), responses((status = 200, body = Review)))]
pub async fn mark_helpful(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Review>, ApiError> {
    Ok(Json(reviews::mark_helpful(&state.market, &caller, &id.parse()?, true).await?))
}

#[utoipa::path(delete, path = "/v1/reviews/{id}/helpful", tag = "reviews",
    params(("id" = String, Path)), responses((status = 200, body = Review)))]
pub async fn unmark_helpful(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Review>, ApiError> {
    Ok(Json(reviews::mark_helpful(&state.market, &caller, &id.parse()?, false).await?))
}

/// The publisher edits its listing's summary, description or links between versions
/// (audited); the next version published brings its manifest's text again.
#[utoipa::path(patch, path = "/v1/catalog/{publisher}/{name}/text", tag = "catalog", request_body = TextEdit,
    params(("publisher" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = crate::catalog::ListingDetail)))]
pub async fn edit_listing_text(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    JsonBody(edit): JsonBody<TextEdit>,
) -> Result<Json<crate::catalog::ListingDetail>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    listing_text::edit(&state.market.db, &caller, &id, &edit).await?;
    Ok(Json(crate::catalog::detail(&state.market.db, &state.market.registry, &id, Some(&caller)).await?))
}

/// A publisher's public profile: name, badges, website, support, about, listings, installs
/// and average rating.
#[utoipa::path(get, path = "/v1/publishers/{publisher}/profile", tag = "catalog",
    params(("publisher" = String, Path)), responses((status = 200, body = PublisherProfile)))]
pub async fn show_publisher_profile(
    State(state): State<AppState>,
    Path(publisher): Path<String>,
) -> Result<Json<PublisherProfile>, ApiError> {
    Ok(Json(publisher_profiles::get(&state.market.db, &publisher).await?))
}

/// The publisher (or an operator) replaces its profile's website, support contact and about.
#[utoipa::path(put, path = "/v1/publishers/{publisher}/profile", tag = "catalog", request_body = ProfileEdit,
    params(("publisher" = String, Path)), responses((status = 200, body = PublisherProfile)))]
pub async fn edit_publisher_profile(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    JsonBody(edit): JsonBody<ProfileEdit>,
) -> Result<Json<PublisherProfile>, ApiError> {
    Ok(Json(publisher_profiles::set(&state.market.db, &caller, &publisher, &edit).await?))
}
