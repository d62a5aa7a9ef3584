//! `/openapi.json`, generated from the handlers' annotations and the types they exchange,
//! so the document cannot drift from the code.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use super::AppState;
use super::{account_routes, catalog_routes, install_routes, registry_routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "Nexus marketplace API", description = "Plugins, installs and events. Errors are `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        account_routes::who_am_i,
        account_routes::create_tenant,
        account_routes::list_tenants,
        account_routes::create_tenant_token,
        account_routes::revoke_tenant_token,
        account_routes::create_publisher,
        account_routes::create_operator_token,
        account_routes::revoke_operator_token,
        account_routes::read_audit,
        catalog_routes::search,
        catalog_routes::detail,
        catalog_routes::consent,
        catalog_routes::feature,
        catalog_routes::unfeature,
        catalog_routes::delist,
        catalog_routes::relist,
        catalog_routes::publisher_listings,
        install_routes::create,
        install_routes::list,
        install_routes::show,
        install_routes::update,
        install_routes::uninstall,
        install_routes::approve_upgrade,
        install_routes::resume,
        install_routes::invoke,
        install_routes::invocations,
        install_routes::send_event,
        registry_routes::publish_version,
        registry_routes::list_versions,
        registry_routes::get_version,
        registry_routes::resolve_version,
        registry_routes::download_component,
        registry_routes::yank_version,
        registry_routes::list_keys,
        registry_routes::add_key,
        registry_routes::revoke_key,
        registry_routes::create_token,
        registry_routes::revoke_token,
    ),
    tags(
        (name = "accounts", description = "Tenants, publishers, tokens, audit log"),
        (name = "catalog", description = "Search, listings, consent preview, moderation"),
        (name = "installs", description = "A tenant's installs"),
        (name = "events", description = "Running plugins"),
        (name = "registry", description = "Publishing, versions, artifacts, signing keys, publisher tokens"),
    )
)]
pub struct ApiDoc;

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
