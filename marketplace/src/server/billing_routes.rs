//! Money over HTTP: plans (publishers), plan changes and settling (tenants), charges and bills
//! (tenants, operators), sales (partners), refunds, revenue-share policies, billing runs and
//! the ledger check (operators). Requests that move money take an `Idempotency-Key`, which
//! the domain stores with what it wrote. One file per resource under `billing_routes/`.

mod bills;
mod charges;
mod figures;
mod operations;
mod payouts;
mod plans;
mod usage;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use nexus_registry::ErrorCode;
use utoipa_axum::router::OpenApiRouter;

use super::idempotency::HEADER as IDEMPOTENCY_KEY;
use super::{ApiError, AppState};

/// The billing routes, registered in the order of their resources.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(plans::routes())
        .merge(usage::routes())
        .merge(charges::routes())
        .merge(bills::routes())
        .merge(operations::routes())
        .merge(payouts::routes())
        .merge(figures::routes())
}

fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).filter(|k| !k.is_empty())
}

/// Whether the client asked for CSV (`Accept: text/csv` or `?format=csv`).
fn wants_csv(headers: &HeaderMap, format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => {
            Err(ApiError::bad_request(ErrorCode::InvalidQuery, format!("format `{other}` is not csv or json")))
        }
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/csv")))),
    }
}

pub(crate) fn csv(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.csv\"")),
        ],
        body,
    )
        .into_response()
}
