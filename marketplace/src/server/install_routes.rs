//! A tenant's installs: install with consent, settings and secrets, upgrades awaiting
//! consent, resume after a pause, uninstall, direct invocation, invocation history.
//! (`POST /v1/events`, which reaches every install of a tenant, is `event_routes`.)

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Auth;
use super::extract::{JsonBody, QueryParams};
use super::{ApiError, AppState};
use crate::accounts::{TenantId, TenantScope};
use crate::error::{CursorPage, Page, PageQuery};
use crate::installs::{self, GrantConsent, Install, InstallRequest, SettingsUpdate};
use crate::records::{self, InvocationQuery, InvocationRecord};
use crate::runner::{self, Delivery, EventRequest};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_install, list_installs))
        .routes(routes!(show_install, update_install, delete_install))
        .routes(routes!(approve_upgrade))
        .routes(routes!(resume_install))
        .routes(routes!(invoke_install))
        .routes(routes!(list_invocations))
        .routes(routes!(show_invocation))
}

#[utoipa::path(post, path = "/v1/installs", tag = "installs", request_body = InstallRequest,
    responses((status = 201, body = Install), (status = 409, description = "consent_required: `details` lists what to consent to")))]
pub async fn create_install(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<InstallRequest>,
) -> Result<(StatusCode, [(axum::http::HeaderName, String); 1], Json<Install>), ApiError> {
    let install = crate::billing::purchase::install(&state.market, &caller, body).await?;
    state.market.warm_in_background(&install.plugin, &install.version);
    let location = format!("/v1/installs/{}", install.id);
    Ok((StatusCode::CREATED, [(axum::http::header::LOCATION, location)], Json(install)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Operators name the tenant; tenants see their own.
    tenant: Option<String>,
    /// Include uninstalled installs (history).
    #[serde(default)]
    all: bool,
    /// 1-based, default 1.
    #[param(minimum = 1)]
    page: Option<u32>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
}

#[utoipa::path(get, path = "/v1/installs", tag = "installs", params(ListQuery),
    responses((status = 200, body = Page<Install>)))]
pub async fn list_installs(
    State(state): State<AppState>,
    Auth(caller): Auth,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Page<Install>>, ApiError> {
    let tenant = query.tenant.as_deref().map(str::parse::<TenantId>).transpose()?;
    let page = PageQuery { page: query.page, per_page: query.per_page };
    Ok(Json(installs::list(&state.market, &caller, tenant.as_ref(), query.all, &page).await?))
}

#[utoipa::path(get, path = "/v1/installs/{id}", tag = "installs", params(("id" = String, Path)),
    responses((status = 200, body = Install)))]
pub async fn show_install(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Install>, ApiError> {
    Ok(Json(installs::get(&state.market, &caller, &id.parse()?).await?))
}

#[utoipa::path(patch, path = "/v1/installs/{id}", tag = "installs", params(("id" = String, Path)),
    request_body = SettingsUpdate, responses((status = 200, body = Install)))]
pub async fn update_install(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SettingsUpdate>,
) -> Result<Json<Install>, ApiError> {
    Ok(Json(installs::update_settings(&state.market, &caller, &id.parse()?, body).await?))
}

#[utoipa::path(delete, path = "/v1/installs/{id}", tag = "installs", params(("id" = String, Path)),
    responses((status = 200, body = Install, description = "the uninstalled install, kept as history")))]
pub async fn delete_install(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Install>, ApiError> {
    Ok(Json(installs::uninstall(&state.market, &caller, &id.parse()?).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeBody {
    consent: GrantConsent,
}

#[utoipa::path(post, path = "/v1/installs/{id}/upgrade", tag = "installs", params(("id" = String, Path)),
    request_body = UpgradeBody, responses((status = 200, body = Install)))]
pub async fn approve_upgrade(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpgradeBody>,
) -> Result<Json<Install>, ApiError> {
    let install = installs::approve_upgrade(&state.market, &caller, &id.parse()?, &body.consent).await?;
    state.market.warm_in_background(&install.plugin, &install.version);
    Ok(Json(install))
}

#[utoipa::path(post, path = "/v1/installs/{id}/resume", tag = "installs", params(("id" = String, Path)),
    responses((status = 200, body = Install)))]
pub async fn resume_install(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Install>, ApiError> {
    Ok(Json(installs::resume(&state.market, &caller, &id.parse()?).await?))
}

#[utoipa::path(post, path = "/v1/installs/{id}/invoke", tag = "events", params(("id" = String, Path)),
    request_body = EventRequest, responses((status = 200, body = Delivery),
        (status = 503, description = "host_busy: no plugin-host slot for this tenant; retry after Retry-After")))]
pub async fn invoke_install(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EventRequest>,
) -> Result<Json<Delivery>, ApiError> {
    // Only a tenant with `events` invokes: any other caller is refused before its id is read.
    caller.tenant(TenantScope::Events)?;
    Ok(Json(runner::invoke_install(&state.market, &caller, &id.parse()?, body).await?))
}

#[utoipa::path(get, path = "/v1/installs/{id}/invocations", tag = "events",
    params(("id" = String, Path), InvocationQuery), responses((status = 200, body = CursorPage<InvocationRecord>)))]
pub async fn list_invocations(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<InvocationQuery>,
) -> Result<Json<CursorPage<InvocationRecord>>, ApiError> {
    Ok(Json(records::list(&state.market, &caller, &id.parse()?, &query).await?))
}

/// One invocation of the install, with what it answered (data and actions).
#[utoipa::path(get, path = "/v1/installs/{id}/invocations/{invocation}", tag = "events",
    params(("id" = String, Path), ("invocation" = String, Path)), responses((status = 200, body = InvocationRecord)))]
pub async fn show_invocation(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((id, invocation)): Path<(String, String)>,
) -> Result<Json<InvocationRecord>, ApiError> {
    Ok(Json(records::of_install(&state.market, &caller, &id.parse()?, &invocation).await?))
}
