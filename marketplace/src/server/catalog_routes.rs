//! The catalog: search and listing detail (public), consent preview, featuring and
//! delisting (operators), and a publisher's own listings with moderation reasons.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, MaybeAuth};
use super::extract::{JsonBody, QueryParams};
use super::registry_routes::plugin_id;
use super::{ApiError, AppState};
use crate::catalog::{self, Listing, ListingDetail, SearchQuery, SearchResults};
use crate::error::{Page, PageQuery};
use crate::installs::{self, Consent};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_catalog))
        .routes(routes!(show_listing))
        .routes(routes!(preview_consent))
        .routes(routes!(feature_listing, unfeature_listing))
        .routes(routes!(delist_listing, relist_listing))
        .routes(routes!(list_publisher_listings))
}

/// Listed plugins matching the query, a page at a time, with how many each category and
/// plan model would find (`facets`).
#[utoipa::path(get, path = "/v1/catalog", tag = "catalog", params(SearchQuery),
    responses((status = 200, body = SearchResults)))]
pub async fn search_catalog(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<SearchQuery>,
) -> Result<Json<SearchResults>, ApiError> {
    let page = catalog::search(&state.market.db, &query).await?;
    let facets = catalog::facets(&state.market.db, &query).await?;
    Ok(Json(SearchResults { page, facets }))
}

#[utoipa::path(get, path = "/v1/catalog/{publisher}/{name}", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 200, body = ListingDetail)))]
pub async fn show_listing(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Json<ListingDetail>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(catalog::detail(&state.market.db, &state.market.registry, &id, caller.as_ref()).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsentQuery {
    /// The version requirement to resolve, default `*`.
    requirement: Option<String>,
}

/// What installing would ask the tenant to consent to: each capability and host, with why.
#[utoipa::path(get, path = "/v1/catalog/{publisher}/{name}/consent", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path), ConsentQuery),
    responses((status = 200, body = Consent)))]
pub async fn preview_consent(
    State(state): State<AppState>,
    Path((publisher, name)): Path<(String, String)>,
    QueryParams(query): QueryParams<ConsentQuery>,
) -> Result<Json<Consent>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    // Like the listing itself, a delisted plugin's consent is not shown: it cannot be installed.
    if !catalog::is_installable(&state.market.db, &id).await? {
        return Err(crate::MarketError::NotFound(format!("plugin {id}")).into());
    }
    Ok(Json(installs::preview(&state.market, &id.to_string(), query.requirement.as_deref()).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// Why: shown with the featured listing, or to the publisher of a delisted one.
    reason: String,
}

#[utoipa::path(post, path = "/v1/catalog/{publisher}/{name}/feature", tag = "catalog", request_body = Note,
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 200, body = Listing)))]
pub async fn feature_listing(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<Note>,
) -> Result<Json<Listing>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(crate::co_marketing::feature(&state.market, &caller, &id, Some(&body.reason)).await?))
}

#[utoipa::path(delete, path = "/v1/catalog/{publisher}/{name}/feature", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 200, body = Listing)))]
pub async fn unfeature_listing(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Json<Listing>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(crate::co_marketing::feature(&state.market, &caller, &id, None).await?))
}

#[utoipa::path(post, path = "/v1/catalog/{publisher}/{name}/delist", tag = "catalog", request_body = Note,
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 200, body = Listing)))]
pub async fn delist_listing(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<Note>,
) -> Result<Json<Listing>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(catalog::delist(&state.market.db, &caller, &id, Some(&body.reason)).await?))
}

#[utoipa::path(delete, path = "/v1/catalog/{publisher}/{name}/delist", tag = "catalog",
    params(("publisher" = String, Path), ("name" = String, Path)), responses((status = 200, body = Listing)))]
pub async fn relist_listing(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((publisher, name)): Path<(String, String)>,
) -> Result<Json<Listing>, ApiError> {
    let id = plugin_id(&publisher, &name)?;
    Ok(Json(catalog::delist(&state.market.db, &caller, &id, None).await?))
}

#[utoipa::path(get, path = "/v1/publishers/{publisher}/listings", tag = "catalog",
    params(("publisher" = String, Path), PageQuery), responses((status = 200, body = Page<Listing>)))]
pub async fn list_publisher_listings(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(publisher): Path<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Page<Listing>>, ApiError> {
    caller.may_act_for_publisher(&publisher)?;
    Ok(Json(Page::of(catalog::of_publisher(&state.market.db, &publisher).await?, &query)?))
}
