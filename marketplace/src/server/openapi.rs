//! The JSON API's router and `/openapi.json`: each route file registers a handler once, with
//! `routes!`, and its `#[utoipa::path]` gives both the route and its operation, so the
//! document cannot drift from what is served.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use super::{
    account_routes, billing_routes, catalog_routes, domain_routes, event_routes, install_routes, media_routes,
    people_routes, placement_routes, registry_routes, review_routes, tier_routes, webhook_routes,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Nexus marketplace API", description = "Plugins, installs, events and money. Errors are `{\"error\": {\"code\", \"message\", \"request_id\"}}`; every answer has an `x-request-id`."),
    components(schemas(ErrorBody, ErrorDetail, nexus_registry::ErrorCode, crate::catalog::Sort,
        crate::reviews::ReviewSort)),
    tags(
        (name = "accounts", description = "Tenants, publishers, tokens, audit log"),
        (name = "catalog", description = "Search, listings, consent preview, moderation"),
        (name = "reviews", description = "Ratings and reviews, publishers' replies, moderation, helpful marks"),
        (name = "installs", description = "A tenant's installs"),
        (name = "events", description = "Running plugins"),
        (name = "webhooks", description = "A tenant's webhook endpoints, signed as Standard Webhooks, and their delivery logs"),
        (name = "registry", description = "Publishing, versions, artifacts, signing keys, publisher tokens"),
        (name = "billing", description = "Plans, charges, bills, sales, refunds, revenue share, billing runs, the ledger"),
        (name = "payouts", description = "Partner statements, payouts, holds, adjustments, GMV and ecosystem figures"),
        (name = "people", description = "Sign-up, address confirmation, password resets, the partner agreement and applications"),
        (name = "partners", description = "The partner program's tiers and each partner's tier"),
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
/// tokens), and errors in the one shape. Applied to the merged document: `ApiDoc` alone has
/// no paths yet.
struct Conventions;

impl Modify for Conventions {
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

/// Every API route, and `/openapi.json` describing exactly those.
pub fn routes() -> Router<AppState> {
    let (router, doc) = api();
    let doc = Arc::new(doc);
    router.route("/openapi.json", get(move || std::future::ready(Json(utoipa::openapi::OpenApi::clone(&doc)))))
}

/// The API's routes and their document, from one registration each.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(account_routes::routes())
        .merge(catalog_routes::routes())
        .merge(review_routes::routes())
        .merge(media_routes::routes())
        .merge(install_routes::routes())
        .merge(event_routes::routes())
        .merge(webhook_routes::routes())
        .merge(registry_routes::routes())
        .merge(domain_routes::routes())
        .merge(tier_routes::routes())
        .merge(placement_routes::routes())
        .merge(people_routes::routes())
        .merge(billing_routes::routes())
        .split_for_parts();
    Conventions.modify(&mut doc);
    (router, doc)
}
