//! `/openapi.json`, generated from the handlers' annotations and the types they exchange,
//! so the document cannot drift from the code.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use super::AppState;
use super::{account_routes, billing_routes, catalog_routes, install_routes, registry_routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "Nexus marketplace API", description = "Plugins, installs, events and money. Errors are `{\"error\": {\"code\", \"message\", \"request_id\"}}`; every answer has an `x-request-id`."),
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
        account_routes::list_nodes,
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
        install_routes::invocation,
        install_routes::send_event,
        registry_routes::publish_version,
        registry_routes::list_versions,
        registry_routes::get_version,
        registry_routes::resolve_version,
        registry_routes::version_health,
        registry_routes::download_component,
        registry_routes::yank_version,
        registry_routes::list_keys,
        registry_routes::add_key,
        registry_routes::revoke_key,
        registry_routes::create_token,
        registry_routes::revoke_token,
        billing_routes::list_plans,
        billing_routes::put_plan,
        billing_routes::retire_plan,
        billing_routes::change_plan,
        billing_routes::settle_install,
        billing_routes::list_charges,
        billing_routes::show_charge,
        billing_routes::charge_invocations,
        billing_routes::refund_charge,
        billing_routes::show_bill,
        billing_routes::show_sales,
        billing_routes::list_policies,
        billing_routes::put_policy,
        billing_routes::run_billing,
        billing_routes::verify_ledger,
        billing_routes::list_statements,
        billing_routes::show_statement,
        billing_routes::list_payouts,
        billing_routes::show_payout,
        billing_routes::hold_payouts,
        billing_routes::release_payouts,
        billing_routes::adjust_balance,
        billing_routes::run_payouts,
        billing_routes::set_minimum,
        billing_routes::show_gmv,
        billing_routes::show_ecosystem,
    ),
    components(schemas(ErrorBody, ErrorDetail, nexus_registry::ErrorCode, crate::catalog::Sort)),
    modifiers(&Conventions),
    tags(
        (name = "accounts", description = "Tenants, publishers, tokens, audit log"),
        (name = "catalog", description = "Search, listings, consent preview, moderation"),
        (name = "installs", description = "A tenant's installs"),
        (name = "events", description = "Running plugins"),
        (name = "registry", description = "Publishing, versions, artifacts, signing keys, publisher tokens"),
        (name = "billing", description = "Plans, charges, bills, sales, refunds, revenue share, billing runs, the ledger"),
        (name = "payouts", description = "Partner statements, payouts, holds, adjustments, GMV and ecosystem figures"),
    )
)]
pub struct ApiDoc;

/// The one error shape every error answer has.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Only its schema is used: errors are written by `ApiError`.
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable, machine-readable: one of `ErrorCode` (its description lists them all).
    code: nexus_registry::ErrorCode,
    /// What went wrong and what to do, for people.
    message: String,
    /// The answer's `x-request-id`.
    request_id: String,
    /// Structured context for some codes (the capabilities awaiting consent, ...).
    #[schema(value_type = Option<Object>)]
    details: Option<()>,
}

/// What every operation shares: bearer tokens (`nxo_` operator, `nxt_` tenant, publisher
/// tokens), and errors in the one shape.
struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            // Reading the catalog and the registry needs no token.
            utoipa::openapi::security::SecurityRequirement::default(),
        ]);
        let error = ResponseBuilder::new()
            .description("An error: `{\"error\": {\"code\", \"message\", \"request_id\"}}` with a stable code")
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
            {
                operation.responses.responses.entry("default".into()).or_insert_with(|| error.clone().into());
            }
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
